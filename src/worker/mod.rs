//! The worker pool: claims due jobs from the store and runs them, at most
//! `WORKER_CONCURRENCY` at once, in the same process as the API.
//!
//! It wakes when a job is submitted (a shared [`Notify`]) or when the next queued job or lease
//! expiry falls due, so it never polls in a busy loop. At start it puts back in the queue the
//! jobs that an earlier process on this host left running.

mod job;
mod outcome;
mod procedure;
mod verdict;
mod watch;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::exec::{Leftover, ProcessId, stop_leftover};
use crate::store::{RecordedCommand, Store, StoreError, now_ms};

pub use procedure::{DATA_OUTPUT_LIMIT, exit_class, prepare_private_dir};
pub use verdict::{Verdict, judge};

/// What every job task of this worker shares.
struct Shared {
    store: Store,
    settings: Arc<Settings>,
    wake: Arc<Notify>,
    /// Set once the installed everestctl turned out to predate `--operator.mysql`.
    legacy_mysql_flag: AtomicBool,
    /// Cancelled when the process starts shutting down: no new job, no new step.
    draining: CancellationToken,
    /// Cancelled when the shutdown grace period is over: running commands are stopped.
    interrupt: CancellationToken,
    /// `<host>:`, the start of the id of every worker of this host.
    host_prefix: String,
}

/// The worker pool of this process.
pub struct Worker {
    shared: Arc<Shared>,
    id: String,
}

impl Worker {
    /// A worker whose id is `<host>:<pid>:<random>`; `wake` is notified on every submit.
    pub fn new(store: Store, settings: Arc<Settings>, wake: Arc<Notify>) -> Self {
        let host = hostname();
        let id = format!(
            "{host}:{}:{}",
            std::process::id(),
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        );
        let shared = Arc::new(Shared {
            store,
            settings,
            wake,
            legacy_mysql_flag: AtomicBool::new(false),
            draining: CancellationToken::new(),
            interrupt: CancellationToken::new(),
            host_prefix: format!("{host}:"),
        });
        Worker { shared, id }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Requeues the jobs that earlier processes of this host left running, after stopping the
    /// commands those processes left running (a process killed alone leaves its commands, each
    /// in its own process group, running).
    ///
    /// Stopping comes first: should this process die while stopping, the jobs are still
    /// `running` under the dead owner and the next start stops and recovers them again.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let store = &self.shared.store;
        let host = &self.shared.host_prefix;
        let left = store.commands_left_by_host(host, &self.id).await?;
        stop_left_running(&self.shared, &left).await;
        let recovered = store.recover_host(host, &self.id).await?;
        crate::telemetry::lease_recoveries(recovered.len() as u64);
        for r in &recovered {
            tracing::info!(job.id = %r.job_id, previous_owner = %r.previous_owner, "recovered job left running by a previous process");
        }
        Ok(recovered.len())
    }

    /// Claims and runs jobs until `stop` is cancelled, then drains: running steps may finish
    /// within `SHUTDOWN_GRACE_SECONDS` (their jobs are given back at the next step boundary);
    /// after that their commands are stopped and the jobs are given back as interrupted.
    pub async fn run(self, stop: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.shared.settings.worker_concurrency));
        let tasks = TaskTracker::new();
        loop {
            let permit = tokio::select! {
                _ = stop.cancelled() => break,
                permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            };
            match self
                .shared
                .store
                .claim(&self.id, self.shared.settings.lease)
                .await
            {
                Ok(Some(claimed)) => {
                    let shared = self.shared.clone();
                    tasks.spawn(async move {
                        job::run(shared, claimed).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    let pause = self.idle_pause().await;
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = self.shared.wake.notified() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::warn!(error = %e, "cannot claim jobs; retrying in 1s");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        self.drain(tasks).await;
    }

    async fn drain(&self, tasks: TaskTracker) {
        self.shared.draining.cancel();
        tasks.close();
        let settings = &self.shared.settings;
        if !tasks.is_empty() {
            tracing::info!(
                running = tasks.len(),
                grace_s = settings.shutdown_grace.as_secs(),
                "waiting for running steps to finish"
            );
        }
        if tokio::time::timeout(settings.shutdown_grace, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = tasks.len(),
                "grace period over; stopping running commands"
            );
            self.shared.interrupt.cancel();
            // Commands get SIGTERM, then SIGKILL after the kill grace; recording them is quick.
            let bound = settings.kill_grace + Duration::from_secs(10);
            if tokio::time::timeout(bound, tasks.wait()).await.is_err() {
                tracing::error!(
                    "jobs did not stop in time; their leases will expire and they will be resumed"
                );
            }
        }
    }

    /// How long to sleep when nothing is due: until the next due time, at most one lease.
    async fn idle_pause(&self) -> Duration {
        let lease = self.shared.settings.lease;
        match self.shared.store.next_due().await {
            Ok(Some(due)) => Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0))
                .clamp(Duration::from_millis(20), lease),
            _ => lease,
        }
    }
}

/// Stops the recorded commands that still run (those started on this host: another host's pids
/// mean nothing here), all at once, and waits (bounded by the kill grace plus a few seconds)
/// until they have ended.
async fn stop_left_running(shared: &Shared, commands: &[RecordedCommand]) {
    let grace = shared.settings.kill_grace;
    let mut stops = tokio::task::JoinSet::new();
    for command in commands {
        if !command.worker.starts_with(&shared.host_prefix) {
            tracing::warn!(job.id = %command.job_id, worker = %command.worker,
                "a command of another host may still run; it cannot be stopped from here");
            continue;
        }
        let command = command.clone();
        stops.spawn(async move {
            let id = ProcessId {
                pid: command.pid,
                start_time: command.start_time,
            };
            (command, stop_leftover(id, grace).await)
        });
    }
    while let Some(done) = stops.join_next().await {
        let Ok((command, result)) = done else {
            continue;
        };
        let (job, pid) = (&command.job_id, command.pid);
        match result {
            Leftover::Gone | Leftover::Reused => {
                tracing::debug!(job.id = %job, pid, ?result, "recorded command no longer runs")
            }
            Leftover::Stopped { forced } => {
                tracing::info!(job.id = %job, pid, forced, previous_owner = %command.worker,
                    "stopped a command left running by a previous owner")
            }
            Leftover::Survived => tracing::error!(job.id = %job, pid,
                "a command left running by a previous owner did not stop after SIGKILL"),
        }
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
        .replace(':', "_")
}
