//! Audit reads: the job list (filters, newest first, keyset cursor) and a job's history.

#[allow(unused_imports)]
use super::{Cursor, History, JobFilter, JobPage, PgStore, Result};

impl PgStore {
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<JobPage> {
        todo!("{filter:?} {after:?} {limit}")
    }

    pub async fn history(&self, job_id: &str) -> Result<Option<History>> {
        todo!("{job_id}")
    }
}
