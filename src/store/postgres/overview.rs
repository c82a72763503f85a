//! The overview's counts.

use super::{PgStore, Result};
use crate::store::overview::{JobCounts, OldestQueued};

/// Jobs by status and by kind, in one statement (one snapshot).
const COUNTS_SQL: &str = "
    SELECT 'status', status, COUNT(*) FROM jobs GROUP BY status
    UNION ALL
    SELECT 'kind', kind, COUNT(*) FROM jobs GROUP BY kind";

/// The first entry of the queued range of `jobs_status_created`.
const OLDEST_QUEUED_SQL: &str = "
    SELECT id, created_at FROM jobs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1";

impl PgStore {
    /// How many jobs there are of each status and of each kind.
    pub async fn job_counts(&self) -> Result<JobCounts> {
        let rows = sqlx::query_as(COUNTS_SQL).fetch_all(&self.pool).await?;
        JobCounts::from_rows(rows)
    }

    /// The queued job created first.
    pub async fn oldest_queued(&self) -> Result<OldestQueued> {
        Ok(sqlx::query_as(OLDEST_QUEUED_SQL)
            .fetch_optional(&self.pool)
            .await?)
    }
}
