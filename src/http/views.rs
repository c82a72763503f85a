//! The JSON shapes of jobs, steps and results.

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::{self, JobStatus};
use crate::store::{AttemptRecord, JobRecord, SecretRecord, StepRecord, now_ms};

/// RFC 3339 in UTC with milliseconds and `Z`.
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn opt_time(ms: Option<i64>) -> Value {
    ms.map(rfc3339).map(Value::String).unwrap_or(Value::Null)
}

pub fn status_url(id: &str) -> String {
    format!("/jobs/{id}")
}

pub fn result_url(id: &str) -> String {
    format!("/jobs/{id}/result")
}

/// The answer to a submission (202, or 200 on an idempotent replay). Fields in alphabetical
/// order, as the `json!` object this replaced printed them.
#[derive(Debug, Serialize)]
pub struct Accepted<'a> {
    job_id: &'a str,
    kind: &'a str,
    result_url: String,
    status: JobStatus,
    status_url: String,
}

pub fn accepted<'a>(job_id: &'a str, kind: &'a str, status: JobStatus) -> Accepted<'a> {
    Accepted {
        job_id,
        kind,
        result_url: result_url(job_id),
        status,
        status_url: status_url(job_id),
    }
}

/// `GET /jobs/{id}` ([`job_status`]) and the items of `GET /jobs` ([`job_summary`], which add
/// `username` and `namespace`).
///
/// Typed rather than a `serde_json::Value`, so that a poll serializes straight from the records.
/// Fields are declared in alphabetical order, as a `Value` object prints them, so the bytes are
/// the same as when this was built with `json!`.
#[derive(Debug, Serialize)]
pub struct JobSummary<'a> {
    attempts: i64,
    created_at: String,
    current_step: Option<&'a str>,
    error: Option<Value>,
    finished_at: Option<String>,
    job_id: &'a str,
    kind: &'a str,
    next_attempt_at: Option<String>,
    request_id: &'a str,
    result_url: String,
    started_at: Option<String>,
    status: JobStatus,
    status_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<Vec<StepStatus<'a>>>,
    submitted_by: &'a str,
    summary: Option<&'a str>,
    updated_at: String,
}

/// One step of [`job_status`].
#[derive(Debug, Serialize)]
pub struct StepStatus<'a> {
    attempts: i64,
    exit_code: Option<i64>,
    finished_at: Option<String>,
    name: &'a str,
    started_at: Option<String>,
    status: domain::StepStatus,
}

/// `GET /jobs/{id}`: the summary with the steps.
pub fn job_status<'a>(job: &'a JobRecord, steps: &'a [StepRecord]) -> JobSummary<'a> {
    JobSummary {
        steps: Some(steps.iter().map(step_status).collect()),
        ..summary(job)
    }
}

/// The job status without its steps (the items of `GET /jobs`).
pub fn job_summary(job: &JobRecord) -> Value {
    serde_json::to_value(summary(job)).unwrap_or(Value::Null)
}

fn summary(job: &JobRecord) -> JobSummary<'_> {
    let waiting = job.status == JobStatus::Queued && job.run_at > now_ms();
    JobSummary {
        attempts: job.attempt,
        created_at: rfc3339(job.created_at),
        current_step: job.current_step.as_deref(),
        error: job
            .error
            .as_deref()
            .and_then(|e| serde_json::from_str::<Value>(e).ok()),
        finished_at: job.finished_at.map(rfc3339),
        job_id: &job.id,
        kind: &job.kind,
        next_attempt_at: waiting.then(|| rfc3339(job.run_at)),
        request_id: &job.request_id,
        result_url: result_url(&job.id),
        started_at: job.started_at.map(rfc3339),
        status: job.status,
        status_url: status_url(&job.id),
        steps: None,
        submitted_by: &job.submitted_by,
        summary: job.summary.as_deref(),
        updated_at: rfc3339(job.updated_at),
    }
}

fn step_status(s: &StepRecord) -> StepStatus<'_> {
    StepStatus {
        attempts: s.attempts,
        exit_code: s.exit_code,
        finished_at: s.finished_at.map(rfc3339),
        name: &s.name,
        started_at: s.started_at.map(rfc3339),
        status: s.status,
    }
}

/// One step of a result: its last attempt, plus step-specific output fields.
fn result_step(s: &StepRecord, last: Option<&AttemptRecord>) -> Value {
    let mut v = json!({
        "name": s.name,
        "status": s.status,
        "attempts": s.attempts,
        "command": last.and_then(|a| a.command.clone()),
        "exit_code": last.and_then(|a| a.exit_code),
        "stdout": last.map(|a| a.stdout.as_str()).unwrap_or_default(),
        "stderr": last.map(|a| a.stderr.as_str()).unwrap_or_default(),
        "started_at": opt_time(last.map(|a| a.started_at)),
        "finished_at": opt_time(last.and_then(|a| a.finished_at)),
        "duration_ms": last.and_then(|a| a.duration_ms),
    });
    if let Some(Value::Object(extra)) = s
        .output
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
    {
        for (k, val) in extra {
            v[k] = val;
        }
    }
    if s.name == "apply_resource_quota"
        && let Some(preview) = last.and_then(|a| a.stdin_preview.clone())
    {
        v["manifest_preview"] = json!(preview);
    }
    v
}

/// Whether a result may show a generated password to its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordAccess {
    Shown,
    /// Withheld, with the reason given in the result's `withheld` field.
    Withheld(&'static str),
}

/// The body of a result, and whether it carries a generated password (which is then audited).
#[derive(Debug)]
pub struct JobResult {
    pub body: Value,
    pub password_shown: bool,
}

/// `GET /jobs/{id}/result` of a finished job.
pub fn job_result(
    job: &JobRecord,
    steps: &[StepRecord],
    last: &[AttemptRecord],
    secret: Option<&SecretRecord>,
    access: PasswordAccess,
) -> JobResult {
    let steps_json: Vec<Value> = steps
        .iter()
        .map(|s| result_step(s, last.iter().find(|a| a.position == s.position)))
        .collect();
    let mut body = json!({
        "job_id": job.id,
        "kind": job.kind,
        "overall_status": job.status,
        "summary": job.summary,
        "error": job.error.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()),
        "inputs": serde_json::from_str::<Value>(&job.inputs).unwrap_or(Value::Null),
        "steps": steps_json,
    });
    let mut password_shown = false;
    if matches!(job.kind.as_str(), "bootstrap_user" | "set_password") {
        let (credentials, shown) = credentials(job, steps, secret, access);
        body["credentials"] = credentials;
        password_shown = shown;
    }
    JobResult {
        body,
        password_shown,
    }
}

/// Credentials are shown only when this job created the account; a password only when the
/// service generated it, it has not expired, and the caller may see it. Also says whether the
/// password is in the answer.
fn credentials(
    job: &JobRecord,
    steps: &[StepRecord],
    secret: Option<&SecretRecord>,
    access: PasswordAccess,
) -> (Value, bool) {
    // The password was set by this job: the account was created by it, or its password was set.
    let created = steps.iter().any(|s| {
        let output = || {
            s.output
                .as_deref()
                .and_then(|o| serde_json::from_str::<Value>(o).ok())
        };
        s.status == domain::StepStatus::Succeeded
            && (s.name == "set_password"
                || (s.name == "create_account" && output().is_some_and(|o| o["created"] == true)))
    });
    let (Some(username), true, Some(secret)) = (job.username.as_deref(), created, secret) else {
        return (Value::Null, false);
    };
    if !secret.generated {
        let body = json!({"username": username, "password": null, "generated": false});
        return (body, false);
    }
    match (&secret.password, access) {
        (Some(p), PasswordAccess::Shown) => (
            json!({"username": username, "password": p, "generated": true}),
            true,
        ),
        (Some(_), PasswordAccess::Withheld(reason)) => (
            json!({"username": username, "password": null, "generated": true, "withheld": reason}),
            false,
        ),
        (None, _) => (
            json!({"username": username, "password": null, "generated": true, "expired": true}),
            false,
        ),
    }
}
