//! Audit reads: the job list (filters, newest first, keyset cursor) and a job's history.
//!
//! The list query is built from the filters that are set, as on SQLite: each equality filter
//! has an index ending in `(created_at, id)` (`jobs_*_created`), and a page is a backward range
//! read of that index that stops after `limit + 1` rows, with the cursor as a row comparison
//! `(created_at, id) < ($a, $b)` (an index bound; `created_at < $a OR (…)` would be a filter).
//! `(… IS NULL OR col = …)` terms would leave the planner no index to choose.
//! [`PgStore::explain_list_jobs`] shows the plan of exactly the text built here.

use sqlx::Arguments;
use sqlx::postgres::PgArguments;

use super::read::{ATTEMPT_COLUMNS, JOB_COLUMNS, read_job, snapshot};
use super::{Cursor, History, JobFilter, JobPage, PgStore, Result, StoreError};
use crate::store::history::{self, Arg};
use crate::store::rows::{self, AttemptRow, EVENT_COLUMNS, EventRow, JobRow};

/// The SQL and arguments of one page of the list (see [`crate::store::history::list_query`]),
/// its placeholders numbered `$1`, `$2`, … in order.
fn list_query(filter: &JobFilter, after: Option<&Cursor>, limit: u32) -> (String, Vec<Arg>) {
    let (sql, args) = history::list_query(JOB_COLUMNS, filter, after, limit);
    let mut numbered = String::with_capacity(sql.len() + 8);
    for (i, part) in sql.split('?').enumerate() {
        if i > 0 {
            numbered.push_str(&format!("${i}"));
        }
        numbered.push_str(part);
    }
    (numbered, args)
}

/// The arguments of a built query, for `query_*_with`.
fn arguments(args: &[Arg]) -> Result<PgArguments> {
    let mut out = PgArguments::default();
    for arg in args {
        match arg {
            Arg::Int(i) => out.add(*i),
            Arg::Text(s) => out.add(s.clone()),
        }
        .map_err(StoreError::Unavailable)?;
    }
    Ok(out)
}

impl PgStore {
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

    /// The plan of the query of [`PgStore::list_jobs`] for these arguments, run
    /// (`EXPLAIN ANALYZE`, without costs and timings), one line per row: what the tests check
    /// (an index range read, no sort, at most `limit + 1` rows read), and what to look at when
    /// a page is slow.
    pub async fn explain_list_jobs(
        &self,
        filter: &JobFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<String>> {
        let (sql, args) = list_query(filter, after, limit);
        let explain = format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {sql}");
        Ok(sqlx::query_scalar_with(&explain, arguments(&args)?)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The job, its events and its attempts (both oldest first), read in one snapshot so that
    /// they agree with each other; `None` for an unknown id.
    pub async fn history(&self, job_id: &str) -> Result<Option<History>> {
        let mut tx = snapshot(&self.pool).await?;
        let Some(job) = read_job(&mut tx, job_id).await? else {
            return Ok(None);
        };
        let events = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM job_events WHERE job_id = $1 ORDER BY id"
        ))
        .bind(job_id)
        .fetch_all(&mut *tx)
        .await?;
        let attempts = sqlx::query_as(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM step_attempts WHERE job_id = $1 ORDER BY id"
        ))
        .bind(job_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(History {
            job,
            events: rows::records(events, EventRow::record)?,
            attempts: rows::records(attempts, AttemptRow::record)?,
        }))
    }
}
