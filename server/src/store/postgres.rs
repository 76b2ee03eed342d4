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
//!
//! This file holds only the PostgreSQL side: connections, the [`Db`] of a
//! connection (placeholders `?N` rewritten to `$N`), migration locking and
//! the payment's writes fused into one round trip ([`Db::pay`]). The
//! operations are in [`super::ops`], written once for both dialects.

use super::{
    committer::{Committer, Head, WriteConn},
    i64_of,
    ops::SqlStore,
    sql::{self, pick, Backend, Db, Dialect, Paid, Param, Payment, Row, Sql, Value},
};
use biopay_core::store::{CommitError, CredentialRecord, CredentialStatus, StoreError};
use postgres::{
    types::{ToSql, Type},
    NoTls, Statement,
};
use std::{
    collections::HashMap,
    sync::{atomic::AtomicUsize, Mutex, MutexGuard},
};

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

    /// `sql` prepared, its `?N` placeholders as PostgreSQL's `$N`.
    fn prepared(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&sql.replace('?', "$")).map_err(be)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

fn to_sql<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| -> &'a (dyn ToSql + Sync) {
            match p {
                Param::Int(v) => v,
                Param::Text(s) => s,
                Param::Blob(b) => b,
            }
        })
        .collect()
}

fn row(r: &postgres::Row) -> Result<Row, StoreError> {
    let get = |i: usize| -> Result<Value, postgres::Error> {
        let ty = r.columns().get(i).map(|c| c.type_().clone());
        let is = |t: Type| ty.as_ref() == Some(&t);
        let v = if is(Type::INT8) {
            r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if is(Type::INT4) {
            r.try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(i64::from(v)))
        } else if is(Type::INT2) {
            r.try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(i64::from(v)))
        } else if is(Type::BOOL) {
            r.try_get::<_, Option<bool>>(i)?.map(Value::Bool)
        } else if is(Type::BYTEA) {
            r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
        } else {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        };
        Ok(v.unwrap_or(Value::Null))
    };
    (0..r.len())
        .map(|i| get(i).map_err(be))
        .collect::<Result<Vec<_>, _>>()
        .map(Row)
}

/// The payment commit's one round trip (docs/PROTOCOL.md §7.3), its first
/// step `consumed` given: `UPDATE challenges ...` for a stored challenge, or
/// the spent-entry insert of a self-authenticating one (§7.1 rule 5).
macro_rules! payment_sql {
    ($consume:literal) => {
        concat!(
            "WITH consumed AS (",
            $consume,
            "), moved AS (
                        UPDATE credentials SET counter = ?2
                        WHERE credential_id = ?3 AND counter < ?2 AND status = 'active'
                          AND NOT EXISTS (SELECT 1 FROM model_status m
                                          WHERE m.model = credentials.device_model
                                            AND m.status <> 'active')
                          AND EXISTS (SELECT 1 FROM consumed)
                        RETURNING account_handle
                    ), cleared AS (
                        DELETE FROM failures
                        WHERE EXISTS (SELECT 1 FROM moved)
                          AND ((kind = 'credential' AND subject = ?3)
                            OR (kind = 'account' AND subject = (SELECT account_handle FROM moved)))
                    ), audited AS (
                        INSERT INTO audit_log (seq, at, kind, outcome, step, credential,
                            statement_hash, reason, prev_hash, hash)
                        SELECT ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13
                        WHERE EXISTS (SELECT 1 FROM moved)
                        RETURNING 1
                    )
                    SELECT (SELECT COUNT(*) FROM consumed), (SELECT COUNT(*) FROM audited)"
        )
    };
}

impl Db for Conn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn execute(&mut self, sql: Sql, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let s = self.prepared(sql.text(Dialect::Postgres))?;
        self.client.execute(&s, &to_sql(params)).map_err(be)
    }
    fn query(&mut self, sql: Sql, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let s = self.prepared(sql.text(Dialect::Postgres))?;
        self.client
            .query(&s, &to_sql(params))
            .map_err(be)?
            .iter()
            .map(row)
            .collect()
    }
    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).map_err(be)
    }

    fn pay(&mut self, head: &mut Head, p: &Payment<'_>) -> Result<Paid, CommitError> {
        let audit = p.audit;
        // One round trip: consume the challenge, move the counter (only if
        // the challenge was consumed, the credential is active, its device
        // model not revoked as persisted by any process, and the stored
        // counter below the new one), clear the credential's failure
        // count and append the audit entry (only if the counter moved).
        // The conditional updates lock their rows and are re-evaluated
        // after a concurrent commit, as separate statements would be.
        // A self-authenticating challenge's first step is its spent entry's
        // insert instead (docs/PROTOCOL.md §7.1 rule 5), `?14` its expiry.
        let e = head.next(audit)?;
        let sql = match p.spend {
            None => Sql::same(payment_sql!(
                "UPDATE challenges SET consumed = true
                        WHERE challenge = ?1 AND NOT consumed RETURNING 1"
            )),
            Some(_) => Sql::same(payment_sql!(
                "INSERT INTO spent_challenges (challenge, expires_at) VALUES (?1, ?14)
                        ON CONFLICT (challenge) DO NOTHING RETURNING 1"
            )),
        };
        let at = i64_of(audit.at)?;
        let mut params = vec![
            Param::Blob(p.challenge),
            Param::Int(p.new),
            Param::Blob(p.id),
            Param::Int(e.seq),
            Param::Int(at),
            Param::Text(&audit.kind),
            Param::Text(&audit.outcome),
            Param::Text(&audit.step),
            Param::Text(&audit.credential),
            Param::Text(&audit.statement_hash),
            Param::Text(&audit.reason),
            Param::Text(&e.prev_hash),
            Param::Text(&e.hash),
        ];
        if let Some(expires_at) = p.spend {
            params.push(Param::Int(expires_at));
        }
        let r = self
            .query_opt(sql, &params)?
            .ok_or_else(|| StoreError("postgres: no result row".into()))?;
        Ok(Paid {
            consumed: r.int(0)? == 1,
            moved: r.int(1)? == 1,
        })
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
                Sql::same("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"),
                &[],
            )?
            .ok_or_else(|| StoreError("no audit head".into()))?;
        Ok((r.int(0)?, r.text(1)?))
    }
    fn store_head(&mut self, seq: i64, hash: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            Sql::same("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1"),
            &[Param::Int(seq), Param::Text(hash)],
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

impl Db for Writer {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn execute(&mut self, sql: Sql, params: &[Param<'_>]) -> Result<u64, StoreError> {
        self.conn()?.execute(sql, params)
    }
    fn query(&mut self, sql: Sql, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        self.conn()?.query(sql, params)
    }
    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.conn()?.batch(sql)
    }
    fn pay(&mut self, head: &mut Head, p: &Payment<'_>) -> Result<Paid, CommitError> {
        self.conn()?.pay(head, p)
    }
}

/// The PostgreSQL side of [`PgStore`]: a group committer and a pool of read
/// connections.
pub struct Postgres {
    config: Box<postgres::Config>,
    committer: Committer<Writer>,
    readers: Vec<Mutex<Option<Conn>>>,
    next_reader: AtomicUsize,
}

/// The PostgreSQL store.
pub type PgStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects to `url` (`postgres://user@host:port/db`) with at most
    /// `max_connections` (one writer, the rest readers opened on demand), and
    /// applies pending migrations.
    pub fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let config: postgres::Config = url.parse().map_err(be)?;
        let mut first = Conn::connect(&config)?;
        migrate(&mut first)?;
        let readers = usize::try_from(max_connections.max(2) - 1).unwrap_or(1);
        Ok(SqlStore {
            backend: Postgres {
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
            },
        })
    }
}

impl SqlStore<Postgres> {
    /// See [`super::AnyStore::danger_insert_filler_credentials`]: one
    /// statement over an array of ids (`UNNEST`).
    pub fn danger_insert_filler_credentials(
        &self,
        template: &CredentialRecord,
        first: u64,
        count: u64,
    ) -> Result<(), StoreError> {
        let t = template.clone();
        let end = first
            .checked_add(count)
            .ok_or_else(|| StoreError("filler range overflows".into()))?;
        let ids: Vec<Vec<u8>> = (first..end)
            .map(|i| super::filler_id(&t.credential_id, i))
            .collect();
        let (modalities, level) = (
            super::modalities_str(&t.modalities),
            super::i64_of(t.security_level.to_u64())?,
        );
        let registered_at = super::i64_of(t.registered_at)?;
        self.backend
            .write(false, move |w, _| {
                w.conn()?
                    .client
                    .execute(
                        "INSERT INTO credentials (credential_id, rp_id, account_handle, public_key,
                            modalities, enrollment_epoch, security_level, kind, device_model,
                            counter, status, registered_at)
                         SELECT id, $2, id, $3, $4, $5, $6, $7, $8, 0, $9, $10
                         FROM UNNEST($1::bytea[]) AS t(id)",
                        &[
                            &ids,
                            &t.rp_id,
                            &t.public_key,
                            &modalities,
                            &t.enrollment_epoch.to_vec(),
                            &level,
                            &t.kind.as_str(),
                            &t.device_model,
                            &CredentialStatus::Active.as_str(),
                            &registered_at,
                        ],
                    )
                    .map_err(be)?;
                Ok(())
            })
            .map_err(|e| StoreError(e.to_string()))
    }
}

impl Postgres {
    /// A read connection (connected on first use, reconnected when broken).
    fn reader(&self) -> Result<MutexGuard<'_, Option<Conn>>, StoreError> {
        let mut g = pick(&self.readers, &self.next_reader)?;
        if g.as_ref().is_none_or(|c| c.client.is_closed()) {
            *g = None;
            *g = Some(Conn::connect(&self.config)?);
        }
        Ok(g)
    }
}

impl Backend for Postgres {
    type Reader = Conn;
    type Writer = Writer;

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
        f: impl FnMut(&mut Writer, &mut Head) -> Result<T, CommitError> + Send + 'static,
    ) -> Result<T, CommitError> {
        self.committer.call(true, f)
    }

    fn commit_stats(&self) -> (u64, u64, u64) {
        self.committer.stats()
    }
}

/// Migrations in one transaction under an advisory lock: processes starting
/// together apply them once.
fn migrate(c: &mut Conn) -> Result<(), StoreError> {
    c.batch("BEGIN")?;
    let done = c
        .execute(
            Sql::same("SELECT pg_advisory_xact_lock(?1)"),
            &[Param::Int(MIGRATION_LOCK)],
        )
        .and_then(|_| sql::migrate(c));
    match done {
        Ok(()) => c.batch("COMMIT"),
        Err(e) => {
            // Undo what was applied; the error that stopped it is the answer.
            let _ = c.batch("ROLLBACK");
            Err(e)
        }
    }
}
