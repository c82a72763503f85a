//! The single writer: every write transaction of the service runs on one connection owned by one
//! task, which commits together whatever queued up while it was busy (group commit).
//!
//! SQLite has one write lock per database. Writers that compete for it through a pool do not
//! queue: a loser sleeps in SQLite's busy handler (1, 2, 5, 10 … ms) and tries again, so under
//! load most of a write's latency is sleeping, and each write pays its own fsync. Here writes
//! queue in memory instead. The task takes every operation waiting in the queue, runs each in
//! its own savepoint inside one `BEGIN IMMEDIATE` transaction, and commits them with one fsync.
//! While that fsync runs, the next operations queue up, so batches grow with the load by
//! themselves; nothing waits for a timer.
//!
//! Durability is unchanged: an operation's caller gets its result only after the `COMMIT` of its
//! batch returned (with `synchronous=FULL`, after the fsync). If the commit fails, every
//! operation of the batch gets the error, and none of their changes is in the database.
//!
//! An operation that fails, or asks for its changes to be discarded, is rolled back to its
//! savepoint and does not affect the others, unless SQLite rolled the whole transaction back
//! itself (a full disk, say): then the whole batch fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::{Result, StoreError};

/// The most operations committed together.
const MAX_BATCH: usize = 512;

pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an operation did with its changes.
pub(super) enum Write<T> {
    /// Commit them (with the rest of the batch).
    Keep(T),
    /// Roll them back; the caller still gets `T`.
    Discard(T),
}

/// A queued operation, type-erased.
trait Op: Send {
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Ran>;
    /// The operation will not run: its caller gets `error`.
    fn abort(self: Box<Self>, error: Arc<sqlx::Error>);
}

/// An operation that ran: whether to keep its changes, and how to answer its caller once the
/// batch is committed (`Ok`) or failed (`Err`).
struct Ran {
    keep: bool,
    answer: Box<dyn FnOnce(std::result::Result<(), Arc<sqlx::Error>>) + Send>,
}

struct Pending<T, F> {
    op: F,
    done: oneshot::Sender<Result<T>>,
}

impl<T, F> Op for Pending<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<Write<T>>> + Send + 'static,
{
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Ran> {
        Box::pin(async move {
            let Pending { op, done } = *self;
            let (keep, value) = match op(conn).await {
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
                        (Err(e), Ok(_)) => Err(StoreError::Commit(e)),
                    };
                    // The caller may have gone away (a dropped request); the write stands.
                    let _ = done.send(result);
                }),
            }
        })
    }

    fn abort(self: Box<Self>, error: Arc<sqlx::Error>) {
        let _ = self.done.send(Err(StoreError::Commit(error)));
    }
}

enum Msg {
    Op(Box<dyn Op>),
    /// Commit what is queued, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// Handle to the writer task; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    queue: mpsc::UnboundedSender<Msg>,
    /// Transactions committed so far.
    #[cfg_attr(not(test), allow(dead_code))]
    commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl Writer {
    /// Starts the writer task on `conn`, which must be in autocommit mode.
    pub(super) fn start(conn: SqliteConnection) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let commits = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(conn, rx, commits.clone()));
        Writer { queue, commits }
    }

    /// Transactions committed so far (one per batch).
    #[cfg(test)]
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `op` in the next batch and returns its result once the batch is committed.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<Write<T>>>
            + Send
            + 'static,
    {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Msg::Op(Box::new(Pending { op, done })))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Commits what is queued and closes the connection (checkpointing the WAL).
    pub(super) async fn close(&self) {
        let (ack, closed) = oneshot::channel();
        if self.queue.send(Msg::Close(ack)).is_ok() {
            let _ = closed.await;
        }
    }
}

async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    commits: Arc<AtomicU64>,
) {
    let mut batch: Vec<Box<dyn Op>> = Vec::new();
    while let Some(msg) = rx.recv().await {
        let mut close = None;
        match msg {
            Msg::Op(op) => batch.push(op),
            Msg::Close(ack) => close = Some(ack),
        }
        while close.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Op(op)) => batch.push(op),
                Ok(Msg::Close(ack)) => close = Some(ack),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let size = batch.len();
            if commit(&mut conn, std::mem::take(&mut batch)).await {
                commits.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::write_batch(size);
            }
        }
        if let Some(ack) = close {
            rx.close();
            // Operations queued after the close request get `Closed` when dropped.
            while let Ok(msg) = rx.try_recv() {
                drop(msg);
            }
            if let Err(e) = conn.close().await {
                tracing::warn!(error = %e, "closing the database connection failed");
            }
            let _ = ack.send(());
            return;
        }
    }
}

/// Runs one batch in one transaction; `true` when something was committed. The statements that
/// end one operation's savepoint and open the next one's are sent together, so the transaction
/// control costs one round trip to the connection per operation.
async fn commit(conn: &mut SqliteConnection, ops: Vec<Box<dyn Op>>) -> bool {
    let single = ops.len() == 1;
    let begin = if single {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN IMMEDIATE; SAVEPOINT op"
    };
    if let Err(e) = exec(conn, begin).await {
        let _ = exec(conn, "ROLLBACK").await;
        let e = Arc::new(e);
        ops.into_iter().for_each(|op| op.abort(e.clone()));
        return false;
    }
    let count = ops.len();
    let mut answers = Vec::with_capacity(count);
    let mut ops = ops.into_iter().enumerate();
    let mut end = "COMMIT";
    for (i, op) in ops.by_ref() {
        let ran = op.run(conn).await;
        if single && !ran.keep {
            // Nothing to commit. The rollback fails only if SQLite already rolled back itself.
            let _ = exec(conn, "ROLLBACK").await;
            (ran.answer)(Ok(()));
            return false;
        }
        answers.push(ran.answer);
        let last = i + 1 == count;
        end = match (single, ran.keep, last) {
            (true, _, _) => "COMMIT",
            (false, true, true) => "RELEASE op; COMMIT",
            (false, false, true) => "ROLLBACK TO op; RELEASE op; COMMIT",
            (false, true, false) => "RELEASE op; SAVEPOINT op",
            (false, false, false) => "ROLLBACK TO op; RELEASE op; SAVEPOINT op",
        };
        if last {
            break;
        }
        if let Err(e) = exec(conn, end).await {
            // SQLite ended the transaction itself: nothing of this batch is kept.
            let e = Arc::new(e);
            let _ = exec(conn, "ROLLBACK").await;
            ops.for_each(|(_, op)| op.abort(e.clone()));
            answers
                .into_iter()
                .for_each(|answer| answer(Err(e.clone())));
            return false;
        }
    }
    let outcome = exec(conn, end).await.map_err(Arc::new);
    if outcome.is_err() {
        // Leave the connection in autocommit mode whatever state the failure left it in.
        let _ = exec(conn, "ROLLBACK").await;
    }
    let committed = outcome.is_ok();
    answers
        .into_iter()
        .for_each(|answer| answer(outcome.clone()));
    committed
}

async fn exec(conn: &mut SqliteConnection, sql: &str) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(sql).execute(&mut *conn).await.map(|_| ())
}

#[cfg(test)]
mod tests;
