//! Audit reads: the job list (filters, newest first, keyset cursor) and a job's full history.
//!
//! The list query is built from the filters that are set, so that SQLite can use the index of
//! the filter (see `migrations/sqlite/0003_history_indexes.sql`); `(? IS NULL OR col = ?)` terms would
//! defeat them. `plan_tests` runs `EXPLAIN QUERY PLAN` on exactly the text built here.

use sqlx::Arguments;
use sqlx::sqlite::SqliteArguments;

use super::read::{ATTEMPT_COLUMNS, JOB_COLUMNS, JOB_SQL};
use super::{Cursor, History, JobFilter, JobPage, Result, SqliteStore, StoreError};
use crate::store::history::{self, Arg};
use crate::store::rows::{self, AttemptRow, EVENT_COLUMNS, EventRow, JobRow};

/// The SQL and arguments of one page of the list (see [`crate::store::history::list_query`]).
pub(super) fn list_query(
    filter: &JobFilter,
    after: Option<&Cursor>,
    limit: u32,
) -> (String, Vec<Arg>) {
    history::list_query(JOB_COLUMNS, filter, after, limit)
}

/// The events of job `?`, oldest first.
pub(super) fn events_sql() -> String {
    format!("SELECT {EVENT_COLUMNS} FROM job_events WHERE job_id = ? ORDER BY id")
}

/// The attempts of job `?`, oldest first.
pub(super) fn attempts_sql() -> String {
    format!("SELECT {ATTEMPT_COLUMNS} FROM step_attempts WHERE job_id = ? ORDER BY id")
}

/// The arguments of a built query, for `query_*_with`.
pub(super) fn arguments(args: &[Arg]) -> Result<SqliteArguments<'static>> {
    let mut out = SqliteArguments::default();
    for arg in args {
        match arg {
            Arg::Int(i) => out.add(*i),
            Arg::Text(s) => out.add(s.clone()),
        }
        .map_err(StoreError::Unavailable)?;
    }
    Ok(out)
}

impl SqliteStore {
    /// One page of jobs matching `filter`, newest first (ties by id, descending), starting
    /// after `after`; at most `limit` jobs.
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<JobPage> {
        let (sql, args) = list_query(filter, after, limit);
        let rows: Vec<JobRow> = sqlx::query_as_with(&sql, arguments(&args)?)
            .fetch_all(&self.pool)
            .await?;
        let mut jobs = rows::records(rows, JobRow::record)?;
        let more = jobs.len() > limit as usize;
        jobs.truncate(limit as usize);
        let next = match jobs.last() {
            Some(last) if more => Some(Cursor {
                created_at: last.created_at,
                id: last.id.clone(),
            }),
            _ => None,
        };
        Ok(JobPage { jobs, next })
    }

    /// The job, its events and its attempts, read in one transaction (so they agree with each
    /// other); `None` for an unknown id.
    pub async fn history(&self, job_id: &str) -> Result<Option<History>> {
        let mut tx = self.pool.begin().await?;
        let job: Option<JobRow> = sqlx::query_as(&JOB_SQL)
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(job) = job else {
            return Ok(None);
        };
        let events = sqlx::query_as(&events_sql())
            .bind(job_id)
            .fetch_all(&mut *tx)
            .await?;
        let attempts = sqlx::query_as(&attempts_sql())
            .bind(job_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(History {
            job: job.record()?,
            events: rows::records(events, EventRow::record)?,
            attempts: rows::records(attempts, AttemptRow::record)?,
        }))
    }
}

#[cfg(test)]
mod plan_tests;
#[cfg(test)]
pub(super) mod tests;
