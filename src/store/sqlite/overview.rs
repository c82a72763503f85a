//! The overview's counts. Each part of the count names the covering index it reads, so that
//! the count walks one index (about 40 bytes an entry) rather than the table: without
//! statistics SQLite could pick any of the `(…, created_at, id)` indexes or the table itself.

use super::{Result, SqliteStore};
use crate::store::overview::{JobCounts, OldestQueued};

/// Jobs by status and by kind, in one statement (one snapshot).
pub(super) const COUNTS_SQL: &str = "
    SELECT 'status', status, COUNT(*) FROM jobs INDEXED BY jobs_status_created GROUP BY status
    UNION ALL
    SELECT 'kind', kind, COUNT(*) FROM jobs INDEXED BY jobs_kind_created GROUP BY kind";

/// The first entry of the queued range of `jobs_status_created`.
pub(super) const OLDEST_QUEUED_SQL: &str = "
    SELECT id, created_at FROM jobs INDEXED BY jobs_status_created
     WHERE status = 'queued' ORDER BY created_at, id LIMIT 1";

impl SqliteStore {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts walk two covering indexes (never the table, never a sort); the oldest queued
    /// job is one search of an index.
    #[tokio::test]
    async fn counts_read_an_index_and_the_oldest_queued_job_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        for (sql, expected) in [
            (
                COUNTS_SQL,
                &[
                    "SCAN jobs USING COVERING INDEX jobs_status_created",
                    "SCAN jobs USING COVERING INDEX jobs_kind_created",
                ][..],
            ),
            (
                OLDEST_QUEUED_SQL,
                &["SEARCH jobs USING COVERING INDEX jobs_status_created (status=?)"][..],
            ),
        ] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .fetch_all(&s.pool)
                    .await
                    .unwrap();
            let steps: Vec<&str> = plan
                .iter()
                .map(|p| p.3.as_str())
                .filter(|t| {
                    t.starts_with("SCAN") || t.starts_with("SEARCH") || t.contains("B-TREE")
                })
                .collect();
            assert_eq!(steps, expected, "{sql}");
        }
        assert_eq!(s.job_counts().await.unwrap().total(), 0);
        assert_eq!(s.oldest_queued().await.unwrap(), None);
    }
}
