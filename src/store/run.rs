//! What a worker writes about an attempt and its job: the shapes of the fenced writes
//! ([`Store::begin_attempt`](super::Store::begin_attempt), ...) and their outcomes.

use std::time::Duration;

use crate::domain::{AttemptOutcome, ErrorKind};

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct AttemptEnd {
    /// Any outcome but `Running`.
    pub outcome: AttemptOutcome,
    /// For failures.
    pub error_kind: Option<ErrorKind>,
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: i64,
}

/// What the attempt means for its step.
#[derive(Debug, Clone)]
pub enum StepEnd {
    /// Done; `output` is step-specific JSON.
    Succeeded {
        output: Option<String>,
    },
    /// Will run again; `counted` when the attempt counts against `MAX_ATTEMPTS`.
    Pending {
        counted: bool,
    },
    Failed,
    Canceled,
}

/// What the attempt means for its job.
#[derive(Debug, Clone)]
pub enum JobEnd {
    /// Go on with the next step under the same lease.
    Continue,
    /// Back to the queue until `delay` has passed.
    Retry {
        delay: Duration,
        reason: String,
    },
    Succeeded {
        summary: String,
    },
    /// `error` is the JSON of the job's error.
    Failed {
        error: String,
        summary: String,
    },
    /// Stopped on request; no further step runs.
    Canceled {
        summary: String,
    },
    /// Given back (shutdown): queued again, due at once, without an owner.
    Requeue {
        reason: String,
    },
}

/// A step attempt about to start.
#[derive(Debug, Clone)]
pub struct AttemptStart {
    pub position: i64,
    pub step: String,
    /// The command as recorded (redacted).
    pub command: String,
    pub stdin_preview: Option<String>,
    /// The job's summary while the step runs.
    pub summary: String,
}

/// What [`Store::begin_attempt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// The locks are taken and the attempt is recorded with this id.
    Attempt(i64),
    /// One of the locks is held by this other job; nothing was written.
    Busy { name: String, holder: String },
    /// The lease was lost; nothing was written.
    LeaseLost,
}

/// How an attempt ended, and what that means for its step and its job.
#[derive(Debug, Clone)]
pub struct AttemptEnding {
    /// The attempt's id (from its start).
    pub id: i64,
    pub attempt: AttemptEnd,
    pub step: StepEnd,
    pub job: JobEnd,
}

/// What to do in the same transaction after an attempt ended and its job goes on
/// ([`JobEnd::Continue`]): saves the next step a transaction of its own.
#[derive(Debug, Clone)]
pub enum Then {
    Nothing,
    /// Take these locks and start this attempt (as [`Store::begin_attempt`]).
    Start {
        start: AttemptStart,
        locks: Vec<String>,
        lock_for: Duration,
    },
    /// Record this whole attempt, which runs nothing (as [`Store::record_attempt`]).
    Record {
        start: AttemptStart,
        ending: Box<(AttemptEnd, StepEnd, JobEnd)>,
    },
}

/// What [`Store::finish_attempt_then`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// The lease was lost; nothing was written.
    LeaseLost,
    /// The attempt's end is recorded; nothing more was asked (or its job does not go on).
    Ended,
    /// And the next attempt started with this id.
    Started(i64),
    /// And the next attempt did not start: this lock is held by another job.
    Busy { name: String, holder: String },
    /// And the next (empty) attempt is recorded.
    Recorded,
}

/// `create_account attempt 2: failed (exit code 1, transient)`: the detail of a
/// `step_finished` event, the same on every backend.
pub(super) fn step_finished_detail(step: &str, step_attempt: i64, end: &AttemptEnd) -> String {
    let exit = end
        .exit_code
        .map_or_else(|| "no exit code".to_string(), |c| format!("exit code {c}"));
    match &end.error_kind {
        Some(kind) => format!(
            "{step} attempt {step_attempt}: {} ({exit}, {kind})",
            end.outcome
        ),
        None => format!("{step} attempt {step_attempt}: {} ({exit})", end.outcome),
    }
}
