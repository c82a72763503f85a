//! Records as the store returns them, and the shape of a new job. Backend-neutral: states are
//! parsed once, where rows are read (see `rows`).

use super::Lease;
use crate::domain::{AttemptOutcome, ErrorKind, JobStatus, StepStatus};

/// A job to insert: everything validation produced, plus who asked.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub kind: String,
    pub inputs: String,
    pub username: Option<String>,
    pub namespace: Option<String>,
    pub steps: Vec<String>,
    pub submitted_by: String,
    pub request_id: String,
    /// `(key, keyed hash of the request)` when the client sent an `Idempotency-Key`; the key is
    /// scoped to `submitted_by`.
    pub idempotency: Option<(String, String)>,
    /// `(password, generated)` when the job sets a password.
    pub secret: Option<(String, bool)>,
}

/// A job.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: String,
    pub kind: String,
    pub status: JobStatus,
    pub inputs: String,
    pub username: Option<String>,
    pub namespace: Option<String>,
    pub summary: Option<String>,
    pub error: Option<String>,
    pub submitted_by: String,
    pub request_id: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
    pub attempt: i64,
    pub run_at: i64,
    pub lease_owner: Option<String>,
    pub cancel_requested: bool,
    pub current_step: Option<String>,
}

/// One step of a job.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub position: i64,
    pub name: String,
    pub status: StepStatus,
    pub attempts: i64,
    pub failures: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub output: Option<String>,
}

/// One attempt of a step.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub id: i64,
    pub position: i64,
    pub step: String,
    pub attempt: i64,
    pub job_attempt: i64,
    pub worker: String,
    pub command: Option<String>,
    pub stdin_preview: Option<String>,
    pub outcome: AttemptOutcome,
    pub error_kind: Option<ErrorKind>,
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
}

/// One audit event of a job.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub at: i64,
    pub kind: String,
    pub attempt: Option<i64>,
    pub worker: Option<String>,
    pub detail: Option<String>,
    /// `retry_scheduled` only: when the retry is due, ms since the epoch.
    pub retry_at: Option<i64>,
    /// `retry_scheduled` only: the delay before the retry.
    pub delay_ms: Option<i64>,
}

/// The secret of a job.
#[derive(Debug, Clone)]
pub struct SecretRecord {
    pub password: Option<String>,
    pub generated: bool,
    pub expires_at: Option<i64>,
}

/// A job this worker now holds the lease of.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub lease: Lease,
    pub job: JobRecord,
    pub steps: Vec<StepRecord>,
    /// The password the job sets, if it has one and it has not expired.
    pub password: Option<String>,
    /// The claim took the job over from an owner whose lease had expired.
    pub taken_over: bool,
    /// Commands of that owner's unfinished attempts, which may still run (empty unless
    /// `taken_over`).
    pub left_running: Vec<RecordedCommand>,
}

/// A command recorded as started by an attempt that did not end (see migration 0005).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCommand {
    pub job_id: String,
    /// The worker that started it (`<host>:<pid>:<random>`).
    pub worker: String,
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` when it started.
    pub start_time: u64,
}
