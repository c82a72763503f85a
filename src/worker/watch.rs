//! The watcher of a running job: renews its lease, notices a cancel request within a second,
//! and stops the job when the lease is lost or the process shuts down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::store::Lease;

/// How often a running job checks whether it was canceled.
const CANCEL_POLL: Duration = Duration::from_millis(500);

/// Why a job was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// An operator canceled the job.
    Canceled,
    /// The process is shutting down and the grace period is over.
    Shutdown,
    /// Another worker owns the job now: write nothing more.
    LeaseLost,
}

/// Stops a job's running command, remembering the first reason given.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    pub token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl Stop {
    pub fn trigger(&self, reason: StopReason) {
        self.reason
            .lock()
            .expect("stop reason lock")
            .get_or_insert(reason);
        self.token.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().expect("stop reason lock")
    }
}

/// Runs until the job ends (the caller aborts it) or a stop is triggered.
pub async fn watch(shared: Arc<Shared>, lease: Lease, stop: Stop) {
    let period = shared.settings.lease / 3;
    let mut next_renewal = Instant::now() + period;
    let mut last_renewed = Instant::now();
    loop {
        tokio::select! {
            _ = shared.interrupt.cancelled() => return stop.trigger(StopReason::Shutdown),
            _ = stop.token.cancelled() => return,
            _ = tokio::time::sleep(CANCEL_POLL) => {}
        }
        if Instant::now() >= next_renewal {
            match shared.store.renew(&lease, shared.settings.lease).await {
                Ok(true) => {
                    last_renewed = Instant::now();
                    next_renewal = last_renewed + period;
                }
                Ok(false) => {
                    tracing::warn!(job.id = %lease.job_id, "lease lost; stopping the job");
                    return stop.trigger(StopReason::LeaseLost);
                }
                Err(e) if last_renewed.elapsed() >= shared.settings.lease => {
                    tracing::warn!(job.id = %lease.job_id, error = %e, "lease could not be renewed in time; stopping the job");
                    return stop.trigger(StopReason::LeaseLost);
                }
                // Tried again at the next tick.
                Err(e) => {
                    tracing::warn!(job.id = %lease.job_id, error = %e, "lease renewal failed; will retry")
                }
            }
        }
        if let Ok(true) = shared.store.cancel_requested(&lease).await {
            tracing::info!(job.id = %lease.job_id, "cancel requested; stopping the job");
            return stop.trigger(StopReason::Canceled);
        }
    }
}
