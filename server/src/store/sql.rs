//! What the two SQL backends have in common, below the operations: a
//! statement's text per dialect ([`Sql`]), parameters ([`Param`]), result
//! rows ([`Row`]), "a connection in this dialect" ([`Db`]), the backend's
//! read pool and group committer ([`Backend`]) and the schema migrations as
//! data ([`MIGRATIONS`]). The operations themselves are written once in
//! [`super::ops`] against these.
//!
//! Placeholders are written `?1`, `?2`, ... in every statement (SQLite's
//! form); the PostgreSQL connection rewrites them to `$1`, `$2`, ... when it
//! prepares a statement (no statement here has a `?` anywhere else).

use super::committer::Head;
use crate::audit::AuditRecord;
use biopay_core::store::{CommitError, StoreError};
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Mutex, MutexGuard, PoisonError,
};

/// The SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (rusqlite).
    Sqlite,
    /// PostgreSQL (the `postgres` crate).
    Postgres,
}

/// One statement, as each dialect spells it.
#[derive(Debug, Clone, Copy)]
pub struct Sql {
    sqlite: &'static str,
    postgres: &'static str,
}

impl Sql {
    /// A statement both dialects read alike.
    pub const fn same(text: &'static str) -> Self {
        Self {
            sqlite: text,
            postgres: text,
        }
    }

    /// A statement spelt differently per dialect.
    pub const fn each(sqlite: &'static str, postgres: &'static str) -> Self {
        Self { sqlite, postgres }
    }

    /// Its text in `dialect`.
    pub fn text(self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }
}

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// A 64-bit integer.
    Int(i64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

/// A column value as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A boolean (PostgreSQL; SQLite stores 0 or 1).
    Bool(bool),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// One result row.
#[derive(Debug, Clone, Default)]
pub struct Row(pub Vec<Value>);

fn bad_column(i: usize, want: &str, got: &Value) -> StoreError {
    StoreError(format!("column {i}: expected {want}, found {got:?}"))
}

impl Row {
    fn at(&self, i: usize) -> Result<&Value, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError(format!("no column {i} in result")))
    }

    /// An integer column.
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?
            .ok_or_else(|| StoreError(format!("column {i}: unexpected NULL")))
    }

    /// An integer column that may be NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(bad_column(i, "an integer", other)),
        }
    }

    /// A boolean column (an integer 0 or 1 in SQLite).
    pub fn bool(&self, i: usize) -> Result<bool, StoreError> {
        match self.at(i)? {
            Value::Bool(b) => Ok(*b),
            Value::Int(0) => Ok(false),
            Value::Int(1) => Ok(true),
            other => Err(bad_column(i, "a boolean", other)),
        }
    }

    /// A text column.
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?
            .ok_or_else(|| StoreError(format!("column {i}: unexpected NULL")))
    }

    /// A text column that may be NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            other => Err(bad_column(i, "text", other)),
        }
    }

    /// A bytes column.
    pub fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.at(i)? {
            Value::Blob(b) => Ok(b.clone()),
            other => Err(bad_column(i, "bytes", other)),
        }
    }
}

/// An accepted payment's writes, as [`Db::pay`] takes them.
#[derive(Debug, Clone, Copy)]
pub struct Payment<'a> {
    /// The challenge bytes as stored.
    pub challenge: &'a [u8],
    /// `Some(expires_at)` for a self-authenticating challenge
    /// (docs/PROTOCOL.md §6.1.3): its spent entry is inserted (a present one
    /// is a second spend) instead of a stored challenge being consumed.
    pub spend: Option<i64>,
    /// The credential id.
    pub id: &'a [u8],
    /// The new counter.
    pub new: i64,
    /// The audit record of the decision.
    pub audit: &'a AuditRecord,
}

/// What `Db::pay` did: whether the challenge was consumed, and whether the
/// counter moved (the failure counts cleared and the audit entry appended
/// with it).
#[derive(Debug, Clone, Copy)]
pub struct Paid {
    /// The challenge was unconsumed and is now consumed (or, for a
    /// self-authenticating one, was not spent and now is).
    pub consumed: bool,
    /// The counter moved (and the rest of the payment was written).
    pub moved: bool,
}

/// A connection in one dialect, inside or outside a transaction. Every
/// statement is prepared once per connection.
pub trait Db {
    /// The connection's dialect.
    fn dialect(&self) -> Dialect;
    /// Runs one statement; returns the number of rows it changed.
    fn execute(&mut self, sql: Sql, params: &[Param<'_>]) -> Result<u64, StoreError>;
    /// Runs one query; returns its rows.
    fn query(&mut self, sql: Sql, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError>;
    /// Runs statements without parameters or results (migrations).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
    /// Runs one query; returns its first row, if any.
    fn query_opt(&mut self, sql: Sql, params: &[Param<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
    /// The writes of an accepted payment (see [`super::ops`]), each only if
    /// the one before it happened: consume the challenge (or insert its spent
    /// entry, [`Payment::spend`]), move the counter
    /// (credential active, device model not revoked, stored counter below
    /// `new`), clear the failure counts of the credential and its account,
    /// append `audit`. A dialect may override this to save round trips.
    fn pay(&mut self, head: &mut Head, p: &Payment<'_>) -> Result<Paid, CommitError> {
        super::ops::pay_in_steps(self, head, p)
    }
}

/// A backend's connections: a pool for reads, a group committer for writes.
pub trait Backend: Send + Sync {
    /// The read connection type.
    type Reader: Db;
    /// The write connection type the committer hands to operations.
    type Writer: Db;
    /// Runs `f` on a read connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&mut Self::Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
    /// Runs `f` in the group committer's transaction (`appends`: it may
    /// append to the audit chain, so the head must be locked).
    fn write<T: Send + 'static>(
        &self,
        appends: bool,
        f: impl FnMut(&mut Self::Writer, &mut Head) -> Result<T, CommitError> + Send + 'static,
    ) -> Result<T, CommitError>;
    /// Group commit counters: (transactions, operations, batches re-run with
    /// savepoints after a failed operation) so far.
    fn commit_stats(&self) -> (u64, u64, u64);
}

/// A read connection of `slots`: a free one if any, else waits for one in
/// turn (`next` spreads the callers).
pub fn pick<'a, T>(
    slots: &'a [Mutex<T>],
    next: &AtomicUsize,
) -> Result<MutexGuard<'a, T>, StoreError> {
    let n = slots.len();
    let start = next.fetch_add(1, Ordering::Relaxed);
    for i in 0..n {
        if let Some(Ok(g)) = slots.get((start + i) % n).map(Mutex::try_lock) {
            return Ok(g);
        }
    }
    // A panic while holding a read connection leaves no state behind.
    slots
        .get(start % n.max(1))
        .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
        .ok_or_else(|| StoreError("no read connection".into()))
}

/// Versioned schema migrations, applied in order at startup, written once
/// for both dialects with these words replaced ([`render`]): `{int}` a 64-bit
/// integer (`INTEGER` / `BIGINT`), `{blob}` bytes (`BLOB` / `BYTEA`),
/// `{bool}` a boolean (`INTEGER` / `BOOLEAN`), `{false}` its false (`0` /
/// `false`).
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE challenges (
        challenge {blob} PRIMARY KEY,
        kind TEXT NOT NULL,
        body {blob} NOT NULL,
        counter_at_issue {int} NOT NULL,
        expires_at {int} NOT NULL,
        consumed {bool} NOT NULL DEFAULT {false}
    );
    CREATE INDEX challenges_expiry ON challenges (expires_at);
    CREATE TABLE credentials (
        credential_id {blob} PRIMARY KEY,
        rp_id TEXT NOT NULL,
        account_handle {blob} NOT NULL,
        public_key {blob} NOT NULL,
        modalities TEXT NOT NULL,
        enrollment_epoch {blob} NOT NULL,
        security_level {int} NOT NULL,
        kind TEXT NOT NULL,
        device_model TEXT NOT NULL,
        counter {int} NOT NULL,
        status TEXT NOT NULL,
        registered_at {int} NOT NULL
    );
    CREATE INDEX credentials_account ON credentials (rp_id, account_handle);
    CREATE TABLE audit_log (
        seq {int} PRIMARY KEY,
        at {int} NOT NULL,
        kind TEXT NOT NULL,
        outcome TEXT NOT NULL,
        step TEXT NOT NULL,
        credential TEXT NOT NULL,
        statement_hash TEXT NOT NULL,
        reason TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq {int} NOT NULL,
        hash TEXT NOT NULL
    );
    INSERT INTO audit_head (id, seq, hash)
        VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
    CREATE TABLE audit_checkpoints (
        seq {int} PRIMARY KEY,
        hash TEXT NOT NULL,
        at {int} NOT NULL,
        public_key TEXT NOT NULL,
        signature TEXT NOT NULL
    );
    CREATE TABLE model_status (
        model TEXT PRIMARY KEY,
        status TEXT NOT NULL
    );",
    ),
    (
        2,
        // Failed verifications counted for rate limiting, shared by every
        // process on the database: kind 'credential' (subject = credential id)
        // or 'account' (subject = account handle).
        "CREATE TABLE failures (
            kind TEXT NOT NULL,
            subject {blob} NOT NULL,
            at {int} NOT NULL
        );
        CREATE INDEX failures_subject ON failures (kind, subject, at);
        CREATE INDEX failures_at ON failures (at);",
    ),
    (
        3,
        // The account of each challenge, for the per-account issuance limit
        // (PROTOCOL.md §6.1.3). Challenges issued before this migration have
        // none and count against nobody until they expire.
        "ALTER TABLE challenges ADD COLUMN account {blob};
        CREATE INDEX challenges_account ON challenges (account, expires_at);",
    ),
    (
        4,
        // Chained checkpoints (docs/PROTOCOL.md §9.4): each names the hash of
        // the previous one. Rows from before keep version 1 (unchained); at
        // most one chained checkpoint may name any given predecessor.
        "ALTER TABLE audit_checkpoints ADD COLUMN version {int} NOT NULL DEFAULT 1;
        ALTER TABLE audit_checkpoints ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
        CREATE UNIQUE INDEX audit_checkpoints_chain ON audit_checkpoints (prev_hash)
            WHERE version = 2;",
    ),
    (
        5,
        // The App Attest key of each apple_app_attest credential
        // (docs/PROTOCOL.md §13.8): its assertions' key, app id,
        // environment, last assertion counter and Apple's receipt.
        "CREATE TABLE app_attest_keys (
            credential_id {blob} PRIMARY KEY REFERENCES credentials (credential_id),
            key_id {blob} NOT NULL,
            public_key {blob} NOT NULL,
            app_id TEXT NOT NULL,
            environment TEXT NOT NULL,
            counter {int} NOT NULL,
            receipt {blob} NOT NULL
        );",
    ),
    (
        6,
        // Spent self-authenticating payment challenges (docs/PROTOCOL.md
        // §7.1 rule 5): inserted by the payment's commit; the primary key
        // makes a second spend a conflict. Purged after expiry and skew.
        "CREATE TABLE spent_challenges (
            challenge {blob} PRIMARY KEY,
            expires_at {int} NOT NULL
        );
        CREATE INDEX spent_challenges_expires ON spent_challenges (expires_at);",
    ),
];

/// The table of applied migrations.
pub const SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
            version {int} PRIMARY KEY, applied_at {int} NOT NULL)";

/// A migration's text in `dialect`.
pub fn render(template: &str, dialect: Dialect) -> String {
    let (int, blob, boolean, fals) = match dialect {
        Dialect::Sqlite => ("INTEGER", "BLOB", "INTEGER", "0"),
        Dialect::Postgres => ("BIGINT", "BYTEA", "BOOLEAN", "false"),
    };
    template
        .replace("{int}", int)
        .replace("{blob}", blob)
        .replace("{bool}", boolean)
        .replace("{false}", fals)
}

/// Applies the pending migrations on `db`, which the caller has put in a
/// transaction that excludes other processes' migrations (and commits).
pub fn migrate(db: &mut impl Db) -> Result<(), StoreError> {
    let dialect = db.dialect();
    db.batch(&render(SCHEMA_MIGRATIONS, dialect))?;
    let current = db
        .query_opt(
            Sql::same("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"),
            &[],
        )?
        .ok_or_else(|| StoreError("no migration version".into()))?
        .int(0)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        db.batch(&render(sql, dialect))?;
        db.execute(
            Sql::same("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)"),
            &[
                Param::Int(*version),
                Param::Int(super::i64_of(crate::now())?),
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;

    #[test]
    fn every_migration_word_is_replaced_in_both_dialects() {
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            for (_, sql) in MIGRATIONS {
                let text = render(sql, d);
                assert!(!text.contains('{') && !text.contains('}'), "{text}");
            }
        }
        let pg = render(MIGRATIONS[0].1, Dialect::Postgres);
        assert!(pg.contains("challenge BYTEA PRIMARY KEY") && pg.contains("DEFAULT false"));
        let lite = render(MIGRATIONS[0].1, Dialect::Sqlite);
        assert!(lite.contains("seq INTEGER PRIMARY KEY") && lite.contains("DEFAULT 0"));
    }
}
