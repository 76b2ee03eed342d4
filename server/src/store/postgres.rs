//! [`biopay_core::Store`] on PostgreSQL, for several server processes on one
//! database. Each commit is one transaction at READ COMMITTED whose
//! conditional updates (`WHERE NOT consumed`, `WHERE counter = $expected AND
//! status = 'active'`) take row locks and are re-evaluated after a concurrent
//! writer commits, so exactly one of any set of racing commits on the same
//! challenge or counter succeeds. The audit chain head row is locked
//! (`SELECT ... FOR UPDATE`) last, so appends are serialized without lock cycles.

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
use postgres::{NoTls, Row};
use r2d2_postgres::PostgresConnectionManager;
use std::time::Duration;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Client = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// Versioned schema migrations, applied in order at startup under an advisory lock.
const MIGRATIONS: &[(i64, &str)] = &[(
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
)];

/// Advisory lock key serializing migrations between processes starting together.
const MIGRATION_LOCK: i64 = 0x6269_6f70_6179;

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("postgres: {e}"))
}

fn ce(e: impl std::fmt::Display) -> CommitError {
    CommitError::Backend(be(e))
}

/// The PostgreSQL store: a connection pool.
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) with a pool of at
    /// most `max_connections`, and applies pending migrations.
    pub fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let config: postgres::Config = url.parse().map_err(be)?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(max_connections.max(1))
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .map_err(be)?;
        let store = Self { pool };
        store.migrate()?;
        Ok(store)
    }

    fn client(&self) -> Result<Client, StoreError> {
        self.pool.get().map_err(be)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.client()?;
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

    fn write<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, CommitError>,
    ) -> Result<T, CommitError> {
        let mut c = self.client()?;
        let mut tx = c.transaction().map_err(ce)?;
        let out = f(&mut tx)?; // dropping `tx` on error rolls back
        tx.commit().map_err(ce)?;
        Ok(out)
    }
}

fn append(tx: &mut postgres::Transaction<'_>, record: &AuditRecord) -> Result<(), StoreError> {
    let row = tx
        .query_one(
            "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .map_err(be)?;
    let seq: i64 = row.try_get(0).map_err(be)?;
    let prev: String = row.try_get(1).map_err(be)?;
    let prev_hash = parse_hash(&prev).ok_or_else(|| StoreError("corrupt audit head".into()))?;
    let hash = hex::encode(entry_hash(&prev_hash, record));
    let seq = seq + 1;
    tx.execute(
        "INSERT INTO audit_log (seq, at, kind, outcome, step, credential, statement_hash, reason,
            prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &seq,
            &i64_of(record.at)?,
            &record.kind,
            &record.outcome,
            &record.step,
            &record.credential,
            &record.statement_hash,
            &record.reason,
            &prev,
            &hash,
        ],
    )
    .map_err(be)?;
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        &[&seq, &hash],
    )
    .map_err(be)?;
    Ok(())
}

fn consume(tx: &mut postgres::Transaction<'_>, challenge: &Challenge) -> Result<(), CommitError> {
    let n = tx
        .execute(
            "UPDATE challenges SET consumed = true WHERE challenge = $1 AND NOT consumed",
            &[&challenge_key(challenge)],
        )
        .map_err(ce)?;
    if n == 1 {
        Ok(())
    } else {
        Err(CommitError::ChallengeUsed)
    }
}

fn current(
    tx: &mut postgres::Transaction<'_>,
    id: &CredentialId,
) -> Result<Option<(i64, String)>, CommitError> {
    let row = tx
        .query_opt(
            "SELECT counter, status FROM credentials WHERE credential_id = $1",
            &[&id.as_bytes()],
        )
        .map_err(ce)?;
    row.map(|r| Ok((r.try_get(0).map_err(ce)?, r.try_get(1).map_err(ce)?)))
        .transpose()
}

const CREDENTIAL_COLUMNS: &str = "credential_id, rp_id, account_handle, public_key, modalities,
    enrollment_epoch, security_level, kind, device_model, counter, status, registered_at";

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

impl Store for PgStore {
    fn insert_challenge(&self, issued: IssuedChallenge) -> Result<(), StoreError> {
        let (kind, body, counter_at_issue, expires_at) = challenge_columns(&issued)?;
        self.client()?
            .execute(
                "INSERT INTO challenges (challenge, kind, body, counter_at_issue, expires_at, consumed)
                 VALUES ($1, $2, $3, $4, $5, false)",
                &[
                    &challenge_key(issued.challenge()),
                    &kind,
                    &body,
                    &counter_at_issue,
                    &expires_at,
                ],
            )
            .map_err(be)?;
        Ok(())
    }

    fn challenge(&self, challenge: &Challenge) -> Result<Option<ChallengeEntry>, StoreError> {
        let row = self
            .client()?
            .query_opt(
                "SELECT kind, body, counter_at_issue, consumed FROM challenges WHERE challenge = $1",
                &[&challenge_key(challenge)],
            )
            .map_err(be)?;
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
        let row = self
            .client()?
            .query_opt(
                &format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE credential_id = $1"),
                &[&id.as_bytes()],
            )
            .map_err(be)?;
        row.map(|r| credential_row(&r)?.into_record()).transpose()
    }

    fn credentials_for_account(
        &self,
        rp_id: &str,
        account_handle: &[u8],
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        self.client()?
            .query(
                &format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials
                     WHERE rp_id = $1 AND account_handle = $2 ORDER BY registered_at, credential_id"
                ),
                &[&rp_id, &account_handle],
            )
            .map_err(be)?
            .iter()
            .map(|r| credential_row(r)?.into_record())
            .collect()
    }

    fn commit_registration(
        &self,
        challenge: &Challenge,
        record: &CredentialRecord,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        self.write(|tx| {
            consume(tx, challenge)?;
            let n = tx
                .execute(
                    &format!(
                        "INSERT INTO credentials ({CREDENTIAL_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
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
                )
                .map_err(ce)?;
            if n != 1 {
                return Err(CommitError::CredentialExists);
            }
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
                    "UPDATE credentials SET counter = $1
                     WHERE credential_id = $2 AND counter = $3 AND status = 'active'",
                    &[&new, &id.as_bytes(), &expected],
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
                    "UPDATE credentials SET counter = $1, status = $2
                     WHERE credential_id = $3 AND counter = $4 AND status = $5",
                    &[
                        &new,
                        &status.as_str(),
                        &id.as_bytes(),
                        &expected,
                        &expected_status.as_str(),
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
                    "UPDATE credentials SET status = $1 WHERE credential_id = $2 AND status = 'active'",
                    &[&status.as_str(), &id.as_bytes()],
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
                    "UPDATE credentials SET status = $1
                     WHERE credential_id = $2 AND status <> 'deregistered'",
                    &[&status.as_str(), &id.as_bytes()],
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
        let n = self
            .client()?
            .execute(
                "DELETE FROM challenges WHERE expires_at < $1",
                &[&i64_of(now)?],
            )
            .map_err(be)?;
        usize::try_from(n).map_err(be)
    }
}

impl ServerStore for PgStore {
    fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.write(|tx| append(tx, record).map_err(CommitError::Backend))
            .map_err(|e| match e {
                CommitError::Backend(e) => e,
                other => StoreError(other.to_string()),
            })
    }

    fn audit_entries(&self, after: u64, limit: u64) -> Result<Vec<AuditEntry>, StoreError> {
        self.client()?
            .query(
                "SELECT seq, at, kind, outcome, step, credential, statement_hash, reason, prev_hash,
                    hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&i64_of(after)?, &i64_of(limit)?],
            )
            .map_err(be)?
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
            .client()?
            .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
            .map_err(be)?;
        Ok((
            u64_of(r.try_get(0).map_err(be)?)?,
            r.try_get(1).map_err(be)?,
        ))
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.client()?
            .query(
                "SELECT seq, hash, at, public_key, signature FROM audit_checkpoints ORDER BY seq",
                &[],
            )
            .map_err(be)?
            .iter()
            .map(|r| {
                Ok(Checkpoint {
                    seq: u64_of(r.try_get(0).map_err(be)?)?,
                    hash: r.try_get(1).map_err(be)?,
                    at: u64_of(r.try_get(2).map_err(be)?)?,
                    public_key: r.try_get(3).map_err(be)?,
                    signature: r.try_get(4).map_err(be)?,
                })
            })
            .collect()
    }

    fn insert_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        self.client()?
            .execute(
                "INSERT INTO audit_checkpoints (seq, hash, at, public_key, signature)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
                &[
                    &i64_of(c.seq)?,
                    &c.hash,
                    &i64_of(c.at)?,
                    &c.public_key,
                    &c.signature,
                ],
            )
            .map_err(be)?;
        Ok(())
    }

    fn set_model_status(&self, model: &str, status: &str) -> Result<(), StoreError> {
        self.client()?
            .execute(
                "INSERT INTO model_status (model, status) VALUES ($1, $2)
                 ON CONFLICT (model) DO UPDATE SET status = excluded.status",
                &[&model, &status],
            )
            .map_err(be)?;
        Ok(())
    }

    fn model_statuses(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.client()?
            .query("SELECT model, status FROM model_status ORDER BY model", &[])
            .map_err(be)?
            .iter()
            .map(|r| Ok((r.try_get(0).map_err(be)?, r.try_get(1).map_err(be)?)))
            .collect()
    }
}
