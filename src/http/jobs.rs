//! `GET /jobs/{id}` and `GET /jobs/{id}/result`.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::openapi::{ErrorBody, JobResultBody, JobStatusBody};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::middleware::{Caller, RequestId};
use super::views::PasswordAccess;
use super::{ApiError, AppState, extract, views};
use crate::config::Role;
use crate::domain::JobStatus;
use crate::store::{CancelOutcome, JobRecord, RetryOutcome, StepRecord};

/// The longest a long-poll goes without reading its job again.
const REREAD: Duration = Duration::from_secs(2);

/// The longest `?wait=` accepted, in seconds.
const MAX_WAIT_SECONDS: u64 = 60;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(result))
        .routes(routes!(cancel))
        .routes(routes!(retry))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no job with id {id:?}"))
}

/// The job id in its canonical form; a path segment that is not a UUID names no job.
pub(super) fn job_id(id: &str) -> Result<String, ApiError> {
    let uuid = uuid::Uuid::parse_str(id).map_err(|_| not_found(id))?;
    Ok(uuid.to_string())
}

pub(super) async fn find(state: &AppState, id: &str) -> Result<JobRecord, ApiError> {
    let job = state.store.job(&job_id(id)?).await?;
    job.ok_or_else(|| not_found(id))
}

#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", summary = "A job's status and steps",
    params(("id" = String, Path, description = "job id (UUID)"),
           ("wait" = Option<u64>, Query, description = "long-poll up to this many seconds (0-60) for a change")),
    responses((status = 200, body = JobStatusBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn status(
    State(state): State<AppState>,
    extract::AppPath(id): extract::AppPath<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = extract::query(q.as_deref(), &["wait"])?;
    let wait = match params.get("wait") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= MAX_WAIT_SECONDS => Some(Duration::from_secs(n)),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "wait must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS}"
                )));
            }
        },
    };
    let Some(wait) = wait else {
        let (job, steps) = find_with_steps(&state, &id).await?;
        return Ok(Json(views::job_status(&job, &steps)).into_response());
    };
    // Subscribe before the first read so that no change between the read and the wait is missed.
    let mut changes = state.store.subscribe();
    let mut job = find(&state, &id).await?;
    let seen = (job.status, job.current_step.clone());
    let deadline = tokio::time::Instant::now() + wait;
    while !job.status.is_final() {
        // A notification can be lost (on PostgreSQL, while the listener reconnects): the job is
        // read again at least every REREAD, so a lost one delays the answer, never loses it.
        let next_read = deadline.min(tokio::time::Instant::now() + REREAD);
        match tokio::time::timeout_at(next_read, changes.recv()).await {
            Err(_) if next_read == deadline => break,
            Err(_) => job = find(&state, &id).await?,
            Ok(Ok(changed)) if changed != job.id => continue,
            // Our job changed, or notifications were missed: read again.
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => job = find(&state, &id).await?,
            Ok(Err(RecvError::Closed)) => break,
        }
        if (job.status, job.current_step.clone()) != seen {
            break;
        }
    }
    let steps = state.store.steps(&job.id).await?;
    Ok(Json(views::job_status(&job, &steps)).into_response())
}

/// The job and its steps, read together.
pub(super) async fn find_with_steps(
    state: &AppState,
    id: &str,
) -> Result<(JobRecord, Vec<StepRecord>), ApiError> {
    let job = state.store.job_with_steps(&job_id(id)?).await?;
    job.ok_or_else(|| not_found(id))
}

/// Answers 202 with the job's status body.
async fn accepted_status(state: &AppState, id: &str) -> Result<Response, ApiError> {
    let (job, steps) = find_with_steps(state, id).await?;
    Ok((StatusCode::ACCEPTED, Json(views::job_status(&job, &steps))).into_response())
}

#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs", summary = "Cancel a queued or running job", params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 202, body = JobStatusBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "already finished")))]
async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    extract::AppPath(id): extract::AppPath<String>,
) -> Result<Response, ApiError> {
    let id = cancel_job(&state, &caller, &id).await?;
    accepted_status(&state, &id).await
}

/// Cancels the job (at once when queued; a running one is flagged for its worker) as `caller`;
/// returns the job's id. `POST /jobs/{id}/cancel` and the dashboard.
pub(super) async fn cancel_job(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<String, ApiError> {
    let job = find(state, id).await?;
    match state.store.request_cancel(&job.id, &caller.name).await? {
        CancelOutcome::NotFound => Err(not_found(id)),
        CancelOutcome::AlreadyFinished(status) => Err(ApiError::AlreadyFinished { status }),
        CancelOutcome::Canceled => {
            let waited = u64::try_from(crate::store::now_ms() - job.created_at).unwrap_or(0);
            crate::telemetry::job_finished(
                &job.kind,
                JobStatus::Canceled,
                Duration::from_millis(waited),
            );
            Ok(job.id)
        }
        CancelOutcome::Requested => Ok(job.id),
    }
}

#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "jobs", summary = "Queue a failed or canceled job again", params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 202, body = JobStatusBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "not failed or canceled"), (status = 503, body = ErrorBody)))]
async fn retry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    extract::AppPath(id): extract::AppPath<String>,
) -> Result<Response, ApiError> {
    let id = retry_job(&state, &caller, &id).await?;
    accepted_status(&state, &id).await
}

/// Queues a failed or canceled job again as `caller`; returns the job's id.
/// `POST /jobs/{id}/retry` and the dashboard.
pub(super) async fn retry_job(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<String, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    let job = find(state, id).await?;
    match state.store.retry(&job.id, &caller.name).await? {
        RetryOutcome::NotFound => Err(not_found(id)),
        RetryOutcome::NotRetryable(status) if status == JobStatus::Succeeded => {
            Err(ApiError::AlreadyFinished { status })
        }
        RetryOutcome::NotRetryable(status) => Err(ApiError::NotFinished { status }),
        RetryOutcome::Requeued => {
            state.wake.notify_one();
            Ok(job.id)
        }
    }
}

#[utoipa::path(get, path = "/jobs/{id}/result", tag = "jobs", summary = "The outcome of a finished job", params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 200, body = JobResultBody,
               description = "Sent with `Cache-Control: no-store`. A generated password is shown to admin keys only, and each showing is recorded as a `credentials_read` event"),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "not finished yet")))]
async fn result(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(request_id): Extension<RequestId>,
    extract::AppPath(id): extract::AppPath<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut response = match job_result(&state, &caller, &request_id, &id, q.as_deref()).await {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    };
    // The body can carry a password: no cache (browser, proxy) may keep any answer of this route.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The result body of a finished job for `caller`; a generated password in it is recorded as
/// read (`credentials_read`) before it is returned. `GET /jobs/{id}/result` and the
/// dashboard's reveal.
pub(super) async fn job_result(
    state: &AppState,
    caller: &Caller,
    request_id: &RequestId,
    id: &str,
    query: Option<&str>,
) -> Result<Value, ApiError> {
    extract::query(query, &[])?;
    let job = find(state, id).await?;
    if !job.status.is_final() {
        return Err(ApiError::NotFinished { status: job.status });
    }
    let steps = state.store.steps(&job.id).await?;
    let last = state.store.last_attempts(&job.id).await?;
    let secret = state.store.secret(&job.id).await?;
    let access = match caller.role {
        Role::Admin => PasswordAccess::Shown,
        Role::ReadOnly => PasswordAccess::Withheld(WITHHELD_FROM_READ_ONLY),
    };
    let result = views::job_result(&job, &steps, &last, secret.as_ref(), access);
    if result.password_shown {
        // Recorded before the password leaves: if the audit cannot be written, the answer is 503
        // and the password is not shown.
        state
            .store
            .record_credentials_read(&job.id, &caller.name, &request_id.0)
            .await?;
    }
    Ok(result.body)
}

/// The `withheld` reason of a password a read-only key does not see.
pub(super) const WITHHELD_FROM_READ_ONLY: &str = "read-only key";
