//! Change notifications inside one process: the channel every backend feeds after its commits
//! (SQLite from its own writes; PostgreSQL also from `LISTEN`, for the writes of other replicas).

use std::sync::Arc;

use tokio::sync::{Notify, broadcast};

/// How many job ids a slow receiver may fall behind before it is told it lagged.
const CHANGES_BUFFER: usize = 1024;

/// Wakes the tasks that wait for a job to change or for resource locks to be released.
#[derive(Debug, Clone)]
pub struct Notifier {
    locks_released: Arc<Notify>,
    changes: broadcast::Sender<String>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            locks_released: Arc::default(),
            changes: broadcast::channel(CHANGES_BUFFER).0,
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

    /// The ids of jobs that may have changed, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}
