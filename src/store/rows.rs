//! Rows as the database holds them, and their records: the one place where stored states are
//! parsed. A value that no state spells is `StoreError::Corrupt`.

use sqlx::FromRow;

use super::{AttemptRecord, EventRecord, JobRecord, Result, SecretRecord, StepRecord, StoreError};
use crate::domain::{AttemptOutcome, ErrorKind, JobStatus, StepStatus};

/// The columns of `EventRow`, in `job_events`.
pub(super) const EVENT_COLUMNS: &str = "at, type, attempt, worker, detail, retry_at, delay_ms";

/// `what` of `owner` read from the database is not one it can hold.
fn corrupt(what: &str, owner: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "{what} of {owner} is {value:?}, which no state spells"
    ))
}

/// A `jobs` row read with `JOB_COLUMNS`.
#[derive(Debug, FromRow)]
pub(super) struct JobRow {
    id: String,
    kind: String,
    status: String,
    inputs: String,
    username: Option<String>,
    namespace: Option<String>,
    summary: Option<String>,
    error: Option<String>,
    submitted_by: String,
    request_id: String,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    updated_at: i64,
    attempt: i64,
    run_at: i64,
    lease_owner: Option<String>,
    cancel_requested: bool,
    current_step: Option<String>,
}

impl JobRow {
    /// A row read by rusqlite with `JOB_COLUMNS`.
    pub(super) fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(JobRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            status: r.get(2)?,
            inputs: r.get(3)?,
            username: r.get(4)?,
            namespace: r.get(5)?,
            summary: r.get(6)?,
            error: r.get(7)?,
            submitted_by: r.get(8)?,
            request_id: r.get(9)?,
            created_at: r.get(10)?,
            started_at: r.get(11)?,
            finished_at: r.get(12)?,
            updated_at: r.get(13)?,
            attempt: r.get(14)?,
            run_at: r.get(15)?,
            lease_owner: r.get(16)?,
            cancel_requested: r.get(17)?,
            current_step: r.get(18)?,
        })
    }

    pub(super) fn record(self) -> Result<JobRecord> {
        let status = JobStatus::parse(&self.status)
            .ok_or_else(|| corrupt("the status", &format!("job {}", self.id), &self.status))?;
        Ok(JobRecord {
            id: self.id,
            kind: self.kind,
            status,
            inputs: self.inputs,
            username: self.username,
            namespace: self.namespace,
            summary: self.summary,
            error: self.error,
            submitted_by: self.submitted_by,
            request_id: self.request_id,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            updated_at: self.updated_at,
            attempt: self.attempt,
            run_at: self.run_at,
            lease_owner: self.lease_owner,
            cancel_requested: self.cancel_requested,
            current_step: self.current_step,
        })
    }
}

/// A `job_steps` row read with `STEP_COLUMNS`.
#[derive(Debug, FromRow)]
pub(super) struct StepRow {
    position: i64,
    name: String,
    status: String,
    attempts: i64,
    failures: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    exit_code: Option<i64>,
    output: Option<String>,
}

impl StepRow {
    /// A row read by rusqlite with `STEP_COLUMNS`.
    pub(super) fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(StepRow {
            position: r.get(0)?,
            name: r.get(1)?,
            status: r.get(2)?,
            attempts: r.get(3)?,
            failures: r.get(4)?,
            started_at: r.get(5)?,
            finished_at: r.get(6)?,
            exit_code: r.get(7)?,
            output: r.get(8)?,
        })
    }

    pub(super) fn record(self) -> Result<StepRecord> {
        let status = StepStatus::parse(&self.status)
            .ok_or_else(|| corrupt("the status", &format!("step {}", self.name), &self.status))?;
        Ok(StepRecord {
            position: self.position,
            name: self.name,
            status,
            attempts: self.attempts,
            failures: self.failures,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            output: self.output,
        })
    }
}

/// A `step_attempts` row read with `ATTEMPT_COLUMNS`.
#[derive(Debug, FromRow)]
pub(super) struct AttemptRow {
    id: i64,
    position: i64,
    step: String,
    attempt: i64,
    job_attempt: i64,
    worker: String,
    command: Option<String>,
    stdin_preview: Option<String>,
    outcome: Option<String>,
    error_kind: Option<String>,
    exit_code: Option<i64>,
    stdout: String,
    stderr: String,
    started_at: i64,
    finished_at: Option<i64>,
    duration_ms: Option<i64>,
}

impl AttemptRow {
    pub(super) fn record(self) -> Result<AttemptRecord> {
        let owner = || format!("attempt {}", self.id);
        // An attempt that has not ended has no outcome yet.
        let outcome = match self.outcome.as_deref() {
            None => AttemptOutcome::Running,
            Some(s) => AttemptOutcome::parse(s)
                .filter(|o| *o != AttemptOutcome::Running)
                .ok_or_else(|| corrupt("the outcome", &owner(), s))?,
        };
        let error_kind = match self.error_kind.as_deref() {
            None => None,
            Some(s) => {
                Some(ErrorKind::parse(s).ok_or_else(|| corrupt("the error kind", &owner(), s))?)
            }
        };
        Ok(AttemptRecord {
            id: self.id,
            position: self.position,
            step: self.step,
            attempt: self.attempt,
            job_attempt: self.job_attempt,
            worker: self.worker,
            command: self.command,
            stdin_preview: self.stdin_preview,
            outcome,
            error_kind,
            exit_code: self.exit_code,
            stdout: self.stdout,
            stderr: self.stderr,
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_ms: self.duration_ms,
        })
    }
}

/// A `job_events` row read with `EVENT_COLUMNS`.
#[derive(Debug, FromRow)]
pub(super) struct EventRow {
    at: i64,
    #[sqlx(rename = "type")]
    kind: String,
    attempt: Option<i64>,
    worker: Option<String>,
    detail: Option<String>,
    retry_at: Option<i64>,
    delay_ms: Option<i64>,
}

impl EventRow {
    pub(super) fn record(self) -> Result<EventRecord> {
        Ok(EventRecord {
            at: self.at,
            kind: self.kind,
            attempt: self.attempt,
            worker: self.worker,
            detail: self.detail,
            retry_at: self.retry_at,
            delay_ms: self.delay_ms,
        })
    }
}

/// A `job_secrets` row (`password, generated, expires_at`).
#[derive(Debug, FromRow)]
pub(super) struct SecretRow {
    password: Option<String>,
    generated: bool,
    expires_at: Option<i64>,
}

impl SecretRow {
    pub(super) fn record(self) -> Result<SecretRecord> {
        Ok(SecretRecord {
            password: self.password,
            generated: self.generated,
            expires_at: self.expires_at,
        })
    }
}

/// The records of `rows`, or the first row that is corrupt.
pub(super) fn records<R, T>(rows: Vec<R>, record: impl Fn(R) -> Result<T>) -> Result<Vec<T>> {
    rows.into_iter().map(record).collect()
}
