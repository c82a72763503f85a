//! Accepting a job: one transaction, committed before the caller answers 202.

#[allow(unused_imports)]
use super::{NewJob, PgStore, Result, Submitted};

impl PgStore {
    pub async fn submit(&self, job: &NewJob) -> Result<Submitted> {
        todo!("postgres submit {}", job.id)
    }
}
