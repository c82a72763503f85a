//! The SQLite backend, the embedded default: one process per database file.
//!
//! Every write runs on the one writer thread (`writer`), which commits what is queued together
//! (group commit, `synchronous = FULL`); a caller gets its answer after the commit. Reads use
//! read-only connections: the sqlx pool, or for the status poll a connection used inline
//! (`readers`). Leases and locks live in the database file, held by the one process that has
//! the file open (its instance lock, taken by the caller of [`SqliteStore::open`]); change
//! notifications are in-process.

mod audit;
mod control;
mod history;
mod instance;
mod lease;
mod locks;
mod overview;
mod prune;
mod read;
mod readers;
mod run;
mod secrets;
mod submit;
mod writer;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, SqlitePool};

use writer::{Write, Writer};

use super::notify::Notifier;
// The neutral names the backend's modules use, as `super::…`.
use super::{
    AttemptEnd, AttemptEnding, AttemptRecord, AttemptStart, CancelOutcome, Claimed, Cursor,
    EventRecord, Finished, History, IdempotencySecret, JobEnd, JobFilter, JobPage, JobRecord,
    Lease, NewJob, RecordedCommand, Recovered, Result, RetryOutcome, SecretRecord, Started,
    StepEnd, StepRecord, StoreError, Submitted, Then, WalTruncation, ms, now_ms,
};

/// The SQLite backend; cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Read-only connections, for every read outside a write.
    pool: SqlitePool,
    /// The one connection that writes (see `writer`).
    writer: Writer,
    /// Connections for the point reads of the request path (see `readers`).
    readers: std::sync::Arc<readers::Readers>,
    /// Change notifications, in-process.
    notifier: Notifier,
    /// The database file.
    path: std::sync::Arc<Path>,
    /// The key of the idempotency request hash, read (or created) at open.
    idempotency_secret: std::sync::Arc<IdempotencySecret>,
    /// The instance lock (see `instance`), held while any clone lives.
    _instance: std::sync::Arc<std::fs::File>,
}

/// Read-only connections: reads run in parallel with each other and with the writer (WAL).
const READERS: u32 = 4;

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl SqliteStore {
    /// Takes the instance lock, then opens (creating it and its folder if missing) the
    /// database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let instance = instance::lock(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            // Deleted content (an erased password, a cleared hash) is overwritten with zeros,
            // not left in free space of its page or on the free list.
            .pragma("secure_delete", "ON");
        let mut conn = options
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the 202 that acknowledges it is sent.
            .synchronous(SqliteSynchronous::Full)
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .connect()
            .await?;
        restrict_permissions(path);
        sqlx::migrate!("./migrations/sqlite")
            .run_direct(&mut conn)
            .await?;
        let idempotency_secret = secrets::idempotency_secret(&mut conn).await?;
        // Nothing else has the file open yet: whatever a previous process (or a migration) left
        // in the WAL, erased secrets included, goes now.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await?;
        let writer = Writer::start(writer_connection(path)?).map_err(StoreError::Thread)?;
        sqlx::Connection::close(conn).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(15))
            .after_release(|conn, _| Box::pin(async move { still_usable(conn).await }))
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            pool,
            writer,
            readers: std::sync::Arc::new(readers::Readers::new(path)),
            notifier: Notifier::default(),
            path: path.into(),
            idempotency_secret: std::sync::Arc::new(idempotency_secret),
            _instance: std::sync::Arc::new(instance),
        })
    }

    /// Runs a write transaction on the writer (see `writer`); returns once it is committed.
    async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<Write<T>> + Send + 'static,
    {
        self.writer.write(op).await
    }

    /// Runs a write that releases resource locks. Tasks waiting in `locks_released` are woken
    /// as soon as it is queued: what they queue next runs after it, so they find the locks free
    /// without waiting for this write's commit, and can commit together with it.
    async fn write_releasing_locks<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<Write<T>> + Send + 'static,
    {
        let answer = self.writer.queue(op)?;
        self.notifier.locks_released();
        answer.await
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    fn changed(&self, job_id: &str) {
        self.notifier.changed(job_id);
    }

    /// Answers when the database can run a query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Commits the writes already queued and closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
        self.readers.close();
        self.writer.close().await;
    }
}

/// Whether a connection returned to the read pool can be used again. When a statement fails
/// because the disk is full (SQLite needs room for its WAL index even to read), SQLite may roll
/// the transaction back itself; the rollback sqlx then sends fails, and the connection would
/// believe it is still inside a transaction forever. Such a connection is dropped (the pool
/// opens a fresh one), so the service recovers by itself once the condition clears.
async fn still_usable(conn: &mut sqlx::SqliteConnection) -> std::result::Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // A dropped transaction's rollback may still be queued: let it run, then look again.
    if sqlx::query("SELECT 1").execute(&mut *conn).await.is_err() {
        return Ok(false);
    }
    Ok(!conn.is_in_transaction())
}

/// The writer's connection, with the same settings as the others (the database is already in
/// WAL mode, a persistent setting).
fn writer_connection(path: &Path) -> Result<Connection> {
    use rusqlite::OpenFlags;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL: a commit is on disk before the 202 that acknowledges it is sent. secure_delete: see
    // `Store::open`.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
         PRAGMA secure_delete = ON;",
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// The database holds passwords until they expire: only the service's user may read it.
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        // Best effort: the file may live on a filesystem without Unix permissions.
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
}

/// Appends an audit event in the caller's transaction.
fn event(
    tx: &Connection,
    job_id: &str,
    kind: &str,
    attempt: Option<i64>,
    worker: Option<&str>,
    detail: Option<&str>,
) -> Result<()> {
    insert_event(tx, job_id, kind, attempt, worker, detail, None)
}

/// When a scheduled retry is due: the job's new `run_at` and the delay that led to it.
#[derive(Debug, Clone, Copy)]
struct RetryDue {
    at: i64,
    delay_ms: i64,
}

fn insert_event(
    tx: &Connection,
    job_id: &str,
    kind: &str,
    attempt: Option<i64>,
    worker: Option<&str>,
    detail: Option<&str>,
    retry: Option<RetryDue>,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO job_events (job_id, at, type, attempt, worker, detail, retry_at, delay_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(rusqlite::params![
        job_id,
        now_ms(),
        kind,
        attempt,
        worker,
        detail,
        retry.map(|r| r.at),
        retry.map(|r| r.delay_ms)
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests;
