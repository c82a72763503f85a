//! The store: every read and write of the service's durable state, behind one facade
//! ([`Store`]) over two backends, SQLite (`sqlite`, the embedded default) and PostgreSQL
//! (`postgres`, for several replicas). Records ([`JobRecord`], ...), states
//! ([`crate::domain::JobStatus`], ...), outcomes and errors ([`StoreError`]) are
//! backend-neutral and live here; SQL lives in the backends and nowhere else.
//!
//! # What a backend guarantees
//!
//! - **Durable before acknowledged**: a write's future resolves only after its transaction
//!   committed durably; a submit is answered 202 only then.
//! - **Fencing**: every worker write about a job runs in a transaction whose first statement
//!   touches the job row only if the writer still holds the lease of that claim (`lease_owner`
//!   and `attempt`); a worker that lost its lease writes nothing.
//! - **Exclusive claims**: a job is held by at most one lease at a time; a lease that expired
//!   may be taken over, a live one never.
//! - **Lock semantics**: resource locks (`everest-accounts`, `namespace:<ns>`, ...) are exclusive
//!   across every process sharing the database, are taken together with the attempt that needs
//!   them (all or none), and expire with a lease so that a dead holder's locks free themselves.
//! - **Idempotency keys** are unique per admin key name across every process.
//! - **Change notifications**: after a commit that changes a job's status or current step, in
//!   whichever process, the job's id reaches [`Store::subscribe`]; a write that releases locks
//!   wakes [`Store::locks_released`]. A receiver that lagged re-reads what it watches, and
//!   waiters re-check on a timer too: a lost notification delays, never blocks.
//! - **Maintenance runs once**: pruning and secret expiry run in one process at a time.
//! - **States parsed once**: a stored value that no state spells is [`StoreError::Corrupt`];
//!   "the database cannot answer now" is [`StoreError::Unavailable`] (the API answers 503).
//!
//! # Why an enum and not a trait object
//!
//! There are exactly two backends, chosen once at start; the facade matches on them. That keeps
//! the operations plain `async fn`s (an `async fn` in a trait cannot be called through `dyn`)
//! and their documentation in one place, here.

mod control;
mod error;
mod handoff;
mod history;
mod lease;
mod model;
mod notify;
mod overview;
pub mod postgres;
mod rows;
mod run;
mod secrets;
pub mod sqlite;
mod submit;

use std::path::Path;
use std::time::Duration;

pub use control::{CancelOutcome, RetryOutcome};
pub use error::{Cause, Result, StoreError};
pub use handoff::Parked;
pub use history::{Cursor, History, JobFilter, JobPage};
pub use lease::{Lease, Recovered};
pub use model::{
    AttemptRecord, Claimed, EventRecord, JobRecord, NewJob, RecordedCommand, SecretRecord,
    StepRecord,
};
pub use overview::{JobCounts, OldestQueued};
pub use run::{AttemptEnd, AttemptEnding, AttemptStart, Finished, JobEnd, Started, StepEnd, Then};
pub use secrets::{IdempotencySecret, WalTruncation};
pub use submit::Submitted;

use postgres::{PgOptions, PgStore};
use sqlite::SqliteStore;

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Runs `$body` with `$b` bound to whichever backend `$store` has.
macro_rules! on_backend {
    ($store:expr, $b:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($b) => $body,
            Backend::Postgres($b) => $body,
        }
    };
}

/// Milliseconds since the Unix epoch, now (this process's clock).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A duration in milliseconds, saturating.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Takes the SQLite file's instance lock (one process per file: [`StoreError::InUse`]
    /// otherwise), opens the file (creating it and its folder if missing) and applies its
    /// migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        Ok(Store {
            backend: Backend::Sqlite(SqliteStore::open(path).await?),
        })
    }

    /// Connects to PostgreSQL at `url` (any URL form sqlx accepts), applies its migrations
    /// (under a lock: replicas starting together do not race) and starts listening for the
    /// other replicas' changes.
    pub async fn open_postgres(url: &str, options: PgOptions) -> Result<Self> {
        Ok(Store {
            backend: Backend::Postgres(PgStore::open(url, options).await?),
        })
    }

    /// Whether several processes may share this database (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    fn notifier(&self) -> &notify::Notifier {
        on_backend!(self, b => b.notifier())
    }

    /// Notified whenever a write that releases resource locks is queued (here) or committed
    /// (anywhere). Create the `Notified` future (and `enable` it) before trying to take a
    /// lock, or a release between the attempt and the wait is missed.
    pub fn locks_released(&self) -> &tokio::sync::Notify {
        self.notifier().released()
    }

    /// Notified when a job may have become claimable: submitted or requeued here, or (on
    /// PostgreSQL) by another replica. The worker loop waits on it; the HTTP layer notifies it
    /// after a submit.
    pub fn job_queued(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.notifier().queued()
    }

    /// Change notifications: the id of every job whose status or current step changed, after
    /// the commit. A lagging receiver should re-read whatever it watches.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.notifier().subscribe()
    }

    /// Answers when the database can run a query.
    pub async fn ping(&self) -> Result<()> {
        on_backend!(self, b => b.ping().await)
    }

    /// Commits the writes already queued and closes every connection.
    pub async fn close(&self) {
        on_backend!(self, b => b.close().await)
    }

    /// The key of the idempotency request hash (see [`IdempotencySecret`]).
    pub fn idempotency_secret(&self) -> &IdempotencySecret {
        on_backend!(self, b => b.idempotency_secret())
    }

    // ---- submitting and reading ----

    /// Stores a job with its steps, secret and `submitted` event, or resolves its idempotency
    /// key. Returns once the job is committed.
    pub async fn submit(&self, job: &NewJob) -> Result<Submitted> {
        on_backend!(self, b => b.submit(job).await)
    }

    /// The job, if it exists.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        on_backend!(self, b => b.job(id).await)
    }

    /// The job and its steps, read in one snapshot.
    pub async fn job_with_steps(&self, id: &str) -> Result<Option<(JobRecord, Vec<StepRecord>)>> {
        on_backend!(self, b => b.job_with_steps(id).await)
    }

    /// The job's steps in order.
    pub async fn steps(&self, job_id: &str) -> Result<Vec<StepRecord>> {
        on_backend!(self, b => b.steps(job_id).await)
    }

    /// The latest attempt of each step of the job, in step order.
    pub async fn last_attempts(&self, job_id: &str) -> Result<Vec<AttemptRecord>> {
        on_backend!(self, b => b.last_attempts(job_id).await)
    }

    /// The job's secret, if it has one.
    pub async fn secret(&self, job_id: &str) -> Result<Option<SecretRecord>> {
        on_backend!(self, b => b.secret(job_id).await)
    }

    /// The id and suspended namespaces of the latest succeeded `suspend` of `username`.
    pub async fn latest_suspension(&self, username: &str) -> Result<Option<(String, Vec<String>)>> {
        on_backend!(self, b => b.latest_suspension(username).await)
    }

    /// One page of jobs matching `filter`, newest first (ties by id, descending), starting
    /// after `after`; at most `limit` jobs.
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<JobPage> {
        on_backend!(self, b => b.list_jobs(filter, after, limit).await)
    }

    /// Everything recorded about one job, in one snapshot.
    pub async fn history(&self, job_id: &str) -> Result<Option<History>> {
        on_backend!(self, b => b.history(job_id).await)
    }

    /// How many jobs there are of each status and of each kind, in one snapshot. This reads an
    /// index entry of every job (about 0.1 s per million on SQLite): cache it.
    pub async fn job_counts(&self) -> Result<JobCounts> {
        on_backend!(self, b => b.job_counts().await)
    }

    /// The queued job created first, `(id, created_at)`: one index entry.
    pub async fn oldest_queued(&self) -> Result<OldestQueued> {
        on_backend!(self, b => b.oldest_queued().await)
    }

    /// How many jobs are queued and how many are running.
    pub async fn queue_counts(&self) -> Result<(i64, i64)> {
        on_backend!(self, b => b.queue_counts().await)
    }

    /// The earliest time (ms since the epoch, on this process's clock) something becomes
    /// claimable: a queued job's `run_at` or a lease expiry.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        on_backend!(self, b => b.next_due().await)
    }

    // ---- operator control and audit ----

    /// Cancels a queued job at once, or flags a running one for its worker.
    pub async fn request_cancel(&self, job_id: &str, by: &str) -> Result<CancelOutcome> {
        on_backend!(self, b => b.request_cancel(job_id, by).await)
    }

    /// Whether the job held by `lease` was asked to stop.
    pub async fn cancel_requested(&self, lease: &Lease) -> Result<bool> {
        on_backend!(self, b => b.cancel_requested(lease).await)
    }

    /// Puts a failed or canceled job back in the queue, resuming at its first unfinished step.
    pub async fn retry(&self, job_id: &str, by: &str) -> Result<RetryOutcome> {
        on_backend!(self, b => b.retry(job_id, by).await)
    }

    /// Records in the job's history that the key named `by` was shown the job's generated
    /// password, in the request `request_id`. Returns once the event is committed.
    pub async fn record_credentials_read(
        &self,
        job_id: &str,
        by: &str,
        request_id: &str,
    ) -> Result<()> {
        on_backend!(self, b => b.record_credentials_read(job_id, by, request_id).await)
    }

    // ---- the worker: claims, leases and fenced writes ----

    /// Claims the job that is due first (queued and due, or running with an expired lease),
    /// and loads what the worker needs to run it.
    pub async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<Claimed>> {
        on_backend!(self, b => b.claim(worker, lease).await)
    }

    /// Extends the lease and the job's resource locks; `false` means the lease was lost
    /// (expired and taken, or the job left `running`).
    pub async fn renew(&self, lease: &Lease, duration: Duration) -> Result<bool> {
        on_backend!(self, b => b.renew(lease, duration).await)
    }

    /// Takes all of `locks` for the job and records that the attempt starts, in one
    /// transaction: either both happen or neither does.
    pub async fn begin_attempt(
        &self,
        lease: &Lease,
        start: AttemptStart,
        locks: &[String],
        lock_for: Duration,
    ) -> Result<Started> {
        on_backend!(self, b => b.begin_attempt(lease, start, locks, lock_for).await)
    }

    /// Parks an attempt refused a lock (after [`Store::begin_attempt`] answered `Busy`): the
    /// write of this process that next releases one of `locks` starts it in its own commit
    /// and answers in [`Parked::started`] (see `handoff`). Waiters still wait on
    /// [`Store::locks_released`] too, for the releases nobody handed off.
    pub fn park(
        &self,
        lease: &Lease,
        start: AttemptStart,
        locks: &[String],
        lock_for: Duration,
    ) -> Parked {
        self.notifier()
            .parking()
            .park(lease, start, locks, lock_for)
    }

    /// Takes a parked attempt back; `false` when a holder took it first: [`Parked::started`]
    /// then answers, and if it closes without an id, [`Store::handed_off`] decides.
    pub fn unpark(&self, parked: &Parked) -> bool {
        self.notifier().parking().unpark(parked)
    }

    /// The attempt at `position` that runs under `lease` and has not ended: the one a holder
    /// started on the waiter's behalf, when the waiter could not hear of it.
    pub async fn handed_off(&self, lease: &Lease, position: i64) -> Result<Option<i64>> {
        on_backend!(self, b => b.handed_off(lease, position).await)
    }

    /// Records a whole attempt that ran nothing and what follows for the job, in one
    /// transaction. `false` (nothing written) when the lease is lost.
    pub async fn record_attempt(
        &self,
        lease: &Lease,
        start: AttemptStart,
        attempt: &AttemptEnd,
        step: &StepEnd,
        job: &JobEnd,
        secret_ttl: Duration,
    ) -> Result<bool> {
        on_backend!(self, b => b.record_attempt(lease, start, attempt, step, job, secret_ttl).await)
    }

    /// Records the end of an attempt, its step and what follows for the job, and releases the
    /// job's resource locks; then, if the job goes on, `then`, all in one transaction. A next
    /// attempt that cannot take its locks is not started; the end is recorded anyway.
    pub async fn finish_attempt_then(
        &self,
        lease: &Lease,
        ending: AttemptEnding,
        then: Then,
        secret_ttl: Duration,
    ) -> Result<Finished> {
        on_backend!(self, b => b.finish_attempt_then(lease, ending, then, secret_ttl).await)
    }

    /// Ends a job without an attempt (nothing left to run, or a step that could not start).
    /// `false` (nothing written) when the lease is lost.
    pub async fn finish_job(
        &self,
        lease: &Lease,
        job: &JobEnd,
        secret_ttl: Duration,
    ) -> Result<bool> {
        on_backend!(self, b => b.finish_job(lease, job, secret_ttl).await)
    }

    /// Records the command an attempt just started (`pid`, and `start_time` from
    /// `/proc/<pid>/stat`), so that a process that takes the job over can stop it if it still
    /// runs. `false` (nothing written) when the lease is lost.
    pub async fn record_command(
        &self,
        lease: &Lease,
        attempt_id: i64,
        pid: i32,
        start_time: u64,
    ) -> Result<bool> {
        on_backend!(self, b => b.record_command(lease, attempt_id, pid, start_time).await)
    }

    /// Whether an earlier attempt (id below `before`) of this step may have changed the cluster
    /// before failing: anything but a clean, classified permanent failure.
    pub async fn step_may_have_run(
        &self,
        job_id: &str,
        position: i64,
        before: i64,
    ) -> Result<bool> {
        on_backend!(self, b => b.step_may_have_run(job_id, position, before).await)
    }

    /// Releases every lock the job holds under `lease`, if the job still names that lease: a
    /// worker cleaning up after a store error must not free the locks of a process that took
    /// the job over meanwhile.
    pub async fn unlock_all(&self, lease: &Lease) -> Result<()> {
        on_backend!(self, b => b.unlock_all(lease).await)
    }

    // ---- recovery of this host's previous process (SQLite only) ----

    /// The recorded commands of unfinished attempts of the jobs that earlier processes of this
    /// host left running: they may still run, and must be stopped before
    /// [`Store::recover_host`] requeues their jobs. Empty on PostgreSQL, where a dead
    /// replica's jobs come back by lease expiry only (a process of the same host name may be
    /// another, live replica).
    pub async fn commands_left_by_host(
        &self,
        host_prefix: &str,
        me: &str,
    ) -> Result<Vec<RecordedCommand>> {
        match &self.backend {
            Backend::Sqlite(b) => b.commands_left_by_host(host_prefix, me).await,
            Backend::Postgres(_) => Ok(Vec::new()),
        }
    }

    /// Puts back in the queue, at once, the jobs that earlier processes of this host left
    /// running (SQLite: the instance lock proves their owner dead). Nothing on PostgreSQL.
    pub async fn recover_host(&self, host_prefix: &str, me: &str) -> Result<Vec<Recovered>> {
        match &self.backend {
            Backend::Sqlite(b) => b.recover_host(host_prefix, me).await,
            Backend::Postgres(_) => Ok(Vec::new()),
        }
    }

    // ---- maintenance ----

    /// Deletes up to `batch` jobs that finished before `cutoff_ms`, oldest first, with
    /// everything recorded about them, in one transaction. Never a queued or running job.
    /// Returns how many were deleted: fewer than `batch` means that none is left. On
    /// PostgreSQL only the maintenance leader deletes; the other replicas get 0.
    pub async fn prune_finished_before(&self, cutoff_ms: i64, batch: u32) -> Result<u64> {
        on_backend!(self, b => b.prune_finished_before(cutoff_ms, batch).await)
    }

    /// Gives up to `pages` free pages of the database file back to the file system and returns
    /// how many are left (SQLite's incremental vacuum). PostgreSQL's autovacuum does this
    /// itself: 0.
    pub async fn reclaim_space(&self, pages: u32) -> Result<i64> {
        match &self.backend {
            Backend::Sqlite(b) => b.reclaim_space(pages).await,
            Backend::Postgres(_) => Ok(0),
        }
    }

    /// Erases passwords whose time is up; returns how many were erased. Follow it with
    /// [`Store::truncate_wal`]. On PostgreSQL only the maintenance leader erases.
    pub async fn purge_expired_secrets(&self) -> Result<u64> {
        on_backend!(self, b => b.purge_expired_secrets().await)
    }

    /// Makes erased passwords leave every database file (SQLite: checkpoints and truncates the
    /// WAL). On PostgreSQL, dead row versions are the server's to vacuum: `AlreadyEmpty`.
    pub async fn truncate_wal(&self) -> Result<WalTruncation> {
        match &self.backend {
            Backend::Sqlite(b) => b.truncate_wal().await,
            Backend::Postgres(_) => Ok(WalTruncation::AlreadyEmpty),
        }
    }
}
