//! Retention: deleting old finished jobs in small batches, and giving the space back.
//!
//! Each batch is one short write transaction, so submissions and workers wait at most for
//! one batch; the caller (`crate::retention`) pauses between batches.

use super::{Result, SqliteStore, Write};

/// Deletes the oldest finished jobs that finished before `?1`, at most `?2` of them. Steps,
/// attempts, events and secrets go with them (`ON DELETE CASCADE`). `INDEXED BY` pins the
/// partial index of finished jobs: without statistics SQLite would rather read every finished
/// job through `jobs_status_created` and sort them.
pub(super) const PRUNE_SQL: &str = "DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs INDEXED BY jobs_prunable
    WHERE status IN ('succeeded', 'failed', 'canceled') AND finished_at < ?1
    ORDER BY finished_at LIMIT ?2)";

impl SqliteStore {
    /// Deletes up to `batch` jobs that finished (succeeded, failed or canceled) before
    /// `cutoff_ms`, oldest first, with their steps, attempts, events and secret, in one
    /// transaction. Queued and running jobs are never deleted, however old. Returns how many
    /// jobs were deleted: fewer than `batch` means that none is left.
    pub async fn prune_finished_before(&self, cutoff_ms: i64, batch: u32) -> Result<u64> {
        self.write(move |conn| {
            let done = conn
                .prepare_cached(PRUNE_SQL)?
                .execute(rusqlite::params![cutoff_ms, i64::from(batch)])?;
            Ok(Write::Keep(done as u64))
        })
        .await
    }

    /// Returns up to `pages` free pages of the database file to the file system
    /// (`PRAGMA incremental_vacuum`; the database is created with `auto_vacuum = INCREMENTAL`).
    /// Returns the number of free pages left.
    pub async fn reclaim_space(&self, pages: u32) -> Result<i64> {
        self.write(move |conn| {
            // The statement gives back one page per step: step it to completion.
            let mut vacuum = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
            let mut steps = vacuum.query([])?;
            while steps.next()?.is_some() {}
            drop(steps);
            let left = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            Ok(Write::Keep(left))
        })
        .await
    }
}

#[cfg(test)]
mod tests;
