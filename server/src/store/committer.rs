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
        Arc,
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

/// An operation: runs inside the batch's transaction, within its savepoint.
pub type Work<C> = Box<dyn FnOnce(&mut C, &mut Head) -> Result<(), CommitError> + Send>;

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

    /// (transactions, operations) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.stats.batches.load(Ordering::Relaxed),
            self.stats.operations.load(Ordering::Relaxed),
        )
    }

    /// Runs `f` in the next batch and returns its result once the batch is
    /// durably committed. `appends`: whether `f` appends to the audit chain
    /// (the batch then locks the chain head first).
    pub fn call<T: Send + 'static>(
        &self,
        appends: bool,
        f: impl FnOnce(&mut C, &mut Head) -> Result<T, CommitError> + Send + 'static,
    ) -> Result<T, CommitError> {
        let (out_tx, out_rx) = mpsc::sync_channel(1);
        let work: Work<C> = Box::new(move |c, h| {
            let v = f(c, h)?;
            // The receiver waits below; a failed send only means it is gone.
            let _ = out_tx.send(v);
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
        out_rx.recv().map_err(|_| stopped())
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
        let results = match batch(&mut conn, works, appends) {
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
    works: Vec<Work<C>>,
    appends: bool,
) -> Result<Vec<Result<(), CommitError>>, StoreError> {
    conn.ready()?;
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
    for (i, work) in works.into_iter().enumerate() {
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
