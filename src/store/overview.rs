//! What the dashboard's overview reads: how many jobs there are of each status and kind, and
//! the queued job that has waited the longest.

use super::{Result, StoreError};
use crate::domain::JobStatus;

/// Jobs counted by status and by kind, read in one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Every status, in [`JobStatus::ALL`] order, with 0 for a status no job has.
    pub by_status: Vec<(JobStatus, i64)>,
    /// The kinds that jobs have, by name.
    pub by_kind: Vec<(String, i64)>,
}

impl JobCounts {
    /// How many jobs have `status`.
    pub fn status(&self, status: JobStatus) -> i64 {
        self.by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    /// Every job.
    pub fn total(&self) -> i64 {
        self.by_status.iter().map(|(_, n)| n).sum()
    }

    /// Builds the counts from rows `(group, value, count)`, where `group` is `status` or
    /// `kind` (both backends count in this shape).
    pub(super) fn from_rows(rows: Vec<(String, String, i64)>) -> Result<Self> {
        let mut by_status: Vec<(JobStatus, i64)> = JobStatus::ALL.iter().map(|s| (*s, 0)).collect();
        let mut by_kind = Vec::new();
        for (group, value, count) in rows {
            if group == "kind" {
                by_kind.push((value, count));
                continue;
            }
            let status = JobStatus::parse(&value).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "a job's status is {value:?}, which no state spells"
                ))
            })?;
            if let Some(slot) = by_status.iter_mut().find(|(s, _)| *s == status) {
                slot.1 = count;
            }
        }
        by_kind.sort();
        Ok(JobCounts { by_status, by_kind })
    }
}

/// The queued job created first: `(id, created_at)`.
pub type OldestQueued = Option<(String, i64)>;
