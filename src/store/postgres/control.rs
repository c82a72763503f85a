//! Operator control of jobs: cancel and retry, and the worker's view of a cancel request.

#[allow(unused_imports)]
use super::{CancelOutcome, Lease, PgStore, Result, RetryOutcome};

impl PgStore {
    pub async fn request_cancel(&self, job_id: &str, by: &str) -> Result<CancelOutcome> {
        todo!("{job_id} {by}")
    }

    pub async fn cancel_requested(&self, lease: &Lease) -> Result<bool> {
        todo!("{lease:?}")
    }

    pub async fn retry(&self, job_id: &str, by: &str) -> Result<RetryOutcome> {
        todo!("{job_id} {by}")
    }
}
