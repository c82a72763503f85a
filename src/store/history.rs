//! The shapes of the audit reads: the job list's filters, cursor and pages, and a job's
//! history.

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
