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
use crate::store::rows::{self, AttemptRow, EVENT_COLUMNS, EventRow, JobRow};

/// A bound value of a built query.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    Int(i64),
    Text(String),
}

/// The terms of a built query and their arguments, numbering the placeholders.
#[derive(Default)]
struct Terms {
    terms: Vec<String>,
    args: Vec<Arg>,
}

impl Terms {
    /// Adds `sql`, whose placeholders are written `?`, with its arguments.
    fn push(&mut self, sql: &str, args: impl IntoIterator<Item = Arg>) {
        let mut numbered = String::new();
        let mut args = args.into_iter();
        for (i, part) in sql.split('?').enumerate() {
            if i > 0 {
                self.args
                    .push(args.next().expect("an argument per placeholder"));
                numbered.push_str(&format!("${}", self.args.len()));
            }
            numbered.push_str(part);
        }
        self.terms.push(numbered);
    }
}

/// The SQL and arguments of one page of the list: `limit + 1` rows are asked for, to know
/// whether another page follows.
fn list_query(filter: &JobFilter, after: Option<&Cursor>, limit: u32) -> (String, Vec<Arg>) {
    let mut q = Terms::default();
    let status = filter.status.map(|s| s.as_str().to_string());
    let equal = [
        ("status = ?", &status),
        ("kind = ?", &filter.kind),
        ("username = ?", &filter.username),
        ("namespace = ?", &filter.namespace),
        ("submitted_by = ?", &filter.submitted_by),
    ];
    for (term, value) in equal {
        if let Some(value) = value {
            q.push(term, [Arg::Text(value.clone())]);
        }
    }
    if let Some(t) = filter.created_after {
        q.push("created_at >= ?", [Arg::Int(t)]);
    }
    // Only the tighter of the two upper bounds is written, as on SQLite: the results are the
    // same, and the index range has one end.
    match (after, filter.created_before) {
        (Some(c), Some(before)) if before <= c.created_at => {
            q.push("created_at < ?", [Arg::Int(before)]);
        }
        (Some(c), _) => q.push(
            "(created_at, id) < (?, ?)",
            [Arg::Int(c.created_at), Arg::Text(c.id.clone())],
        ),
        (None, Some(before)) => q.push("created_at < ?", [Arg::Int(before)]),
        (None, None) => {}
    }
    let filter_sql = if q.terms.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", q.terms.join(" AND "))
    };
    q.args.push(Arg::Int(i64::from(limit) + 1));
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs{filter_sql} ORDER BY created_at DESC, id DESC LIMIT ${}",
        q.args.len()
    );
    (sql, q.args)
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
