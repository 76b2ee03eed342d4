//! Group commit: one thread owns a backend's write connection and commits
//! the write operations that callers submit concurrently in batches, one
//! transaction (and so one durable flush) per batch.
//!
//! Each operation runs inside its own savepoint: an operation whose
//! conditional update fails (a replayed challenge, a moved counter) is rolled
//! back to its savepoint and answered with its own error, without touching the
//! others. Every caller gets its answer only after the whole batch committed:
//! an operation reported done is durable (the backend's commit is; SQLite
//! `synchronous=FULL`, PostgreSQL `synchronous_commit=on`). If the commit
//! fails, every operation of the batch is answered with the failure and
//! nothing of it was applied.
//!
//! A batch takes whatever is queued when the previous batch finished (at
//! most [`MAX_BATCH`]): there is no artificial delay, so a lone request is
//! committed at once and concurrent requests share the flush.
//!
//! Savepoints cost a round trip and a subtransaction per operation on
//! PostgreSQL (about a fifth of its throughput under load), and they are
//! only needed to undo an operation that fails. So a batch first runs
//! without them; if every operation succeeds it commits as is. If any
//! operation fails, the whole transaction is rolled back and the batch runs
//! again with one savepoint per operation, which gives each operation its
//! own outcome. Operations are therefore re-runnable (`FnMut`): they touch
//! nothing but the connection, the batch's [`Head`] and their result slot.
//!
//! The audit chain head is read once per batch that may append (under the
//! backend's write lock: SQLite's `BEGIN IMMEDIATE`, PostgreSQL's `SELECT ...
//! FOR UPDATE` taken first, before any other row lock; the PostgreSQL store
//! takes it for every batch, so batches of several processes cannot
//! deadlock), advanced in memory by each appended entry and written back once.

use crate::audit::{entry_hash, parse_hash, AuditRecord};
use biopay_core::store::{CommitError, StoreError};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, Sender, SyncSender},
        Arc, Mutex, PoisonError,
    },
    thread::JoinHandle,
};

/// Largest number of operations in one transaction.
pub const MAX_BATCH: usize = 256;

/// The audit chain head as seen inside a batch.
#[derive(Debug, Clone, Default)]
pub struct Head {
    state: Option<(i64, [u8; 32])>,
    dirty: bool,
}

/// One audit entry ready to insert.
pub struct NewEntry {
    /// Its sequence number.
    pub seq: i64,
    /// The previous entry's hash (hex).
    pub prev_hash: String,
    /// Its hash (hex).
    pub hash: String,
}

impl Head {
    fn loaded(seq: i64, hash: &str) -> Result<Self, StoreError> {
        let hash = parse_hash(hash).ok_or_else(|| StoreError("corrupt audit head".into()))?;
        Ok(Self {
            state: Some((seq, hash)),
            dirty: false,
        })
    }

    /// Chains `record` after the head and advances it.
    pub fn next(&mut self, record: &AuditRecord) -> Result<NewEntry, StoreError> {
        let (seq, prev) = self
            .state
            .ok_or_else(|| StoreError("audit head not locked in this batch".into()))?;
        let hash = entry_hash(&prev, record);
        let seq = seq + 1;
        self.state = Some((seq, hash));
        self.dirty = true;
        Ok(NewEntry {
            seq,
            prev_hash: hex::encode(prev),
            hash: hex::encode(hash),
        })
    }

    /// The head after the batch: (seq, hash hex), when it moved.
    fn moved(&self) -> Option<(i64, String)> {
        match (self.dirty, self.state) {
            (true, Some((seq, hash))) => Some((seq, hex::encode(hash))),
            _ => None,
        }
    }
}

/// A backend's write connection, as the committer drives it.
pub trait WriteConn: Send + 'static {
    /// Runs statements without results (`BEGIN`, `SAVEPOINT`, `COMMIT`, ...).
    fn exec(&mut self, sql: &'static str) -> Result<(), StoreError>;
    /// Opens the batch's transaction (taking the database write lock where the
    /// backend has one).
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Opens the transaction and the first operation's savepoint `op`, after
    /// the head is locked when `appends`. Backends with round trips may
    /// override [`Self::begin_with_savepoint`] to save one when not `appends`.
    fn begin_with_savepoint(&mut self) -> Result<(), StoreError> {
        self.begin()?;
        self.exec("SAVEPOINT op")
    }
    /// Reads (and locks, where the backend locks rows) the audit head: (seq, hash hex).
    fn lock_head(&mut self) -> Result<(i64, String), StoreError>;
    /// Writes the audit head.
    fn store_head(&mut self, seq: i64, hash: &str) -> Result<(), StoreError>;
    /// Makes the connection usable before a batch (reconnects a broken one).
    fn ready(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// An operation: runs inside the batch's transaction (within its savepoint
/// when the batch runs with savepoints). May run twice: once in a batch that
/// is rolled back because another operation failed, then again.
pub type Work<C> = Box<dyn FnMut(&mut C, &mut Head) -> Result<(), CommitError> + Send>;

struct Job<C> {
    appends: bool,
    work: Work<C>,
    reply: SyncSender<Result<(), CommitError>>,
}

/// What the committer has done so far.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Transactions committed (or attempted).
    pub batches: AtomicU64,
    /// Operations in them.
    pub operations: AtomicU64,
    /// Batches rolled back and run again with savepoints because an
    /// operation failed.
    pub reruns: AtomicU64,
}

/// The committer: a thread that owns the write connection.
pub struct Committer<C: WriteConn> {
    tx: Option<Sender<Job<C>>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<CommitStats>,
}

fn stopped() -> CommitError {
    CommitError::Backend(StoreError("the store's committer has stopped".into()))
}

impl<C: WriteConn> Committer<C> {
    /// Starts the committer thread on `conn`.
    pub fn start(conn: C, name: &str) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(CommitStats::default());
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(conn, &rx, &st))
            .map_err(|e| StoreError(format!("start committer: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// (transactions, operations, reruns with savepoints) so far.
    pub fn stats(&self) -> (u64, u64, u64) {
        (
            self.stats.batches.load(Ordering::Relaxed),
            self.stats.operations.load(Ordering::Relaxed),
            self.stats.reruns.load(Ordering::Relaxed),
        )
    }

    /// Runs `f` in the next batch and returns its result once the batch is
    /// durably committed. `appends`: whether `f` appends to the audit chain
    /// (the batch then locks the chain head first).
    pub fn call<T: Send + 'static>(
        &self,
        appends: bool,
        mut f: impl FnMut(&mut C, &mut Head) -> Result<T, CommitError> + Send + 'static,
    ) -> Result<T, CommitError> {
        // The latest run's value; read only once the batch committed.
        let slot = Arc::new(Mutex::new(None));
        let out = slot.clone();
        let work: Work<C> = Box::new(move |c, h| {
            let v = f(c, h)?;
            *out.lock().unwrap_or_else(PoisonError::into_inner) = Some(v);
            Ok(())
        });
        let (reply, done) = mpsc::sync_channel(1);
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(Job {
                appends,
                work,
                reply,
            })
            .map_err(|_| stopped())?;
        done.recv().map_err(|_| stopped())??;
        let value = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        value.ok_or_else(stopped)
    }
}

impl<C: WriteConn> Drop for Committer<C> {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run<C: WriteConn>(mut conn: C, rx: &Receiver<Job<C>>, stats: &CommitStats) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let n = jobs.len();
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .operations
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        let appends = jobs.iter().any(|j| j.appends);
        let mut replies = Vec::with_capacity(n);
        let mut works = Vec::with_capacity(n);
        for j in jobs {
            replies.push(j.reply);
            works.push(j.work);
        }
        let results = match batch(&mut conn, &mut works, appends, stats) {
            Ok(r) => r,
            Err(e) => {
                let _ = conn.exec("ROLLBACK");
                vec![Err(CommitError::Backend(e)); n]
            }
        };
        for (reply, r) in replies.into_iter().zip(results) {
            let _ = reply.send(r);
        }
    }
}

/// One transaction for `works`. `Err` when the transaction as a whole failed
/// (nothing of it is applied); otherwise each operation's own outcome.
fn batch<C: WriteConn>(
    conn: &mut C,
    works: &mut [Work<C>],
    appends: bool,
    stats: &CommitStats,
) -> Result<Vec<Result<(), CommitError>>, StoreError> {
    conn.ready()?;
    if let Some(done) = without_savepoints(conn, works, appends)? {
        return Ok(done);
    }
    stats.reruns.fetch_add(1, Ordering::Relaxed);
    with_savepoints(conn, works, appends)
}

/// Runs every operation in one plain transaction and commits: `Some` (all
/// succeeded) or, at the first failure, rolls back and answers `None`.
fn without_savepoints<C: WriteConn>(
    conn: &mut C,
    works: &mut [Work<C>],
    appends: bool,
) -> Result<Option<Vec<Result<(), CommitError>>>, StoreError> {
    conn.begin()?;
    let mut head = if appends {
        let (seq, hash) = conn.lock_head()?;
        Head::loaded(seq, &hash)?
    } else {
        Head::default()
    };
    for work in works.iter_mut() {
        if work(conn, &mut head).is_err() {
            conn.exec("ROLLBACK")?;
            return Ok(None);
        }
    }
    if let Some((seq, hash)) = head.moved() {
        conn.store_head(seq, &hash)?;
    }
    conn.exec("COMMIT")?;
    Ok(Some(works.iter().map(|_| Ok(())).collect()))
}

/// One transaction with a savepoint per operation: a failed operation is
/// rolled back alone and answered with its own error.
fn with_savepoints<C: WriteConn>(
    conn: &mut C,
    works: &mut [Work<C>],
    appends: bool,
) -> Result<Vec<Result<(), CommitError>>, StoreError> {
    let mut head = if appends {
        conn.begin()?;
        let (seq, hash) = conn.lock_head()?;
        conn.exec("SAVEPOINT op")?;
        Head::loaded(seq, &hash)?
    } else {
        conn.begin_with_savepoint()?;
        Head::default()
    };
    let mut out = Vec::with_capacity(works.len());
    let last = works.len().saturating_sub(1);
    for (i, work) in works.iter_mut().enumerate() {
        let mut h = head.clone();
        match work(conn, &mut h) {
            Ok(()) => {
                head = h;
                if i < last {
                    conn.exec("RELEASE op; SAVEPOINT op")?;
                }
                out.push(Ok(()));
            }
            Err(e) => {
                // Undo this operation only; the savepoint stays for the next one.
                conn.exec("ROLLBACK TO op")?;
                out.push(Err(e));
            }
        }
    }
    if let Some((seq, hash)) = head.moved() {
        conn.store_head(seq, &hash)?;
    }
    conn.exec("COMMIT")?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;

    /// A database of strings with transactions and one savepoint, logging
    /// every statement the committer sends.
    #[derive(Default)]
    struct FakeDb {
        committed: Vec<String>,
        tx: Option<Vec<String>>,
        savepoint: usize,
        log: Vec<&'static str>,
        head: (i64, String),
    }

    impl FakeDb {
        fn new() -> Self {
            Self {
                head: (0, "00".repeat(32)),
                ..Self::default()
            }
        }
        fn write(&mut self, s: &str) {
            self.tx.as_mut().expect("no transaction").push(s.to_owned());
        }
    }

    impl WriteConn for FakeDb {
        fn exec(&mut self, sql: &'static str) -> Result<(), StoreError> {
            self.log.push(sql);
            let tx = self.tx.as_mut().expect("no transaction");
            match sql {
                "COMMIT" => {
                    let tx = self.tx.take().unwrap_or_default();
                    self.committed.extend(tx);
                }
                "ROLLBACK" => self.tx = None,
                "SAVEPOINT op" | "RELEASE op; SAVEPOINT op" => self.savepoint = tx.len(),
                "ROLLBACK TO op" => tx.truncate(self.savepoint),
                other => panic!("unexpected {other}"),
            }
            Ok(())
        }
        fn begin(&mut self) -> Result<(), StoreError> {
            assert!(self.tx.is_none(), "nested transaction");
            self.log.push("BEGIN");
            self.tx = Some(Vec::new());
            Ok(())
        }
        fn lock_head(&mut self) -> Result<(i64, String), StoreError> {
            Ok(self.head.clone())
        }
        fn store_head(&mut self, seq: i64, hash: &str) -> Result<(), StoreError> {
            self.write(&format!("head {seq}"));
            self.head = (seq, hash.to_owned());
            Ok(())
        }
    }

    fn record(n: u32) -> AuditRecord {
        AuditRecord {
            at: u64::from(n),
            kind: "payment".into(),
            outcome: "accepted".into(),
            step: "P20".into(),
            credential: format!("{n:02x}"),
            statement_hash: String::new(),
            reason: String::new(),
        }
    }

    /// An operation that writes `name`, appends an audit entry, and fails
    /// after writing when `fails`; counts its runs.
    fn op(name: &'static str, fails: bool, runs: Arc<AtomicU64>) -> Work<FakeDb> {
        Box::new(move |db: &mut FakeDb, head: &mut Head| {
            runs.fetch_add(1, Ordering::Relaxed);
            db.write(name);
            head.next(&record(u32::from(name.as_bytes()[0])))?;
            if fails {
                Err(CommitError::ChallengeUsed)
            } else {
                Ok(())
            }
        })
    }

    #[test]
    fn a_batch_that_succeeds_commits_once_without_savepoints() {
        let mut db = FakeDb::new();
        let runs = Arc::new(AtomicU64::new(0));
        let mut works = vec![
            op("a", false, runs.clone()),
            op("b", false, runs.clone()),
            op("c", false, runs.clone()),
        ];
        let stats = CommitStats::default();
        let out = batch(&mut db, &mut works, true, &stats).unwrap();
        assert!(out.iter().all(Result::is_ok));
        assert_eq!(db.committed, ["a", "b", "c", "head 3"]);
        assert_eq!(db.log, ["BEGIN", "COMMIT"]);
        assert_eq!(runs.load(Ordering::Relaxed), 3);
        assert_eq!(stats.reruns.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_failed_operation_is_undone_alone_after_a_rerun_with_savepoints() {
        let mut db = FakeDb::new();
        let runs = Arc::new(AtomicU64::new(0));
        let mut works = vec![
            op("a", false, runs.clone()),
            op("b", true, runs.clone()),
            op("c", false, runs.clone()),
        ];
        let stats = CommitStats::default();
        let out = batch(&mut db, &mut works, true, &stats).unwrap();
        assert!(out[0].is_ok() && out[2].is_ok());
        assert!(matches!(out[1], Err(CommitError::ChallengeUsed)));
        // "b" wrote before failing: rolled back, and so is the first attempt.
        assert_eq!(db.committed, ["a", "c", "head 2"]);
        // The chain moved by the two operations that succeeded only.
        let expected = {
            let mut h = Head::loaded(0, &"00".repeat(32)).unwrap();
            h.next(&record(u32::from(b'a'))).unwrap();
            h.next(&record(u32::from(b'c'))).unwrap();
            h.moved().unwrap()
        };
        assert_eq!(db.head, expected);
        assert_eq!(
            db.log,
            [
                "BEGIN",
                "ROLLBACK",
                "BEGIN",
                "SAVEPOINT op",
                "RELEASE op; SAVEPOINT op",
                "ROLLBACK TO op",
                "COMMIT"
            ]
        );
        // First attempt stopped at "b"; the rerun ran all three.
        assert_eq!(runs.load(Ordering::Relaxed), 2 + 3);
        assert_eq!(stats.reruns.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_caller_gets_the_value_of_the_run_that_committed() {
        let committer = Committer::start(FakeDb::new(), "test-commit").unwrap();
        let v = committer
            .call(false, |db: &mut FakeDb, _: &mut Head| {
                db.write("x");
                Ok(7)
            })
            .unwrap();
        assert_eq!(v, 7);
        let e = committer
            .call(false, |_: &mut FakeDb, _: &mut Head| {
                Err::<u8, _>(CommitError::CounterConflict)
            })
            .unwrap_err();
        assert!(matches!(e, CommitError::CounterConflict));
        assert_eq!(committer.stats(), (2, 2, 1));
    }
}
