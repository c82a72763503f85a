//! The shapes of the audit reads: the job list's filters, cursor and pages, and a job's
//! history; and the job list's query, built once for both backends (`list_query`).

use super::{AttemptRecord, EventRecord, JobRecord};
use crate::domain::JobStatus;

/// Filters of the job list; `None` means "any". Values are compared exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub kind: Option<String>,
    pub username: Option<String>,
    pub namespace: Option<String>,
    pub submitted_by: Option<String>,
    /// Inclusive lower bound of `created_at`, ms since the epoch.
    pub created_after: Option<i64>,
    /// Exclusive upper bound of `created_at`, ms since the epoch.
    pub created_before: Option<i64>,
}

/// A position in the list (the last job of a page): the next page starts with the job that
/// comes right after it, in the order `created_at DESC, id DESC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: String,
}

/// One page of the job list.
#[derive(Debug, Clone)]
pub struct JobPage {
    pub jobs: Vec<JobRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Everything recorded about one job, read in one snapshot.
#[derive(Debug, Clone)]
pub struct History {
    pub job: JobRecord,
    /// Oldest first.
    pub events: Vec<EventRecord>,
    /// Every attempt of every step, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// A bound value of a built query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Arg {
    Int(i64),
    Text(String),
}

/// The SQL (placeholders written `?`, in order) and arguments of one page of the list, selecting
/// `columns`: `limit + 1` rows are asked for, to know whether another page follows. Only the
/// filters that are set become terms, so that each backend can range the index of the filter;
/// `(? IS NULL OR col = ?)` terms would defeat them.
pub(super) fn list_query(
    columns: &str,
    filter: &JobFilter,
    after: Option<&Cursor>,
    limit: u32,
) -> (String, Vec<Arg>) {
    let mut terms: Vec<&str> = Vec::new();
    let mut args = Vec::new();
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
            terms.push(term);
            args.push(Arg::Text(value.clone()));
        }
    }
    if let Some(t) = filter.created_after {
        terms.push("created_at >= ?");
        args.push(Arg::Int(t));
    }
    // Only the tighter of the two upper bounds is written: given both, a planner ranges the
    // index on one and merely filters on the other, which may read far more rows than one page.
    match (after, filter.created_before) {
        (Some(c), Some(before)) if before <= c.created_at => {
            terms.push("created_at < ?");
            args.push(Arg::Int(before));
        }
        (Some(c), _) => {
            terms.push("(created_at, id) < (?, ?)");
            args.push(Arg::Int(c.created_at));
            args.push(Arg::Text(c.id.clone()));
        }
        (None, Some(before)) => {
            terms.push("created_at < ?");
            args.push(Arg::Int(before));
        }
        (None, None) => {}
    }
    let filter_sql = if terms.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", terms.join(" AND "))
    };
    args.push(Arg::Int(i64::from(limit) + 1));
    let sql =
        format!("SELECT {columns} FROM jobs{filter_sql} ORDER BY created_at DESC, id DESC LIMIT ?");
    (sql, args)
}
