//! Change notifications inside one process: the channel every backend feeds after its commits
//! (SQLite from its own writes; PostgreSQL also from `LISTEN`, for the writes of other replicas).

use std::sync::Arc;

use tokio::sync::{Notify, broadcast};

use super::handoff::Parking;

/// How many job ids a slow receiver may fall behind before it is told it lagged.
const CHANGES_BUFFER: usize = 1024;

/// Wakes the tasks that wait for a job to change or for resource locks to be released.
#[derive(Debug, Clone)]
pub struct Notifier {
    locks_released: Arc<Notify>,
    changes: broadcast::Sender<String>,
    /// Wakes this process's idle worker loop: a job was queued (here, or on PostgreSQL by
    /// another replica).
    queued: Arc<Notify>,
    /// This process's attempts waiting for a lock (see `handoff`).
    parking: Arc<Parking>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            locks_released: Arc::default(),
            changes: broadcast::channel(CHANGES_BUFFER).0,
            queued: Arc::default(),
            parking: Arc::default(),
        }
    }
}

impl Notifier {
    /// Announces that job `job_id`'s status or current step may have changed.
    pub fn changed(&self, job_id: &str) {
        // No receiver is not an error: nobody is waiting.
        let _ = self.changes.send(job_id.to_string());
    }

    /// Wakes every task waiting in [`Notifier::released`].
    pub fn locks_released(&self) {
        self.locks_released.notify_waiters();
    }

    /// Notified when resource locks may have been released.
    pub fn released(&self) -> &Notify {
        &self.locks_released
    }

    /// Announces that a job may be claimable now. One permit is kept if the worker loop is not
    /// waiting at that moment (`notify_one`), so a wake-up between its claim and its wait is
    /// not lost.
    pub fn job_queued(&self) {
        self.queued.notify_one();
    }

    /// What the worker loop waits on when nothing was claimable.
    pub fn queued(&self) -> Arc<Notify> {
        self.queued.clone()
    }

    /// The ids of jobs that may have changed, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// The attempts of this process waiting for a lock.
    pub(super) fn parking(&self) -> &Arc<Parking> {
        &self.parking
    }
}
