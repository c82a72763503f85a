//! Point reads of jobs, steps, attempts and secrets.

#[allow(unused_imports)]
use super::{AttemptRecord, JobRecord, PgStore, Result, SecretRecord, StepRecord};

impl PgStore {
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        todo!("{id}")
    }

    pub async fn job_with_steps(&self, id: &str) -> Result<Option<(JobRecord, Vec<StepRecord>)>> {
        todo!("{id}")
    }

    pub async fn steps(&self, job_id: &str) -> Result<Vec<StepRecord>> {
        todo!("{job_id}")
    }

    pub async fn last_attempts(&self, job_id: &str) -> Result<Vec<AttemptRecord>> {
        todo!("{job_id}")
    }

    pub async fn secret(&self, job_id: &str) -> Result<Option<SecretRecord>> {
        todo!("{job_id}")
    }

    pub async fn latest_suspension(&self, username: &str) -> Result<Option<(String, Vec<String>)>> {
        todo!("{username}")
    }
}
