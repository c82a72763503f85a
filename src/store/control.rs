//! What operator control (cancel, retry) did.

use crate::domain::JobStatus;

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    NotFound,
    /// The job had already finished with this status.
    AlreadyFinished(JobStatus),
    /// The job was queued and is now canceled.
    Canceled,
    /// The job is running; its worker will stop it.
    Requested,
}

/// What a retry request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    NotFound,
    /// Only failed or canceled jobs can be retried; this is the job's status.
    NotRetryable(JobStatus),
    Requeued,
}
