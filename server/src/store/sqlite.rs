//! [`biopay_core::Store`] on embedded SQLite: WAL journal, `synchronous=FULL`
//! (a commit is on disk before the server answers), one writer connection.
//! Writes use `BEGIN IMMEDIATE`, so concurrent processes on the same file
//! serialize on SQLite's write lock and the conditional updates still decide.

use super::{
    accepted_record, challenge_columns, challenge_entry, challenge_key, counter_conflict, i64_of,
    modalities_str, u64_of, CredentialRow, ServerStore,
};
use crate::audit::{entry_hash, parse_hash, AuditEntry, AuditRecord, Checkpoint};
use biopay_core::{
    store::{
        ChallengeEntry, CommitError, CredentialRecord, CredentialStatus, Decision, IssuedChallenge,
        Store, StoreError,
    },
    Challenge, CredentialId,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::{
    path::Path,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

/// Versioned schema migrations, applied in order at startup.
const MIGRATIONS: &[(i64, &str)] = &[(
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
)];

fn be(e: rusqlite::Error) -> StoreError {
    StoreError(format!("sqlite: {e}"))
}

fn ce(e: rusqlite::Error) -> CommitError {
    CommitError::Backend(be(e))
}

/// The SQLite store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating it and its directory when missing) the database at
    /// `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("create {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path).map_err(be)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(be)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(be)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(be)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(be)?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // rusqlite rolls back an open transaction when it is dropped, so a
        // panic while holding the lock leaves no half-applied commit.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, CommitError>,
    ) -> Result<T, CommitError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(ce)?;
        let out = f(&tx)?; // dropping `tx` on error rolls back
        tx.commit().map_err(ce)?;
        Ok(out)
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

/// Appends `record` to the chain inside `tx` (which holds the write lock).
fn append(tx: &Transaction<'_>, record: &AuditRecord) -> Result<(), StoreError> {
    let (seq, prev): (i64, String) = tx
        .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(be)?;
    let prev_hash = parse_hash(&prev).ok_or_else(|| StoreError("corrupt audit head".into()))?;
    let hash = hex::encode(entry_hash(&prev_hash, record));
    let seq = seq + 1;
    tx.execute(
        "INSERT INTO audit_log (seq, at, kind, outcome, step, credential, statement_hash, reason,
            prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            seq,
            i64_of(record.at)?,
            record.kind,
            record.outcome,
            record.step,
            record.credential,
            record.statement_hash,
            record.reason,
            prev,
            hash
        ],
    )
    .map_err(be)?;
    tx.execute(
        "UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1",
        params![seq, hash],
    )
    .map_err(be)?;
    Ok(())
}

fn consume(tx: &Transaction<'_>, challenge: &Challenge) -> Result<(), CommitError> {
    let n = tx
        .execute(
            "UPDATE challenges SET consumed = 1 WHERE challenge = ?1 AND consumed = 0",
            params![challenge_key(challenge)],
        )
        .map_err(ce)?;
    if n == 1 {
        Ok(())
    } else {
        Err(CommitError::ChallengeUsed)
    }
}

fn current(tx: &Transaction<'_>, id: &CredentialId) -> Result<Option<(i64, String)>, CommitError> {
    tx.query_row(
        "SELECT counter, status FROM credentials WHERE credential_id = ?1",
        params![id.as_bytes()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(ce)
}

const CREDENTIAL_COLUMNS: &str = "credential_id, rp_id, account_handle, public_key, modalities,
    enrollment_epoch, security_level, kind, device_model, counter, status, registered_at";

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
    fn insert_challenge(&self, issued: IssuedChallenge) -> Result<(), StoreError> {
        let (kind, body, counter_at_issue, expires_at) = challenge_columns(&issued)?;
        self.lock()
            .execute(
                "INSERT INTO challenges (challenge, kind, body, counter_at_issue, expires_at, consumed)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                params![challenge_key(issued.challenge()), kind, body, counter_at_issue, expires_at],
            )
            .map_err(be)?;
        Ok(())
    }

    fn challenge(&self, challenge: &Challenge) -> Result<Option<ChallengeEntry>, StoreError> {
        let row: Option<(String, Vec<u8>, i64, bool)> = self
            .lock()
            .query_row(
                "SELECT kind, body, counter_at_issue, consumed FROM challenges WHERE challenge = ?1",
                params![challenge_key(challenge)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(be)?;
        row.map(|(k, b, c, used)| challenge_entry(&k, &b, c, used))
            .transpose()
    }

    fn credential(&self, id: &CredentialId) -> Result<Option<CredentialRecord>, StoreError> {
        let row = self
            .lock()
            .query_row(
                &format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE credential_id = ?1"),
                params![id.as_bytes()],
                credential_row,
            )
            .optional()
            .map_err(be)?;
        row.map(CredentialRow::into_record).transpose()
    }

    fn credentials_for_account(
        &self,
        rp_id: &str,
        account_handle: &[u8],
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE rp_id = ?1 AND account_handle = ?2
                 ORDER BY registered_at, credential_id"
            ))
            .map_err(be)?;
        let rows = stmt
            .query_map(params![rp_id, account_handle], credential_row)
            .map_err(be)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(be)?;
        rows.into_iter().map(CredentialRow::into_record).collect()
    }

    fn commit_registration(
        &self,
        challenge: &Challenge,
        record: &CredentialRecord,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        self.write(|tx| {
            consume(tx, challenge)?;
            let exists = current(tx, &record.credential_id)?.is_some();
            if exists {
                return Err(CommitError::CredentialExists);
            }
            tx.execute(
                &format!(
                    "INSERT INTO credentials ({CREDENTIAL_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
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
            )
            .map_err(ce)?;
            append(tx, &accepted_record(decision))?;
            Ok(())
        })
    }

    fn commit_payment(
        &self,
        challenge: &Challenge,
        id: &CredentialId,
        expected_counter: u64,
        new_counter: u64,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let (expected, new) = (i64_of(expected_counter)?, i64_of(new_counter)?);
        self.write(|tx| {
            consume(tx, challenge)?;
            let n = tx
                .execute(
                    "UPDATE credentials SET counter = ?1
                     WHERE credential_id = ?2 AND counter = ?3 AND status = 'active'",
                    params![new, id.as_bytes(), expected],
                )
                .map_err(ce)?;
            if n != 1 {
                return Err(counter_conflict(
                    current(tx, id)?,
                    expected,
                    CredentialStatus::Active,
                ));
            }
            append(tx, &accepted_record(decision))?;
            Ok(())
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
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE credentials SET counter = ?1, status = ?2
                     WHERE credential_id = ?3 AND counter = ?4 AND status = ?5",
                    params![
                        new,
                        status.as_str(),
                        id.as_bytes(),
                        expected,
                        expected_status.as_str()
                    ],
                )
                .map_err(ce)?;
            if n != 1 {
                return Err(match current(tx, id)? {
                    None => CommitError::UnknownCredential,
                    Some(_) => CommitError::CounterConflict,
                });
            }
            append(tx, &accepted_record(decision))?;
            Ok(())
        })
    }

    fn flag_credential(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
    ) -> Result<(), CommitError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE credentials SET status = ?1 WHERE credential_id = ?2 AND status = 'active'",
                    params![status.as_str(), id.as_bytes()],
                )
                .map_err(ce)?;
            if n == 0 && current(tx, id)?.is_none() {
                return Err(CommitError::UnknownCredential);
            }
            Ok(())
        })
    }

    fn set_credential_status(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
    ) -> Result<(), CommitError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE credentials SET status = ?1
                     WHERE credential_id = ?2 AND status <> 'deregistered'",
                    params![status.as_str(), id.as_bytes()],
                )
                .map_err(ce)?;
            if n == 0 {
                // Deregistration is final.
                return Err(match current(tx, id)? {
                    None => CommitError::UnknownCredential,
                    Some(_) => CommitError::CredentialNotActive(CredentialStatus::Deregistered),
                });
            }
            Ok(())
        })
    }

    fn purge_expired_challenges(&self, now: u64) -> Result<usize, StoreError> {
        self.lock()
            .execute(
                "DELETE FROM challenges WHERE expires_at < ?1",
                params![i64_of(now)?],
            )
            .map_err(be)
    }
}

impl ServerStore for SqliteStore {
    fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.write(|tx| append(tx, record).map_err(CommitError::Backend))
            .map_err(|e| match e {
                CommitError::Backend(e) => e,
                other => StoreError(other.to_string()),
            })
    }

    fn audit_entries(&self, after: u64, limit: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT seq, at, kind, outcome, step, credential, statement_hash, reason, prev_hash,
                    hash FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(be)?;
        let rows = stmt
            .query_map(params![i64_of(after)?, i64_of(limit)?], |r| {
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
            })
            .map_err(be)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(be)?;
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
            .lock()
            .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(be)?;
        Ok((u64_of(seq)?, hash))
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT seq, hash, at, public_key, signature FROM audit_checkpoints ORDER BY seq",
            )
            .map_err(be)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(be)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(be)?;
        rows.into_iter()
            .map(|(seq, hash, at, public_key, signature)| {
                Ok(Checkpoint {
                    seq: u64_of(seq)?,
                    hash,
                    at: u64_of(at)?,
                    public_key,
                    signature,
                })
            })
            .collect()
    }

    fn insert_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT OR IGNORE INTO audit_checkpoints (seq, hash, at, public_key, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    i64_of(c.seq)?,
                    c.hash,
                    i64_of(c.at)?,
                    c.public_key,
                    c.signature
                ],
            )
            .map_err(be)?;
        Ok(())
    }

    fn set_model_status(&self, model: &str, status: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO model_status (model, status) VALUES (?1, ?2)
                 ON CONFLICT (model) DO UPDATE SET status = excluded.status",
                params![model, status],
            )
            .map_err(be)?;
        Ok(())
    }

    fn model_statuses(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT model, status FROM model_status ORDER BY model")
            .map_err(be)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(be)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(be);
        rows
    }
}
