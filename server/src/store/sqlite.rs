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
//!
//! This file holds only the SQLite side: connections, the [`Db`] of a
//! rusqlite connection and migration locking. The operations are in
//! [`super::ops`], written once for both dialects.

use super::{
    committer::{Committer, Head, WriteConn},
    ops::SqlStore,
    sql::{self, pick, Backend, Db, Dialect, Param, Row, Sql, Value},
};
use biopay_core::store::{CommitError, CredentialRecord, CredentialStatus, StoreError};
use rusqlite::{
    params,
    types::{ToSqlOutput, ValueRef},
    Connection, OpenFlags,
};
use std::{
    path::Path,
    sync::{atomic::AtomicUsize, Mutex, MutexGuard},
    time::Duration,
};

fn be(e: rusqlite::Error) -> StoreError {
    StoreError(format!("sqlite: {e}"))
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

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Int(v) => ValueRef::Integer(v),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
            Param::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn value(v: ValueRef<'_>) -> rusqlite::Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(rusqlite::Error::Utf8Error)?
                .to_owned(),
        ),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        ValueRef::Real(_) => {
            return Err(rusqlite::Error::InvalidColumnType(
                0,
                "real".into(),
                rusqlite::types::Type::Real,
            ))
        }
    })
}

impl Db for Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn execute(&mut self, sql: Sql, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let n = self
            .prepare_cached(sql.text(Dialect::Sqlite))
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(params)))
            .map_err(be)?;
        u64::try_from(n).map_err(|_| StoreError("sqlite: row count out of range".into()))
    }
    fn query(&mut self, sql: Sql, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.prepare_cached(sql.text(Dialect::Sqlite)).map_err(be)?;
        let columns = stmt.column_count();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |r| {
                (0..columns)
                    .map(|i| value(r.get_ref(i)?))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map(Row)
            })
            .map_err(be)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(be);
        rows
    }
    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.execute_batch(sql).map_err(be)
    }
}

impl Db for Writer {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn execute(&mut self, sql: Sql, params: &[Param<'_>]) -> Result<u64, StoreError> {
        Db::execute(&mut self.conn, sql, params)
    }
    fn query(&mut self, sql: Sql, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        self.conn.query(sql, params)
    }
    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.conn.batch(sql)
    }
}

/// The SQLite side of [`SqliteStore`]: the committer and the read connections.
pub struct Sqlite {
    committer: Committer<Writer>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// The SQLite store.
pub type SqliteStore = SqlStore<Sqlite>;

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(be)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(be)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqlStore<Sqlite> {
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
        Ok(SqlStore {
            backend: Sqlite {
                committer: Committer::start(Writer { conn }, "biopay-sqlite-commit")?,
                readers,
                next_reader: AtomicUsize::new(0),
            },
        })
    }
}

impl SqlStore<Sqlite> {
    /// See [`super::AnyStore::danger_insert_filler_credentials`]: one
    /// prepared insert per row, ids sorted so that each chunk walks the
    /// primary-key B-tree in order.
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
        let mut ids: Vec<Vec<u8>> = (first..end)
            .map(|i| super::filler_id(&template.credential_id, i))
            .collect();
        ids.sort_unstable();
        let (modalities, level) = (
            super::modalities_str(&t.modalities),
            super::i64_of(t.security_level.to_u64())?,
        );
        let registered_at = super::i64_of(t.registered_at)?;
        self.backend
            .write(false, move |w, _| {
                let c = &w.conn;
                // This connection's page cache (this process's only: the
                // server has its own) large enough for a million rows'
                // B-trees, so that random keys do not re-read pages from the
                // OS (default 2 MiB).
                c.execute_batch("PRAGMA cache_size = -262144").map_err(be)?;
                let mut stmt = c
                    .prepare_cached(
                        "INSERT INTO credentials (credential_id, rp_id, account_handle, public_key,
                            modalities, enrollment_epoch, security_level, kind, device_model,
                            counter, status, registered_at)
                         VALUES (?1, ?2, ?1, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10)",
                    )
                    .map_err(be)?;
                for id in &ids {
                    stmt.execute(rusqlite::params![
                        id,
                        t.rp_id,
                        t.public_key,
                        modalities,
                        t.enrollment_epoch.to_vec(),
                        level,
                        t.kind.as_str(),
                        t.device_model,
                        CredentialStatus::Active.as_str(),
                        registered_at,
                    ])
                    .map_err(be)?;
                }
                Ok(())
            })
            .map_err(|e| StoreError(e.to_string()))
    }
}

impl Sqlite {
    /// A read connection: a free one if any, else waits for one in turn.
    fn reader(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        pick(&self.readers, &self.next_reader)
    }
}

impl Backend for Sqlite {
    type Reader = Connection;
    type Writer = Writer;

    fn read<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut g = self.reader()?;
        f(&mut g)
    }

    fn write<T: Send + 'static>(
        &self,
        appends: bool,
        f: impl FnMut(&mut Writer, &mut Head) -> Result<T, CommitError> + Send + 'static,
    ) -> Result<T, CommitError> {
        self.committer.call(appends, f)
    }

    fn commit_stats(&self) -> (u64, u64, u64) {
        self.committer.stats()
    }
}

/// Migrations under SQLite's write lock (`BEGIN IMMEDIATE`): one process at a time.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.batch("BEGIN IMMEDIATE")?;
    match sql::migrate(conn) {
        Ok(()) => conn.batch("COMMIT"),
        Err(e) => {
            // Undo what was applied; the error that stopped it is the answer.
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}
