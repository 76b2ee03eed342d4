//! [`biopay_core::Store`] on embedded SQLite: WAL journal, `synchronous=FULL`
//! (a commit is on disk before the server answers).
//!
//! One writer connection, owned by a [group committer](super::committer):
//! concurrent write operations share one `BEGIN IMMEDIATE` transaction and one
//! fsync, each in its own savepoint. Concurrent processes on the same file
//! serialize on SQLite's write lock and the conditional updates still decide.
//! Reads use a few separate read-only connections (WAL readers never wait
//! for the writer's fsync). Every statement is prepared once per connection
//! (`prepare_cached`).

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
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use std::{
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

/// Versioned schema migrations, applied in order at startup.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE challenges (
        challenge BLOB PRIMARY KEY,
        kind TEXT NOT NULL,
        body BLOB NOT NULL,
        counter_at_issue INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        consumed INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX challenges_expiry ON challenges (expires_at);
    CREATE TABLE credentials (
        credential_id BLOB PRIMARY KEY,
        rp_id TEXT NOT NULL,
        account_handle BLOB NOT NULL,
        public_key BLOB NOT NULL,
        modalities TEXT NOT NULL,
        enrollment_epoch BLOB NOT NULL,
        security_level INTEGER NOT NULL,
        kind TEXT NOT NULL,
        device_model TEXT NOT NULL,
        counter INTEGER NOT NULL,
        status TEXT NOT NULL,
        registered_at INTEGER NOT NULL
    );
    CREATE INDEX credentials_account ON credentials (rp_id, account_handle);
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
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
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
    );
    INSERT INTO audit_head (id, seq, hash)
        VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
    CREATE TABLE audit_checkpoints (
        seq INTEGER PRIMARY KEY,
        hash TEXT NOT NULL,
        at INTEGER NOT NULL,
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
            subject BLOB NOT NULL,
            at INTEGER NOT NULL
        );
        CREATE INDEX failures_subject ON failures (kind, subject, at);
        CREATE INDEX failures_at ON failures (at);",
    ),
    (
        3,
        // The account of each challenge, for the per-account issuance limit
        // (PROTOCOL.md §6.1.3). Challenges issued before this migration have
        // none and count against nobody until they expire.
        "ALTER TABLE challenges ADD COLUMN account BLOB;
        CREATE INDEX challenges_account ON challenges (account, expires_at);",
    ),
    (
        4,
        // Chained checkpoints (docs/PROTOCOL.md §9.4): each names the hash of
        // the previous one. Rows from before keep version 1 (unchained); at
        // most one chained checkpoint may name any given predecessor.
        "ALTER TABLE audit_checkpoints ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
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
            credential_id BLOB PRIMARY KEY REFERENCES credentials (credential_id),
            key_id BLOB NOT NULL,
            public_key BLOB NOT NULL,
            app_id TEXT NOT NULL,
            environment TEXT NOT NULL,
            counter INTEGER NOT NULL,
            receipt BLOB NOT NULL
        );",
    ),
    (
        6,
        // Spent self-authenticating payment challenges (docs/PROTOCOL.md
        // §7.1 rule 5): inserted by the payment's commit; the primary key
        // makes a second spend a conflict. Purged after expiry and skew.
        "CREATE TABLE spent_challenges (
            challenge BLOB PRIMARY KEY,
            expires_at INTEGER NOT NULL
        );
        CREATE INDEX spent_challenges_expires ON spent_challenges (expires_at);",
    ),
];

fn be(e: rusqlite::Error) -> StoreError {
    StoreError(format!("sqlite: {e}"))
}

fn ce(e: rusqlite::Error) -> CommitError {
    CommitError::Backend(be(e))
}

/// Read-only connections for concurrent reads.
const READERS: usize = 4;

/// The writer connection, driven by the committer.
pub struct Writer {
    conn: Connection,
}

impl WriteConn for Writer {
    fn exec(&mut self, sql: &'static str) -> Result<(), StoreError> {
        // Prepared once each: these run several times per batch.
        for one in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            self.conn
                .prepare_cached(one)
                .and_then(|mut s| s.execute([]))
                .map_err(be)?;
        }
        Ok(())
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        self.exec("BEGIN IMMEDIATE")
    }
    fn lock_head(&mut self) -> Result<(i64, String), StoreError> {
        self.conn
            .prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(be)
    }
    fn store_head(&mut self, seq: i64, hash: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")
            .and_then(|mut s| s.execute(params![seq, hash]))
            .map_err(be)
            .map(|_| ())
    }
}

/// The SQLite store.
pub struct SqliteStore {
    committer: Committer<Writer>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(be)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(be)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating it and its directory when missing) the database at
    /// `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("create {}: {e}", dir.display())))?;
        }
        let mut conn = open_conn(path, OpenFlags::default())?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(be)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(be)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(be)?;
        migrate(&mut conn)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = open_conn(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            readers.push(Mutex::new(r));
        }
        Ok(Self {
            committer: Committer::start(Writer { conn }, "biopay-sqlite-commit")?,
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Group commit counters: (transactions, operations, batches re-run with
    /// savepoints after a failed operation) so far.
    pub fn commit_stats(&self) -> (u64, u64, u64) {
        self.committer.stats()
    }

    /// A read connection: a free one if any, else waits for one in turn.
    fn reader(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Some(m) = self.readers.get((start + i) % n) {
                if let Ok(g) = m.try_lock() {
                    return Ok(g);
                }
            }
        }
        // A panic while holding a read connection leaves no state behind.
        self.readers
            .get(start % n.max(1))
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
            .ok_or_else(|| StoreError("no read connection".into()))
    }

    fn write<T: Send + 'static>(
        &self,
        appends: bool,
        mut f: impl FnMut(&Connection, &mut Head) -> Result<T, CommitError> + Send + 'static,
    ) -> Result<T, CommitError> {
        self.committer.call(appends, move |w, h| f(&w.conn, h))
    }

    fn read<T>(
        &self,
        sql: &'static str,
        p: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(sql).map_err(be)?;
        stmt.query_row(p, f).optional().map_err(be)
    }

    fn read_all<T>(
        &self,
        sql: &'static str,
        p: impl rusqlite::Params,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(sql).map_err(be)?;
        let rows = stmt
            .query_map(p, f)
            .map_err(be)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(be);
        rows
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(be)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(be)?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(be)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(sql).map_err(be)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, i64_of(crate::now())?],
        )
        .map_err(be)?;
    }
    tx.commit().map_err(be)
}

/// An operator's status change; deregistration is final.
fn set_status(
    c: &Connection,
    id: &CredentialId,
    status: CredentialStatus,
) -> Result<(), CommitError> {
    let n = exec(
        c,
        "UPDATE credentials SET status = ?1
         WHERE credential_id = ?2 AND status <> 'deregistered'",
        params![status.as_str(), id.as_bytes()],
    )?;
    if n == 0 {
        return Err(match current(c, id)? {
            None => CommitError::UnknownCredential,
            Some(_) => CommitError::CredentialNotActive(CredentialStatus::Deregistered),
        });
    }
    Ok(())
}

fn exec(
    conn: &Connection,
    sql: &'static str,
    p: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute(p))
        .map_err(be)
}

/// Appends `record` to the chain inside the batch (which holds the write lock).
fn append(conn: &Connection, head: &mut Head, record: &AuditRecord) -> Result<(), StoreError> {
    let e = head.next(record)?;
    exec(
        conn,
        "INSERT INTO audit_log (seq, at, kind, outcome, step, credential, statement_hash, reason,
            prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            e.seq,
            i64_of(record.at)?,
            record.kind,
            record.outcome,
            record.step,
            record.credential,
            record.statement_hash,
            record.reason,
            e.prev_hash,
            e.hash
        ],
    )?;
    Ok(())
}

/// A checkpoint row (`version, seq, hash, at, prev_hash, public_key, signature`).
fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Checkpoint, StoreError>> {
    let (version, seq, at): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(3)?);
    let (entry_hash, prev_checkpoint_hash, public_key, signature) =
        (r.get(2)?, r.get(4)?, r.get(5)?, r.get(6)?);
    Ok((|| {
        Ok(Checkpoint {
            version: u64_of(version)?,
            seq: u64_of(seq)?,
            entry_hash,
            at: u64_of(at)?,
            prev_checkpoint_hash,
            public_key,
            signature,
        })
    })())
}

fn consume(conn: &Connection, challenge: &Challenge) -> Result<(), CommitError> {
    let n = exec(
        conn,
        "UPDATE challenges SET consumed = 1 WHERE challenge = ?1 AND consumed = 0",
        params![challenge_key(challenge)],
    )?;
    if n == 1 {
        Ok(())
    } else {
        Err(CommitError::ChallengeUsed)
    }
}

/// The rest of a payment's commit, after its challenge was consumed or
/// spent (PROTOCOL.md §7.3): counter, App Attest counter, failure counts and
/// the audit entry, in the caller's transaction.
fn apply_payment(
    c: &Connection,
    head: &mut Head,
    id: &CredentialId,
    new: i64,
    app_attest_counter: Option<u32>,
    audit: &AuditRecord,
) -> Result<(), CommitError> {
    // The credential still active, its device model not revoked (as
    // persisted by any process) and the counter still below the new
    // one, all inside the write transaction.
    let n = exec(
        c,
        "UPDATE credentials SET counter = ?1
         WHERE credential_id = ?2 AND counter < ?1 AND status = 'active'
           AND NOT EXISTS (SELECT 1 FROM model_status m
                           WHERE m.model = credentials.device_model
                             AND m.status <> 'active')",
        params![new, id.as_bytes()],
    )?;
    if n != 1 {
        return Err(payment_conflict(payment_row(c, id)?));
    }
    // The App Attest counter of the assertion (J4), in the same
    // transaction: only if the stored one is still below it.
    if let Some(aa) = app_attest_counter {
        let moved = exec(
            c,
            "UPDATE app_attest_keys SET counter = ?1
             WHERE credential_id = ?2 AND counter < ?1",
            params![i64::from(aa), id.as_bytes()],
        )?;
        if moved != 1 {
            let stored: Option<i64> = c
                .prepare_cached("SELECT counter FROM app_attest_keys WHERE credential_id = ?1")
                .and_then(|mut s| s.query_row(params![id.as_bytes()], |r| r.get(0)).optional())
                .map_err(ce)?;
            return Err(app_attest_conflict(stored));
        }
    }
    // A success clears the failure counts of the credential and of
    // its account (rate limiting, PROTOCOL.md §9.2).
    exec(
        c,
        "DELETE FROM failures
         WHERE (kind = 'credential' AND subject = ?1)
            OR (kind = 'account' AND subject =
                (SELECT account_handle FROM credentials WHERE credential_id = ?1))",
        params![id.as_bytes()],
    )?;
    append(c, head, audit)?;
    Ok(())
}

/// Inserts the spent entry of a self-authenticating payment challenge
/// (PROTOCOL.md §7.1 rule 5); one already present is `ChallengeUsed`.
fn spend(conn: &Connection, spent: &SpentChallenge) -> Result<(), CommitError> {
    let n = exec(
        conn,
        "INSERT INTO spent_challenges (challenge, expires_at) VALUES (?1, ?2)
         ON CONFLICT (challenge) DO NOTHING",
        params![challenge_key(&spent.challenge), i64_of(spent.expires_at)?],
    )?;
    if n == 1 {
        Ok(())
    } else {
        Err(CommitError::ChallengeUsed)
    }
}

fn current(conn: &Connection, id: &CredentialId) -> Result<Option<(i64, String)>, CommitError> {
    conn.prepare_cached("SELECT counter, status FROM credentials WHERE credential_id = ?1")
        .and_then(|mut s| {
            s.query_row(params![id.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(ce)
}

/// The persisted status of a device model (`None`: never set by an operator).
fn model_status(conn: &Connection, model: &str) -> Result<Option<String>, CommitError> {
    conn.prepare_cached("SELECT status FROM model_status WHERE model = ?1")
        .and_then(|mut s| s.query_row(params![model], |r| r.get(0)).optional())
        .map_err(ce)
}

/// What `commit_payment` needs to say why its conditional update touched no row.
fn payment_row(conn: &Connection, id: &CredentialId) -> Result<Option<PaymentRow>, CommitError> {
    conn.prepare_cached(
        "SELECT c.counter, c.status, m.status FROM credentials c
         LEFT JOIN model_status m ON m.model = c.device_model WHERE c.credential_id = ?1",
    )
    .and_then(|mut s| {
        s.query_row(params![id.as_bytes()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
    })
    .map_err(ce)
}

macro_rules! credential_columns {
    () => {
        "credential_id, rp_id, account_handle, public_key, modalities, enrollment_epoch,
         security_level, kind, device_model, counter, status, registered_at"
    };
}

const APP_ATTEST_SELECT: &str = "SELECT key_id, public_key, app_id, environment, counter, receipt
     FROM app_attest_keys WHERE credential_id = ?1";

fn app_attest_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AppAttestRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

impl SqliteStore {
    fn app_attest(&self, id: &CredentialId) -> Result<Option<AppAttestRow>, StoreError> {
        self.read(APP_ATTEST_SELECT, params![id.as_bytes()], app_attest_row)
    }
}

fn credential_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CredentialRow> {
    Ok(CredentialRow {
        credential_id: r.get(0)?,
        rp_id: r.get(1)?,
        account_handle: r.get(2)?,
        public_key: r.get(3)?,
        modalities: r.get(4)?,
        enrollment_epoch: r.get(5)?,
        security_level: r.get(6)?,
        kind: r.get(7)?,
        device_model: r.get(8)?,
        counter: r.get(9)?,
        status: r.get(10)?,
        registered_at: r.get(11)?,
    })
}

impl Store for SqliteStore {
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
                None => exec(
                    c,
                    "INSERT INTO challenges
                        (challenge, kind, body, counter_at_issue, expires_at, consumed, account)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
                    params![key, kind, body, counter_at_issue, expires_at, account],
                )?,
                // The count and the insert are one statement in the single
                // writer's transaction: no two inserts can both see room.
                Some((max, now)) => exec(
                    c,
                    "INSERT INTO challenges
                        (challenge, kind, body, counter_at_issue, expires_at, consumed, account)
                     SELECT ?1, ?2, ?3, ?4, ?5, 0, ?6
                     WHERE (SELECT COUNT(*) FROM challenges
                            WHERE account = ?6 AND NOT consumed AND expires_at > ?8) < ?7",
                    params![
                        key,
                        kind,
                        body,
                        counter_at_issue,
                        expires_at,
                        account,
                        max,
                        now
                    ],
                )?,
            };
            Ok(n == 1)
        })
        .map_err(store_error)
    }

    fn challenge(&self, challenge: &Challenge) -> Result<Option<ChallengeEntry>, StoreError> {
        let row: Option<(String, Vec<u8>, i64, bool)> = self.read(
            "SELECT kind, body, counter_at_issue, consumed FROM challenges WHERE challenge = ?1",
            params![challenge_key(challenge)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        row.map(|(k, b, c, used)| challenge_entry(&k, &b, c, used))
            .transpose()
    }

    fn credential(&self, id: &CredentialId) -> Result<Option<CredentialRecord>, StoreError> {
        self.read(
            concat!(
                "SELECT ",
                credential_columns!(),
                " FROM credentials WHERE credential_id = ?1"
            ),
            params![id.as_bytes()],
            credential_row,
        )?
        .map(|r| with_app_attest(r.into_record()?, |id| self.app_attest(id)))
        .transpose()
    }

    fn credentials_for_account(
        &self,
        rp_id: &str,
        account_handle: &[u8],
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        self.read_all(
            concat!(
                "SELECT ",
                credential_columns!(),
                " FROM credentials WHERE rp_id = ?1 AND account_handle = ?2
                 ORDER BY registered_at, credential_id"
            ),
            params![rp_id, account_handle],
            credential_row,
        )?
        .into_iter()
        .map(|r| with_app_attest(r.into_record()?, |id| self.app_attest(id)))
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
            // Read inside the write transaction: no process can change it
            // before this commit ends (docs/PROTOCOL.md §6.1.1).
            check_model(model_status(c, &record.device_model)?.as_deref())?;
            if current(c, &record.credential_id)?.is_some() {
                return Err(CommitError::CredentialExists);
            }
            exec(
                c,
                concat!(
                    "INSERT INTO credentials (",
                    credential_columns!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                params![
                    record.credential_id.as_bytes(),
                    record.rp_id,
                    record.account_handle,
                    record.public_key,
                    modalities_str(&record.modalities),
                    record.enrollment_epoch.to_vec(),
                    i64_of(record.security_level.to_u64())?,
                    record.kind.as_str(),
                    record.device_model,
                    i64_of(record.counter)?,
                    record.status.as_str(),
                    i64_of(record.registered_at)?,
                ],
            )?;
            if let Some(k) = &record.app_attest {
                exec(
                    c,
                    "INSERT INTO app_attest_keys
                        (credential_id, key_id, public_key, app_id, environment, counter, receipt)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        record.credential_id.as_bytes(),
                        k.key_id.to_vec(),
                        k.public_key,
                        k.app_id,
                        k.environment.as_str(),
                        i64::from(k.counter),
                        k.receipt,
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
            consume(c, &challenge)?;
            apply_payment(c, head, &id, new, app_attest_counter, &audit)
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
            let n = exec(
                c,
                "UPDATE credentials SET counter = ?1, status = ?2
                 WHERE credential_id = ?3 AND counter = ?4 AND status = ?5",
                params![
                    new,
                    status.as_str(),
                    id.as_bytes(),
                    expected,
                    expected_status.as_str()
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
            let n = exec(
                c,
                "UPDATE credentials SET status = ?1 WHERE credential_id = ?2 AND status = 'active'",
                params![status.as_str(), id.as_bytes()],
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
        self.write(false, move |c, _| {
            Ok(exec(
                c,
                "DELETE FROM challenges WHERE expires_at < ?1",
                params![now],
            )?)
        })
        .map_err(store_error)
    }

    fn commit_payment_spending(
        &self,
        spent: &SpentChallenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let new = i64_of(new_counter)?;
        let (spent, id, audit) = (*spent, id.clone(), accepted_record(decision));
        self.write(true, move |c, head| {
            spend(c, &spent)?;
            apply_payment(c, head, &id, new, app_attest_counter, &audit)
        })
    }

    fn challenge_spent(&self, challenge: &Challenge) -> Result<bool, StoreError> {
        let found: Option<i64> = self.read(
            "SELECT 1 FROM spent_challenges WHERE challenge = ?1",
            params![challenge_key(challenge)],
            |r| r.get(0),
        )?;
        Ok(found.is_some())
    }

    fn purge_spent_challenges(&self, before: u64) -> Result<usize, StoreError> {
        let before = i64_of(before)?;
        self.write(false, move |c, _| {
            Ok(exec(
                c,
                "DELETE FROM spent_challenges WHERE expires_at < ?1",
                params![before],
            )?)
        })
        .map_err(store_error)
    }
}

/// A write that cannot fail a conditional check reports only backend errors.
fn store_error(e: CommitError) -> StoreError {
    match e {
        CommitError::Backend(e) => e,
        other => StoreError(other.to_string()),
    }
}

impl ServerStore for SqliteStore {
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
                exec(
                    c,
                    "INSERT INTO failures (kind, subject, at) VALUES ('credential', ?1, ?2)",
                    params![id.as_bytes(), at],
                )?;
                exec(
                    c,
                    "INSERT INTO failures (kind, subject, at)
                     SELECT 'account', account_handle, ?2 FROM credentials WHERE credential_id = ?1",
                    params![id.as_bytes(), at],
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
        let n: Option<i64> = self.read(
            "SELECT MAX(
                (SELECT COUNT(*) FROM failures
                 WHERE kind = 'credential' AND subject = ?1 AND at >= ?2),
                (SELECT COUNT(*) FROM failures
                 WHERE kind = 'account' AND at >= ?2 AND subject =
                    (SELECT account_handle FROM credentials WHERE credential_id = ?1)))",
            params![id.as_bytes(), i64_of(since)?],
            |r| r.get(0),
        )?;
        u64_of(n.unwrap_or(0))
    }

    fn failures_and_credential(
        &self,
        id: &CredentialId,
        since: u64,
    ) -> Result<(u64, Option<CredentialRecord>), StoreError> {
        // recent_failures' count and credential()'s row in one query (an
        // unknown credential has no row, and no account count).
        let row = self.read(
            concat!(
                "SELECT ",
                credential_columns!(),
                ", MAX(
                    (SELECT COUNT(*) FROM failures
                     WHERE kind = 'credential' AND subject = ?1 AND at >= ?2),
                    (SELECT COUNT(*) FROM failures
                     WHERE kind = 'account' AND at >= ?2 AND subject = account_handle))
                 FROM credentials WHERE credential_id = ?1"
            ),
            params![id.as_bytes(), i64_of(since)?],
            |r| Ok((credential_row(r)?, r.get::<_, i64>(12)?)),
        )?;
        match row {
            None => Ok((self.recent_failures(id, since)?, None)),
            Some((r, n)) => Ok((
                u64_of(n)?,
                Some(with_app_attest(r.into_record()?, |id| self.app_attest(id))?),
            )),
        }
    }

    fn purge_failures(&self, before: u64) -> Result<usize, StoreError> {
        let before = i64_of(before)?;
        self.write(false, move |c, _| {
            Ok(exec(
                c,
                "DELETE FROM failures WHERE at < ?1",
                params![before],
            )?)
        })
        .map_err(store_error)
    }

    fn audit_entries(&self, after: u64, limit: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = self.read_all(
            "SELECT seq, at, kind, outcome, step, credential, statement_hash, reason, prev_hash,
                hash FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![i64_of(after)?, i64_of(limit)?],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    AuditRecord {
                        at: 0,
                        kind: r.get(2)?,
                        outcome: r.get(3)?,
                        step: r.get(4)?,
                        credential: r.get(5)?,
                        statement_hash: r.get(6)?,
                        reason: r.get(7)?,
                    },
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(seq, at, mut record, prev_hash, hash)| {
                record.at = u64_of(at)?;
                Ok(AuditEntry {
                    seq: u64_of(seq)?,
                    record,
                    prev_hash,
                    hash,
                })
            })
            .collect()
    }

    fn audit_head(&self) -> Result<(u64, String), StoreError> {
        let (seq, hash): (i64, String) = self
            .read("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .ok_or_else(|| StoreError("no audit head".into()))?;
        Ok((u64_of(seq)?, hash))
    }

    fn checkpoints(&self, after: u64, limit: u64) -> Result<Vec<Checkpoint>, StoreError> {
        self.read_all(
            "SELECT version, seq, hash, at, prev_hash, public_key, signature
             FROM audit_checkpoints WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![i64_of(after)?, i64_of(limit)?],
            checkpoint_row,
        )?
        .into_iter()
        .collect()
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.read(
            "SELECT version, seq, hash, at, prev_hash, public_key, signature
             FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
            [],
            checkpoint_row,
        )?
        .transpose()
    }

    fn insert_checkpoint(&self, c: &Checkpoint) -> Result<bool, StoreError> {
        let cp = c.clone();
        let (version, seq, at) = (i64_of(cp.version)?, i64_of(cp.seq)?, i64_of(cp.at)?);
        self.write(false, move |c, _| {
            // Inside the write transaction: no other checkpoint can land
            // between this check and the insert.
            let last = c
                .prepare_cached(
                    "SELECT version, seq, hash, at, prev_hash, public_key, signature
                     FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
                )
                .and_then(|mut s| s.query_row([], checkpoint_row).optional())
                .map_err(be)?
                .transpose()?;
            if !super::checkpoint_follows(&cp, last.as_ref()) {
                return Ok(false);
            }
            let n = exec(
                c,
                "INSERT OR IGNORE INTO audit_checkpoints
                    (seq, hash, at, public_key, signature, version, prev_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    seq,
                    cp.entry_hash,
                    at,
                    cp.public_key,
                    cp.signature,
                    version,
                    cp.prev_checkpoint_hash
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
            exec(
                c,
                "INSERT INTO model_status (model, status) VALUES (?1, ?2)
                 ON CONFLICT (model) DO UPDATE SET status = excluded.status",
                params![model, status],
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
        self.read_all(
            "SELECT model, status FROM model_status ORDER BY model",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }
}
