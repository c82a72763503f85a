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

    /// Both reads are index reads: no table scan, and no sort.
    #[tokio::test]
    async fn counts_read_an_index_and_the_oldest_queued_job_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        for sql in [COUNTS_SQL, OLDEST_QUEUED_SQL] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .fetch_all(&s.pool)
                    .await
                    .unwrap();
            let text: Vec<&str> = plan.iter().map(|p| p.3.as_str()).collect();
            assert!(
                text.iter().all(|t| !t.starts_with("SCAN jobs ")
                    && *t != "SCAN jobs"
                    && !t.contains("TEMP B-TREE")),
                "{sql}: {text:?}"
            );
        }
        assert_eq!(s.job_counts().await.unwrap().total(), 0);
        assert_eq!(s.oldest_queued().await.unwrap(), None);
    }
}
