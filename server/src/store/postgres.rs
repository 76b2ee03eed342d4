//! [`biopay_core::Store`] on PostgreSQL, for several server processes on one
//! database. Each commit is one transaction at READ COMMITTED whose
//! conditional updates (`WHERE NOT consumed`, `WHERE counter < $new AND
//! status = 'active'` and the device model not revoked) take row locks and are
//! re-evaluated after a concurrent writer commits, so exactly one of any set
//! of racing commits on the same challenge succeeds, and the counter only
//! ever grows.
//!
//! Writes go through one connection per process owned by a [group
//! committer](super::committer): concurrent operations share one transaction
//! and one WAL flush, each in its own savepoint. Every batch locks the audit
//! chain head row (`SELECT ... FOR UPDATE`) first, before any other row, so
//! batches of several processes are serialized on it without lock cycles. Reads use a small pool of connections. Every
//! statement is prepared once per connection.

use super::{
    accepted_record, app_attest_conflict, challenge_columns, challenge_entry, challenge_key,
    check_model,
    committer::{Committer, Head, WriteConn},
    flag_record, i64_of, modalities_str, payment_conflict, u64_of, with_app_attest, AppAttestRow,
    CredentialRow, PaymentRow, ServerStore,
};
use crate::audit::{AuditEntry, AuditRecord, Checkpoint};
use biopay_core::{
    store::{
        ChallengeEntry, ChallengeLimit, CommitError, CredentialRecord, CredentialStatus, Decision,
        Flag, IssuedChallenge, SpentChallenge, Store, StoreError,
    },
    Challenge, CredentialId,
};
use postgres::{types::ToSql, NoTls, Row, Statement};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
};

/// Versioned schema migrations, applied in order at startup under an advisory lock.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE challenges (
        challenge BYTEA PRIMARY KEY,
        kind TEXT NOT NULL,
        body BYTEA NOT NULL,
        counter_at_issue BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        consumed BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX challenges_expiry ON challenges (expires_at);
    CREATE TABLE credentials (
        credential_id BYTEA PRIMARY KEY,
        rp_id TEXT NOT NULL,
        account_handle BYTEA NOT NULL,
        public_key BYTEA NOT NULL,
        modalities TEXT NOT NULL,
        enrollment_epoch BYTEA NOT NULL,
        security_level BIGINT NOT NULL,
        kind TEXT NOT NULL,
        device_model TEXT NOT NULL,
        counter BIGINT NOT NULL,
        status TEXT NOT NULL,
        registered_at BIGINT NOT NULL
    );
    CREATE INDEX credentials_account ON credentials (rp_id, account_handle);
    CREATE TABLE audit_log (
        seq BIGINT PRIMARY KEY,
        at BIGINT NOT NULL,
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
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    );
    INSERT INTO audit_head (id, seq, hash)
        VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
    CREATE TABLE audit_checkpoints (
        seq BIGINT PRIMARY KEY,
        hash TEXT NOT NULL,
        at BIGINT NOT NULL,
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
            subject BYTEA NOT NULL,
            at BIGINT NOT NULL
        );
        CREATE INDEX failures_subject ON failures (kind, subject, at);
        CREATE INDEX failures_at ON failures (at);",
    ),
    (
        3,
        // The account of each challenge, for the per-account issuance limit
        // (PROTOCOL.md §6.1.3). Challenges issued before this migration have
        // none and count against nobody until they expire.
        "ALTER TABLE challenges ADD COLUMN account BYTEA;
        CREATE INDEX challenges_account ON challenges (account, expires_at);",
    ),
    (
        4,
        // Chained checkpoints (docs/PROTOCOL.md §9.4): each names the hash of
        // the previous one. Rows from before keep version 1 (unchained); at
        // most one chained checkpoint may name any given predecessor.
        "ALTER TABLE audit_checkpoints ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
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
            credential_id BYTEA PRIMARY KEY REFERENCES credentials (credential_id),
            key_id BYTEA NOT NULL,
            public_key BYTEA NOT NULL,
            app_id TEXT NOT NULL,
            environment TEXT NOT NULL,
            counter BIGINT NOT NULL,
            receipt BYTEA NOT NULL
        );",
    ),
    (
        6,
        // Spent self-authenticating payment challenges (docs/PROTOCOL.md
        // §7.1 rule 5): inserted by the payment's commit; the primary key
        // makes a second spend a conflict. Purged after expiry and skew.
        "CREATE TABLE spent_challenges (
            challenge BYTEA PRIMARY KEY,
            expires_at BIGINT NOT NULL
        );
        CREATE INDEX spent_challenges_expires ON spent_challenges (expires_at);",
    ),
];

/// Advisory lock key serializing migrations between processes starting together.
const MIGRATION_LOCK: i64 = 0x6269_6f70_6179;

/// The error with its causes (the server's message is a cause of "db error").
fn be(e: impl std::error::Error) -> StoreError {
    let mut text = format!("postgres: {e}");
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    StoreError(text)
}

fn ce(e: impl std::error::Error) -> CommitError {
    CommitError::Backend(be(e))
}

/// A connection with its prepared statements.
pub struct Conn {
    client: postgres::Client,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    fn connect(config: &postgres::Config) -> Result<Self, StoreError> {
        Ok(Self {
            client: config.connect(NoTls).map_err(be)?,
            statements: HashMap::new(),
        })
    }

    fn prepared(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(be)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let s = self.prepared(sql)?;
        self.client.execute(&s, params).map_err(be)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let s = self.prepared(sql)?;
        self.client.query(&s, params).map_err(be)
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let s = self.prepared(sql)?;
        self.client.query_opt(&s, params).map_err(be)
    }
}

/// The writer connection, driven by the committer; reconnects when broken.
pub struct Writer {
    config: postgres::Config,
    conn: Option<Conn>,
}

impl Writer {
    fn conn(&mut self) -> Result<&mut Conn, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError("postgres: not connected".into()))
    }
}

impl WriteConn for Writer {
    fn exec(&mut self, sql: &'static str) -> Result<(), StoreError> {
        self.conn()?.client.batch_execute(sql).map_err(be)
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        self.exec("BEGIN")
    }
    fn begin_with_savepoint(&mut self) -> Result<(), StoreError> {
        self.exec("BEGIN; SAVEPOINT op")
    }
    fn lock_head(&mut self) -> Result<(i64, String), StoreError> {
        let r = self
            .conn()?
            .query_opt(
                "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
                &[],
            )?
            .ok_or_else(|| StoreError("no audit head".into()))?;
        Ok((r.try_get(0).map_err(be)?, r.try_get(1).map_err(be)?))
    }
    fn store_head(&mut self, seq: i64, hash: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
            &[&seq, &hash],
        )?;
        Ok(())
    }
    fn ready(&mut self) -> Result<(), StoreError> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = None;
            self.conn = Some(Conn::connect(&self.config)?);
        }
        Ok(())
    }
}

/// The PostgreSQL store: a group committer and a pool of read connections.
pub struct PgStore {
    config: Box<postgres::Config>,
    committer: Committer<Writer>,
    readers: Vec<Mutex<Option<Conn>>>,
    next_reader: AtomicUsize,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) with at most
    /// `max_connections` (one writer, the rest readers opened on demand), and
    /// applies pending migrations.
    pub fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let config: postgres::Config = url.parse().map_err(be)?;
        let mut first = Conn::connect(&config)?;
        migrate(&mut first.client)?;
        let readers = usize::try_from(max_connections.max(2) - 1).unwrap_or(1);
        Ok(Self {
            committer: Committer::start(
                Writer {
                    config: config.clone(),
                    conn: Some(first),
                },
                "biopay-pg-commit",
            )?,
            readers: (0..readers).map(|_| Mutex::new(None)).collect(),
            next_reader: AtomicUsize::new(0),
            config: Box::new(config),
        })
    }

    /// Group commit counters: (transactions, operations, batches re-run with
    /// savepoints after a failed operation) so far.
    pub fn commit_stats(&self) -> (u64, u64, u64) {
        self.committer.stats()
    }

    /// A read connection (connected on first use, reconnected when broken).
    fn reader(&self) -> Result<MutexGuard<'_, Option<Conn>>, StoreError> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let mut slot = None;
        for i in 0..n {
            if let Some(Ok(g)) = self.readers.get((start + i) % n).map(Mutex::try_lock) {
                slot = Some(g);
                break;
            }
        }
        let mut g = match slot {
            Some(g) => g,
            // A panic while holding a read connection leaves no state behind.
            None => self
                .readers
                .get(start % n.max(1))
                .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
                .ok_or_else(|| StoreError("no read connection".into()))?,
        };
        if g.as_ref().is_none_or(|c| c.client.is_closed()) {
            *g = None;
            *g = Some(Conn::connect(&self.config)?);
        }
        Ok(g)
    }

    fn read<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut g = self.reader()?;
        let c = g
            .as_mut()
            .ok_or_else(|| StoreError("postgres: not connected".into()))?;
        f(c)
    }

    /// Every batch locks the audit head first, whether or not it appends:
    /// the head row is then the first lock of every write transaction of
    /// every process, so two batches never wait on each other's row locks
    /// (no deadlock, e.g. between an operator's status change batched with a
    /// challenge purge in one process and a payment in another).
    fn write<T: Send + 'static>(
        &self,
        _appends: bool,
        mut f: impl FnMut(&mut Conn, &mut Head) -> Result<T, CommitError> + Send + 'static,
    ) -> Result<T, CommitError> {
        self.committer.call(true, move |w, h| f(w.conn()?, h))
    }
}

fn migrate(c: &mut postgres::Client) -> Result<(), StoreError> {
    let mut tx = c.transaction().map_err(be)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(be)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .map_err(be)?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .map_err(be)?
        .try_get(0)
        .map_err(be)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).map_err(be)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &i64_of(crate::now())?],
        )
        .map_err(be)?;
    }
    tx.commit().map_err(be)
}

/// An operator's status change; deregistration is final.
fn set_status(
    c: &mut Conn,
    id: &CredentialId,
    status: CredentialStatus,
) -> Result<(), CommitError> {
    let n = c.execute(
        "UPDATE credentials SET status = $1
         WHERE credential_id = $2 AND status <> 'deregistered'",
        &[&status.as_str(), &id.as_bytes()],
    )?;
    if n == 0 {
        return Err(match current(c, id)? {
            None => CommitError::UnknownCredential,
            Some(_) => CommitError::CredentialNotActive(CredentialStatus::Deregistered),
        });
    }
    Ok(())
}

/// Appends `record` to the chain inside the batch (which holds the head row lock).
fn append(c: &mut Conn, head: &mut Head, record: &AuditRecord) -> Result<(), StoreError> {
    let e = head.next(record)?;
    c.execute(
        "INSERT INTO audit_log (seq, at, kind, outcome, step, credential, statement_hash, reason,
            prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &e.seq,
            &i64_of(record.at)?,
            &record.kind,
            &record.outcome,
            &record.step,
            &record.credential,
            &record.statement_hash,
            &record.reason,
            &e.prev_hash,
            &e.hash,
        ],
    )?;
    Ok(())
}

fn consume(c: &mut Conn, challenge: &Challenge) -> Result<(), CommitError> {
    let n = c.execute(
        "UPDATE challenges SET consumed = true WHERE challenge = $1 AND NOT consumed",
        &[&challenge_key(challenge)],
    )?;
    if n == 1 {
        Ok(())
    } else {
        Err(CommitError::ChallengeUsed)
    }
}

/// The payment commit's one round trip (PROTOCOL.md §7.3), its first
/// step `consumed` given: `UPDATE challenges ...` for a stored challenge, or
/// the spent-entry insert of a self-authenticating one (§7.1 rule 5).
macro_rules! payment_sql {
    ($consume:literal) => {
        concat!("WITH consumed AS (", $consume, "), moved AS (
                        UPDATE credentials SET counter = $2
                        WHERE credential_id = $3 AND counter < $2 AND status = 'active'
                          AND NOT EXISTS (SELECT 1 FROM model_status m
                                          WHERE m.model = credentials.device_model
                                            AND m.status <> 'active')
                          AND EXISTS (SELECT 1 FROM consumed)
                        RETURNING account_handle
                    ), cleared AS (
                        DELETE FROM failures
                        WHERE EXISTS (SELECT 1 FROM moved)
                          AND ((kind = 'credential' AND subject = $3)
                            OR (kind = 'account' AND subject = (SELECT account_handle FROM moved)))
                    ), audited AS (
                        INSERT INTO audit_log (seq, at, kind, outcome, step, credential,
                            statement_hash, reason, prev_hash, hash)
                        SELECT $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
                        WHERE EXISTS (SELECT 1 FROM moved)
                        RETURNING 1
                    )
                    SELECT (SELECT COUNT(*) FROM consumed), (SELECT COUNT(*) FROM audited)")
    };
}

/// A payment's commit: `sql` from `payment_sql!`, `key` its `$1`,
/// `expires_at` its `$14` when it inserts a spent entry.
#[allow(clippy::too_many_arguments)]
fn pay(
    c: &mut Conn,
    head: &mut Head,
    sql: &'static str,
    key: &[u8],
    expires_at: Option<i64>,
    id: &CredentialId,
    new: i64,
    app_attest_counter: Option<u32>,
    audit: &AuditRecord,
) -> Result<(), CommitError> {
    // One round trip: consume the challenge, move the counter (only if
    // the challenge was consumed, the credential is active, its device
    // model not revoked as persisted by any process, and the stored
    // counter below the new one), clear the credential's failure
    // count and append the audit entry (only if the counter moved).
    // The conditional updates lock their rows and are re-evaluated
    // after a concurrent commit, as separate statements would be.
    let e = head.next(audit)?;
    let (id_bytes, at) = (id.as_bytes(), i64_of(audit.at)?);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &key,
        &new,
        &id_bytes,
        &e.seq,
        &at,
        &audit.kind,
        &audit.outcome,
        &audit.step,
        &audit.credential,
        &audit.statement_hash,
        &audit.reason,
        &e.prev_hash,
        &e.hash,
    ];
    if let Some(exp) = &expires_at {
        params.push(exp);
    }
    let row = c
        .query_opt(sql, &params)?
        .ok_or_else(|| CommitError::Backend(StoreError("postgres: no result row".into())))?;
    let consumed: i64 = row.try_get(0).map_err(ce)?;
    let audited: i64 = row.try_get(1).map_err(ce)?;
    if consumed != 1 {
        return Err(CommitError::ChallengeUsed);
    }
    if audited != 1 {
        return Err(payment_conflict(payment_row(c, id)?));
    }
    // The App Attest counter of the assertion (J4), in the same
    // transaction (a failure rolls the operation back): only if the
    // stored one is still below it.
    if let Some(aa) = app_attest_counter {
        let row = c.query_opt(
            "WITH moved AS (
                UPDATE app_attest_keys SET counter = $1
                WHERE credential_id = $2 AND counter < $1 RETURNING 1
            )
            SELECT (SELECT COUNT(*) FROM moved),
                   (SELECT counter FROM app_attest_keys WHERE credential_id = $2)",
            &[&i64::from(aa), &id.as_bytes()],
        )?;
        let row =
            row.ok_or_else(|| CommitError::Backend(StoreError("postgres: no result row".into())))?;
        let moved: i64 = row.try_get(0).map_err(ce)?;
        if moved != 1 {
            return Err(app_attest_conflict(row.try_get(1).map_err(ce)?));
        }
    }
    Ok(())
}

fn current(c: &mut Conn, id: &CredentialId) -> Result<Option<(i64, String)>, CommitError> {
    let row = c.query_opt(
        "SELECT counter, status FROM credentials WHERE credential_id = $1",
        &[&id.as_bytes()],
    )?;
    row.map(|r| Ok((r.try_get(0).map_err(ce)?, r.try_get(1).map_err(ce)?)))
        .transpose()
}

/// The persisted status of a device model (`None`: never set by an operator).
fn model_status(c: &mut Conn, model: &str) -> Result<Option<String>, CommitError> {
    let row = c.query_opt(
        "SELECT status FROM model_status WHERE model = $1",
        &[&model],
    )?;
    row.map(|r| r.try_get(0).map_err(ce)).transpose()
}

/// What `commit_payment` needs to say why its conditional update touched no row.
fn payment_row(c: &mut Conn, id: &CredentialId) -> Result<Option<PaymentRow>, CommitError> {
    let row = c.query_opt(
        "SELECT c.counter, c.status, m.status FROM credentials c
         LEFT JOIN model_status m ON m.model = c.device_model WHERE c.credential_id = $1",
        &[&id.as_bytes()],
    )?;
    row.map(|r| {
        Ok((
            r.try_get(0).map_err(ce)?,
            r.try_get(1).map_err(ce)?,
            r.try_get(2).map_err(ce)?,
        ))
    })
    .transpose()
}

macro_rules! credential_columns {
    () => {
        "credential_id, rp_id, account_handle, public_key, modalities, enrollment_epoch,
         security_level, kind, device_model, counter, status, registered_at"
    };
}

fn app_attest_row(r: &Row) -> Result<AppAttestRow, StoreError> {
    Ok((
        r.try_get(0).map_err(be)?,
        r.try_get(1).map_err(be)?,
        r.try_get(2).map_err(be)?,
        r.try_get(3).map_err(be)?,
        r.try_get(4).map_err(be)?,
        r.try_get(5).map_err(be)?,
    ))
}

impl PgStore {
    fn app_attest(&self, id: &CredentialId) -> Result<Option<AppAttestRow>, StoreError> {
        let row = self.read(|c| {
            c.query_opt(
                "SELECT key_id, public_key, app_id, environment, counter, receipt
                 FROM app_attest_keys WHERE credential_id = $1",
                &[&id.as_bytes()],
            )
        })?;
        row.map(|r| app_attest_row(&r)).transpose()
    }
}

fn credential_row(r: &Row) -> Result<CredentialRow, StoreError> {
    Ok(CredentialRow {
        credential_id: r.try_get(0).map_err(be)?,
        rp_id: r.try_get(1).map_err(be)?,
        account_handle: r.try_get(2).map_err(be)?,
        public_key: r.try_get(3).map_err(be)?,
        modalities: r.try_get(4).map_err(be)?,
        enrollment_epoch: r.try_get(5).map_err(be)?,
        security_level: r.try_get(6).map_err(be)?,
        kind: r.try_get(7).map_err(be)?,
        device_model: r.try_get(8).map_err(be)?,
        counter: r.try_get(9).map_err(be)?,
        status: r.try_get(10).map_err(be)?,
        registered_at: r.try_get(11).map_err(be)?,
    })
}

/// A write that cannot fail a conditional check reports only backend errors.
const LAST_CHECKPOINT: &str = "SELECT version, seq, hash, at, prev_hash, public_key, signature
     FROM audit_checkpoints ORDER BY seq DESC LIMIT 1";

/// A checkpoint row (`version, seq, hash, at, prev_hash, public_key, signature`).
fn checkpoint_row(r: &Row) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        version: u64_of(r.try_get(0).map_err(be)?)?,
        seq: u64_of(r.try_get(1).map_err(be)?)?,
        entry_hash: r.try_get(2).map_err(be)?,
        at: u64_of(r.try_get(3).map_err(be)?)?,
        prev_checkpoint_hash: r.try_get(4).map_err(be)?,
        public_key: r.try_get(5).map_err(be)?,
        signature: r.try_get(6).map_err(be)?,
    })
}

fn store_error(e: CommitError) -> StoreError {
    match e {
        CommitError::Backend(e) => e,
        other => StoreError(other.to_string()),
    }
}

impl Store for PgStore {
    fn insert_challenge(
        &self,
        issued: IssuedChallenge,
        limit: Option<ChallengeLimit>,
    ) -> Result<bool, StoreError> {
        let (kind, body, counter_at_issue, expires_at) = challenge_columns(&issued)?;
        let key = challenge_key(issued.challenge());
        let account = issued.account_handle().to_vec();
        let limit = limit.map(|l| Ok::<_, StoreError>((i64::from(l.max), i64_of(l.now)?)));
        let limit = limit.transpose()?;
        self.write(false, move |c, _| {
            let n = match limit {
                None => c.execute(
                    "INSERT INTO challenges
                        (challenge, kind, body, counter_at_issue, expires_at, consumed, account)
                     VALUES ($1, $2, $3, $4, $5, false, $6)",
                    &[&key, &kind, &body, &counter_at_issue, &expires_at, &account],
                )?,
                // One statement: the count and the insert. Under READ
                // COMMITTED, concurrent issuers in several processes can each
                // see room, so the limit may be exceeded by the number of
                // racing processes; it bounds abuse, it is not a quota.
                Some((max, now)) => c.execute(
                    "INSERT INTO challenges
                        (challenge, kind, body, counter_at_issue, expires_at, consumed, account)
                     SELECT $1, $2, $3, $4, $5, false, $6
                     WHERE (SELECT COUNT(*) FROM challenges
                            WHERE account = $6 AND NOT consumed AND expires_at > $8) < $7",
                    &[
                        &key,
                        &kind,
                        &body,
                        &counter_at_issue,
                        &expires_at,
                        &account,
                        &max,
                        &now,
                    ],
                )?,
            };
            Ok(n == 1)
        })
        .map_err(store_error)
    }

    fn challenge(&self, challenge: &Challenge) -> Result<Option<ChallengeEntry>, StoreError> {
        let row = self.read(|c| {
            c.query_opt(
                "SELECT kind, body, counter_at_issue, consumed FROM challenges WHERE challenge = $1",
                &[&challenge_key(challenge)],
            )
        })?;
        let Some(r) = row else { return Ok(None) };
        let kind: String = r.try_get(0).map_err(be)?;
        let body: Vec<u8> = r.try_get(1).map_err(be)?;
        challenge_entry(
            &kind,
            &body,
            r.try_get(2).map_err(be)?,
            r.try_get(3).map_err(be)?,
        )
        .map(Some)
    }

    fn credential(&self, id: &CredentialId) -> Result<Option<CredentialRecord>, StoreError> {
        let row = self.read(|c| {
            c.query_opt(
                concat!(
                    "SELECT ",
                    credential_columns!(),
                    " FROM credentials WHERE credential_id = $1"
                ),
                &[&id.as_bytes()],
            )
        })?;
        row.map(|r| with_app_attest(credential_row(&r)?.into_record()?, |id| self.app_attest(id)))
            .transpose()
    }

    fn credentials_for_account(
        &self,
        rp_id: &str,
        account_handle: &[u8],
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        self.read(|c| {
            c.query(
                concat!(
                    "SELECT ",
                    credential_columns!(),
                    " FROM credentials WHERE rp_id = $1 AND account_handle = $2
                     ORDER BY registered_at, credential_id"
                ),
                &[&rp_id, &account_handle],
            )
        })?
        .iter()
        .map(|r| with_app_attest(credential_row(r)?.into_record()?, |id| self.app_attest(id)))
        .collect()
    }

    fn commit_registration(
        &self,
        challenge: &Challenge,
        record: &CredentialRecord,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let (challenge, record, audit) = (*challenge, record.clone(), accepted_record(decision));
        self.write(true, move |c, head| {
            consume(c, &challenge)?;
            // Read inside the commit transaction, after any status change
            // that returned before this statement began (docs/PROTOCOL.md §6.1.1).
            check_model(model_status(c, &record.device_model)?.as_deref())?;
            let n = c.execute(
                concat!(
                    "INSERT INTO credentials (",
                    credential_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (credential_id) DO NOTHING"
                ),
                &[
                    &record.credential_id.as_bytes(),
                    &record.rp_id,
                    &record.account_handle,
                    &record.public_key,
                    &modalities_str(&record.modalities),
                    &record.enrollment_epoch.as_slice(),
                    &i64_of(record.security_level.to_u64())?,
                    &record.kind.as_str(),
                    &record.device_model,
                    &i64_of(record.counter)?,
                    &record.status.as_str(),
                    &i64_of(record.registered_at)?,
                ],
            )?;
            if n != 1 {
                return Err(CommitError::CredentialExists);
            }
            if let Some(k) = &record.app_attest {
                c.execute(
                    "INSERT INTO app_attest_keys
                        (credential_id, key_id, public_key, app_id, environment, counter, receipt)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &record.credential_id.as_bytes(),
                        &k.key_id.as_slice(),
                        &k.public_key,
                        &k.app_id,
                        &k.environment.as_str(),
                        &i64::from(k.counter),
                        &k.receipt,
                    ],
                )?;
            }
            append(c, head, &audit)?;
            Ok(())
        })
    }

    fn commit_payment(
        &self,
        challenge: &Challenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let new = i64_of(new_counter)?;
        let (challenge, id, audit) = (*challenge, id.clone(), accepted_record(decision));
        self.write(true, move |c, head| {
            pay(
                c,
                head,
                payment_sql!(
                    "UPDATE challenges SET consumed = true
                        WHERE challenge = $1 AND NOT consumed RETURNING 1"
                ),
                &challenge_key(&challenge),
                None,
                &id,
                new,
                app_attest_counter,
                &audit,
            )
        })
    }

    fn commit_status(
        &self,
        id: &CredentialId,
        expected_counter: u64,
        new_counter: u64,
        expected_status: CredentialStatus,
        status: CredentialStatus,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let (expected, new) = (i64_of(expected_counter)?, i64_of(new_counter)?);
        let (id, audit) = (id.clone(), accepted_record(decision));
        self.write(true, move |c, head| {
            let n = c.execute(
                "UPDATE credentials SET counter = $1, status = $2
                 WHERE credential_id = $3 AND counter = $4 AND status = $5",
                &[
                    &new,
                    &status.as_str(),
                    &id.as_bytes(),
                    &expected,
                    &expected_status.as_str(),
                ],
            )?;
            if n != 1 {
                return Err(match current(c, &id)? {
                    None => CommitError::UnknownCredential,
                    Some(_) => CommitError::CounterConflict,
                });
            }
            append(c, head, &audit)?;
            Ok(())
        })
    }

    fn flag_credential(&self, flag: &Flag) -> Result<(), CommitError> {
        let (id, status, audit) = (flag.credential_id.clone(), flag.status, flag_record(flag));
        self.write(true, move |c, head| {
            let n = c.execute(
                "UPDATE credentials SET status = $1 WHERE credential_id = $2 AND status = 'active'",
                &[&status.as_str(), &id.as_bytes()],
            )?;
            if n == 0 && current(c, &id)?.is_none() {
                return Err(CommitError::UnknownCredential);
            }
            append(c, head, &audit)?;
            Ok(())
        })
    }

    fn set_credential_status(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
    ) -> Result<(), CommitError> {
        let id = id.clone();
        self.write(false, move |c, _| set_status(c, &id, status))
    }

    fn purge_expired_challenges(&self, now: u64) -> Result<usize, StoreError> {
        let now = i64_of(now)?;
        let n = self
            .write(false, move |c, _| {
                Ok(c.execute("DELETE FROM challenges WHERE expires_at < $1", &[&now])?)
            })
            .map_err(store_error)?;
        usize::try_from(n).map_err(be)
    }

    fn commit_payment_spending(
        &self,
        spent: &SpentChallenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let (new, expires_at) = (i64_of(new_counter)?, i64_of(spent.expires_at)?);
        let (challenge, id, audit) = (spent.challenge, id.clone(), accepted_record(decision));
        self.write(true, move |c, head| {
            pay(
                c,
                head,
                payment_sql!(
                    "INSERT INTO spent_challenges (challenge, expires_at) VALUES ($1, $14)
                        ON CONFLICT (challenge) DO NOTHING RETURNING 1"
                ),
                &challenge_key(&challenge),
                Some(expires_at),
                &id,
                new,
                app_attest_counter,
                &audit,
            )
        })
    }

    fn challenge_spent(&self, challenge: &Challenge) -> Result<bool, StoreError> {
        let key = challenge_key(challenge);
        let row = self.read(|c| {
            c.query_opt(
                "SELECT 1 FROM spent_challenges WHERE challenge = $1",
                &[&key],
            )
        })?;
        Ok(row.is_some())
    }

    fn purge_spent_challenges(&self, before: u64) -> Result<usize, StoreError> {
        let before = i64_of(before)?;
        let n = self
            .write(false, move |c, _| {
                Ok(c.execute(
                    "DELETE FROM spent_challenges WHERE expires_at < $1",
                    &[&before],
                )?)
            })
            .map_err(store_error)?;
        usize::try_from(n).map_err(be)
    }
}

impl ServerStore for PgStore {
    fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.write(true, move |c, head| Ok(append(c, head, &record)?))
            .map_err(store_error)
    }

    fn append_rejection(
        &self,
        record: Option<&AuditRecord>,
        counted: Option<&CredentialId>,
        at: u64,
    ) -> Result<(), StoreError> {
        let (record, counted) = (record.cloned(), counted.cloned());
        let at = i64_of(at)?;
        self.write(record.is_some(), move |c, head| {
            if let Some(id) = &counted {
                c.execute(
                    "INSERT INTO failures (kind, subject, at) VALUES ('credential', $1, $2)",
                    &[&id.as_bytes(), &at],
                )?;
                c.execute(
                    "INSERT INTO failures (kind, subject, at)
                     SELECT 'account', account_handle, $2 FROM credentials WHERE credential_id = $1",
                    &[&id.as_bytes(), &at],
                )?;
            }
            if let Some(record) = &record {
                append(c, head, record)?;
            }
            Ok(())
        })
        .map_err(store_error)
    }

    fn recent_failures(&self, id: &CredentialId, since: u64) -> Result<u64, StoreError> {
        let since = i64_of(since)?;
        let r = self.read(|c| {
            c.query_opt(
                "SELECT GREATEST(
                    (SELECT COUNT(*) FROM failures
                     WHERE kind = 'credential' AND subject = $1 AND at >= $2),
                    (SELECT COUNT(*) FROM failures
                     WHERE kind = 'account' AND at >= $2 AND subject =
                        (SELECT account_handle FROM credentials WHERE credential_id = $1)))",
                &[&id.as_bytes(), &since],
            )
        })?;
        let n: Option<i64> = r.map(|r| r.try_get(0)).transpose().map_err(be)?;
        u64_of(n.unwrap_or(0))
    }

    fn failures_and_credential(
        &self,
        id: &CredentialId,
        since: u64,
    ) -> Result<(u64, Option<CredentialRecord>), StoreError> {
        // recent_failures' count and credential()'s row in one query (an
        // unknown credential has no row, and no account count).
        let since_i = i64_of(since)?;
        let row = self.read(|c| {
            c.query_opt(
                concat!(
                    "SELECT ",
                    credential_columns!(),
                    ", GREATEST(
                        (SELECT COUNT(*) FROM failures
                         WHERE kind = 'credential' AND subject = $1 AND at >= $2),
                        (SELECT COUNT(*) FROM failures
                         WHERE kind = 'account' AND at >= $2
                           AND subject = credentials.account_handle))
                     FROM credentials WHERE credential_id = $1"
                ),
                &[&id.as_bytes(), &since_i],
            )
        })?;
        match row {
            None => Ok((self.recent_failures(id, since)?, None)),
            Some(r) => {
                let n: i64 = r.try_get(12).map_err(be)?;
                let record = credential_row(&r)?.into_record()?;
                Ok((
                    u64_of(n)?,
                    Some(with_app_attest(record, |id| self.app_attest(id))?),
                ))
            }
        }
    }

    fn purge_failures(&self, before: u64) -> Result<usize, StoreError> {
        let before = i64_of(before)?;
        let n = self
            .write(false, move |c, _| {
                Ok(c.execute("DELETE FROM failures WHERE at < $1", &[&before])?)
            })
            .map_err(store_error)?;
        usize::try_from(n).map_err(be)
    }

    fn audit_entries(&self, after: u64, limit: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let (after, limit) = (i64_of(after)?, i64_of(limit)?);
        self.read(|c| {
            c.query(
                "SELECT seq, at, kind, outcome, step, credential, statement_hash, reason, prev_hash,
                    hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )
        })?
        .iter()
        .map(|r| {
            Ok(AuditEntry {
                seq: u64_of(r.try_get(0).map_err(be)?)?,
                record: AuditRecord {
                    at: u64_of(r.try_get(1).map_err(be)?)?,
                    kind: r.try_get(2).map_err(be)?,
                    outcome: r.try_get(3).map_err(be)?,
                    step: r.try_get(4).map_err(be)?,
                    credential: r.try_get(5).map_err(be)?,
                    statement_hash: r.try_get(6).map_err(be)?,
                    reason: r.try_get(7).map_err(be)?,
                },
                prev_hash: r.try_get(8).map_err(be)?,
                hash: r.try_get(9).map_err(be)?,
            })
        })
        .collect()
    }

    fn audit_head(&self) -> Result<(u64, String), StoreError> {
        let r = self
            .read(|c| c.query_opt("SELECT seq, hash FROM audit_head WHERE id = 1", &[]))?
            .ok_or_else(|| StoreError("no audit head".into()))?;
        Ok((
            u64_of(r.try_get(0).map_err(be)?)?,
            r.try_get(1).map_err(be)?,
        ))
    }

    fn checkpoints(&self, after: u64, limit: u64) -> Result<Vec<Checkpoint>, StoreError> {
        let (after, limit) = (i64_of(after)?, i64_of(limit)?);
        self.read(|c| {
            c.query(
                "SELECT version, seq, hash, at, prev_hash, public_key, signature
                 FROM audit_checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )
        })?
        .iter()
        .map(checkpoint_row)
        .collect()
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.read(|c| c.query_opt(LAST_CHECKPOINT, &[]))?
            .as_ref()
            .map(checkpoint_row)
            .transpose()
    }

    fn insert_checkpoint(&self, c: &Checkpoint) -> Result<bool, StoreError> {
        let cp = c.clone();
        let (version, seq, at) = (i64_of(cp.version)?, i64_of(cp.seq)?, i64_of(cp.at)?);
        self.write(false, move |c, _| {
            // The batch holds the audit head row lock (see `write`): no
            // other process's checkpoint can land between this check and
            // the insert.
            let last = c
                .query_opt(LAST_CHECKPOINT, &[])?
                .as_ref()
                .map(checkpoint_row)
                .transpose()?;
            if !super::checkpoint_follows(&cp, last.as_ref()) {
                return Ok(false);
            }
            let n = c.execute(
                "INSERT INTO audit_checkpoints
                    (seq, hash, at, public_key, signature, version, prev_hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[
                    &seq,
                    &cp.entry_hash,
                    &at,
                    &cp.public_key,
                    &cp.signature,
                    &version,
                    &cp.prev_checkpoint_hash,
                ],
            )?;
            Ok(n == 1)
        })
        .map_err(store_error)
    }

    fn set_model_status(
        &self,
        model: &str,
        status: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let (model, status, audit) = (model.to_owned(), status.to_owned(), audit.clone());
        self.write(true, move |c, head| {
            c.execute(
                "INSERT INTO model_status (model, status) VALUES ($1, $2)
                 ON CONFLICT (model) DO UPDATE SET status = excluded.status",
                &[&model, &status],
            )?;
            append(c, head, &audit)?;
            Ok(())
        })
        .map_err(store_error)
    }

    fn set_credential_status_audited(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
        audit: &AuditRecord,
    ) -> Result<(), CommitError> {
        let (id, audit) = (id.clone(), audit.clone());
        self.write(true, move |c, head| {
            set_status(c, &id, status)?;
            append(c, head, &audit)?;
            Ok(())
        })
    }

    fn model_statuses(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|c| c.query("SELECT model, status FROM model_status ORDER BY model", &[]))?
            .iter()
            .map(|r| Ok((r.try_get(0).map_err(be)?, r.try_get(1).map_err(be)?)))
            .collect()
    }
}
