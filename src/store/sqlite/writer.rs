//! The single writer: every write transaction of the service runs on one connection owned by one
//! thread, which commits together whatever queued up while it was busy (group commit).
//!
//! SQLite has one write lock per database. Writers that compete for it through a pool do not
//! queue: a loser sleeps in SQLite's busy handler (1, 2, 5, 10 … ms) and tries again, so under
//! load most of a write's latency is sleeping, and each write pays its own fsync. Here writes
//! queue in memory instead. The thread takes the operations from the queue one after the other,
//! each in its own savepoint inside one `BEGIN IMMEDIATE` transaction, until the queue is empty
//! (operations queued while the batch runs join it), and commits them with one fsync. While that
//! fsync runs, the next operations queue up, so batches grow with the load by themselves; nothing
//! waits for a timer.
//!
//! The writer is a plain thread with a synchronous connection (rusqlite), not an async task:
//! a statement is then a function call, where an async driver hands every statement to the
//! connection's thread and back (two context switches each, which cost more than the statements).
//! Operations are short closures that only run SQL; the caller awaits the answer.
//!
//! Durability is unchanged: an operation's caller gets its result only after the `COMMIT` of its
//! batch returned (with `synchronous=FULL`, after the fsync). If the commit fails, every
//! operation of the batch gets the error, and none of their changes is in the database.
//!
//! An operation that fails, or asks for its changes to be discarded, is rolled back to its
//! savepoint and does not affect the others, unless SQLite rolled the whole transaction back
//! itself (a full disk, say): then the whole batch fails.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{Result, StoreError};

/// The most operations committed together.
const MAX_BATCH: usize = 512;

/// What an operation did with its changes.
pub(super) enum Write<T> {
    /// Commit them (with the rest of the batch).
    Keep(T),
    /// Roll them back; the caller still gets `T`. (The store's own writes undo a part with a
    /// nested savepoint instead; this stays for a write that undoes itself whole.)
    #[cfg_attr(not(test), allow(dead_code))]
    Discard(T),
}

/// How a batch ended, for the operations that ran in it.
type Committed = std::result::Result<(), Arc<rusqlite::Error>>;

/// A queued operation: runs on the writer's connection, and says whether to keep its changes
/// and how to answer its caller once the batch is committed (or failed).
type Op = Box<dyn FnOnce(Option<&Connection>) -> Ran + Send>;

struct Ran {
    keep: bool,
    answer: Box<dyn FnOnce(Committed) + Send>,
}

enum Msg {
    Op(Op),
    /// Commit what is queued, close the connection, then answer.
    Close(oneshot::Sender<()>),
    /// Commit what is queued, then checkpoint the WAL and truncate it (see [`Writer::truncate_wal`]).
    Truncate(oneshot::Sender<rusqlite::Result<bool>>),
}

/// How long a WAL truncation waits for readers still using the WAL before it gives up: short,
/// because every write waits behind it.
const TRUNCATE_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub(super) struct Writer {
    sender: mpsc::Sender<Msg>,
    /// Transactions committed so far.
    #[cfg_attr(not(test), allow(dead_code))]
    commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer thread on `conn`, which must be in autocommit mode.
    pub(super) fn start(conn: Connection) -> std::io::Result<Self> {
        let (sender, rx) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || run(conn, rx, counter))?;
        Ok(Writer { sender, commits })
    }

    /// Runs `op` in the next batch and returns its result once the batch is committed.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<Write<T>> + Send + 'static,
    {
        self.queue(op)?.await
    }

    /// Queues `op` for the next batch; the future answers once the batch is committed. Anything
    /// queued after this call runs after `op`, in the same transaction or a later one.
    pub(super) fn queue<T, F>(
        &self,
        op: F,
    ) -> Result<impl std::future::Future<Output = Result<T>> + use<T, F>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<Write<T>> + Send + 'static,
    {
        let (done, answer) = oneshot::channel::<Result<T>>();
        let op: Op = Box::new(move |conn| {
            let Some(conn) = conn else {
                // Not run: the transaction could not start.
                return Ran {
                    keep: false,
                    answer: Box::new(move |committed| {
                        let _ = done.send(Err(committed
                            .err()
                            .map_or(StoreError::Closed, StoreError::unavailable)));
                    }),
                };
            };
            let (keep, value) = match op(conn) {
                Ok(Write::Keep(v)) => (true, Ok(v)),
                Ok(Write::Discard(v)) => (false, Ok(v)),
                Err(e) => (false, Err(e)),
            };
            Ran {
                keep,
                answer: Box::new(move |committed| {
                    let result = match (committed, value) {
                        (_, Err(e)) => Err(e),
                        (Ok(()), Ok(v)) => Ok(v),
                        (Err(e), Ok(_)) => Err(StoreError::unavailable(e)),
                    };
                    // The caller may have gone away (a dropped request); the write stands.
                    let _ = done.send(result);
                }),
            }
        });
        self.sender
            .send(Msg::Op(op))
            .map_err(|_| StoreError::Closed)?;
        Ok(async move { answer.await.map_err(|_| StoreError::Closed)? })
    }

    /// Transactions committed so far (one per batch).
    #[cfg(test)]
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// After what is queued is committed, copies the whole WAL into the database and truncates
    /// it to zero bytes (`PRAGMA wal_checkpoint(TRUNCATE)`), so that no old page image (an erased
    /// password, say) stays in the WAL file. Returns `false` when readers still used the WAL
    /// after [`TRUNCATE_WAIT`]: nothing is lost, the caller tries again later.
    pub(super) async fn truncate_wal(&self) -> Result<bool> {
        let (ack, done) = oneshot::channel();
        self.sender
            .send(Msg::Truncate(ack))
            .map_err(|_| StoreError::Closed)?;
        Ok(done.await.map_err(|_| StoreError::Closed)??)
    }

    /// Commits what is queued and closes the connection (checkpointing the WAL).
    pub(super) async fn close(&self) {
        let (ack, closed) = oneshot::channel();
        if self.sender.send(Msg::Close(ack)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Msg>, commits: Arc<AtomicU64>) {
    while let Ok(msg) = rx.recv() {
        // A message that ended the batch, handled once the batch is committed.
        let mut after = None;
        match msg {
            Msg::Op(first) => {
                let mut taken = 1;
                let mut more = || {
                    if after.is_some() || taken >= MAX_BATCH {
                        return None;
                    }
                    match rx.try_recv() {
                        Ok(Msg::Op(op)) => {
                            taken += 1;
                            Some(op)
                        }
                        Ok(msg) => {
                            after = Some(msg);
                            None
                        }
                        Err(_) => None,
                    }
                };
                if commit(&conn, first, &mut more, &commits) {
                    crate::telemetry::write_batch(taken);
                }
            }
            msg => after = Some(msg),
        }
        let close = match after {
            Some(Msg::Close(ack)) => Some(ack),
            Some(Msg::Truncate(ack)) => {
                let _ = ack.send(truncate(&conn));
                None
            }
            Some(Msg::Op(_)) | None => None,
        };
        if let Some(ack) = close {
            // Operations queued after the close request get `Closed` when dropped.
            drop(rx);
            if let Err((_, e)) = conn.close() {
                tracing::warn!(error = %e, "closing the database connection failed");
            }
            let _ = ack.send(());
            return;
        }
    }
}

/// `PRAGMA wal_checkpoint(TRUNCATE)` outside any transaction, waiting at most [`TRUNCATE_WAIT`]
/// for readers. Returns whether the WAL was checkpointed whole and truncated.
fn truncate(conn: &Connection) -> rusqlite::Result<bool> {
    conn.busy_timeout(TRUNCATE_WAIT)?;
    let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    });
    conn.busy_timeout(super::BUSY_TIMEOUT)?;
    match result {
        // The first column is 1 when readers kept the checkpoint from completing.
        Ok(busy) => Ok(busy == 0),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Runs `first`, then whatever `more` yields (operations queued meanwhile join the batch until
/// the queue is empty), each in its own savepoint, and commits them in one transaction.
/// Returns `true` when the batch was committed; it is counted in `commits` before any answer
/// goes out.
fn commit(
    conn: &Connection,
    first: Op,
    more: &mut dyn FnMut() -> Option<Op>,
    commits: &AtomicU64,
) -> bool {
    if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
        (first(None).answer)(Err(Arc::new(e)));
        return false;
    }
    let mut answers = Vec::new();
    let mut broken = None;
    let mut next = Some(first);
    while let Some(op) = next.take() {
        if let Err(e) = control(conn, "SAVEPOINT op") {
            let e = Arc::new(e);
            (op(None).answer)(Err(e.clone()));
            broken = Some(e);
            break;
        }
        // A panicking operation (a bug) must not take the writer down with it: its changes are
        // rolled back, and its caller, whose answer went with the panic, gets `Closed`.
        let keep = match std::panic::catch_unwind(AssertUnwindSafe(|| op(Some(conn)))) {
            Ok(ran) => {
                answers.push(ran.answer);
                ran.keep
            }
            Err(_) => {
                tracing::error!("a database write panicked; its changes are rolled back");
                false
            }
        };
        let end = if keep {
            control(conn, "RELEASE op")
        } else {
            control(conn, "ROLLBACK TO op").and_then(|()| control(conn, "RELEASE op"))
        };
        if let Err(e) = end {
            // SQLite ended the transaction itself: nothing of this batch is kept.
            broken = Some(Arc::new(e));
            break;
        }
        next = more();
    }
    let outcome = match broken {
        Some(e) => Err(e),
        None => control(conn, "COMMIT").map_err(Arc::new),
    };
    if outcome.is_err() && !conn.is_autocommit() {
        // Leave the connection in autocommit mode whatever state the failure left it in.
        let _ = conn.execute_batch("ROLLBACK");
    }
    let committed = outcome.is_ok();
    if committed {
        commits.fetch_add(1, Ordering::Relaxed);
    }
    answers
        .into_iter()
        .for_each(|answer| answer(outcome.clone()));
    committed
}

/// Runs a transaction-control statement (or a savepoint's) from the statement cache:
/// `execute_batch` would parse it again each time, four times per write.
pub(super) fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

#[cfg(test)]
mod tests;
