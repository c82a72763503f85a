//! Turning a validated plan into a stored job: idempotency keys, dry runs and the 202.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::middleware::{Caller, RequestId};
use super::{ApiError, AppState, extract, views};
use crate::domain::{JobStatus, Plan};
use crate::store::{IdempotencySecret, NewJob, Submitted};

/// Who submits a job, and how: taken from the request before its body.
pub struct SubmitContext {
    pub caller: Caller,
    pub request_id: RequestId,
    pub headers: HeaderMap,
    pub route: String,
    pub dry_run: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for SubmitContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let dry_run = extract::flag(&extract::query(parts.uri.query(), &["dry_run"])?, "dry_run")?;
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthorized)?;
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .ok_or(ApiError::Internal)?;
        let route = format!("{} {}", parts.method, parts.uri.path());
        Ok(SubmitContext {
            caller,
            request_id,
            headers: parts.headers.clone(),
            route,
            dry_run,
        })
    }
}

/// Answers a validated plan: its preview for a dry run, else the stored job.
pub async fn accept(
    state: &AppState,
    ctx: SubmitContext,
    raw_body: &[u8],
    plan: Plan,
) -> Result<Response, ApiError> {
    if ctx.dry_run {
        return Ok(dry_run(&plan, crate::plan::preview(&plan, &state.settings)));
    }
    let sub = Submission {
        caller: &ctx.caller,
        request_id: &ctx.request_id,
        headers: &ctx.headers,
        route: &ctx.route,
        raw_body,
    };
    store_job(state, sub, plan).await
}

/// Who submitted, and how.
pub struct Submission<'a> {
    pub caller: &'a Caller,
    pub request_id: &'a RequestId,
    pub headers: &'a HeaderMap,
    pub route: &'a str,
    pub raw_body: &'a [u8],
}

/// The `Idempotency-Key` header: 1-255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(|k| Some(k.to_string())).ok_or_else(|| {
        ApiError::BadRequest("Idempotency-Key must be 1-255 visible ASCII characters".into())
    })
}

/// Keyed hash (HMAC-SHA256 with the database's secret) of the route and the body as JSON with
/// sorted keys, so formatting does not matter. The body may hold a password: without the key,
/// the stored hash cannot be used to test guesses of it.
fn request_hash(secret: &IdempotencySecret, route: &str, raw: &[u8]) -> String {
    let canonical = serde_json::from_slice::<Value>(raw)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let mut h = Hmac::<Sha256>::new_from_slice(secret.bytes()).expect("HMAC takes any key size");
    h.update(route.as_bytes());
    h.update(&[0]);
    h.update(canonical.as_bytes());
    hex::encode(h.finalize().into_bytes())
}

/// A job stored (or found again by its idempotency key).
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub kind: String,
    pub status: JobStatus,
    /// The same key and body were sent before: this is that job.
    pub replayed: bool,
}

/// Stores the job (answering 202 only after the commit) or resolves its idempotency key.
pub async fn store_job(
    state: &AppState,
    sub: Submission<'_>,
    plan: Plan,
) -> Result<Response, ApiError> {
    let stored = store(state, sub, plan).await?;
    let body = Json(views::accepted(&stored.id, &stored.kind, stored.status));
    let mut response = if stored.replayed {
        let mut response = body.into_response();
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        response
    } else {
        (StatusCode::ACCEPTED, body).into_response()
    };
    set_location(&mut response, &stored.id);
    Ok(response)
}

/// Stores the job, returning once it is committed, or resolves its idempotency key: what
/// `POST` of every job route and the dashboard's forms do.
pub async fn store(state: &AppState, sub: Submission<'_>, plan: Plan) -> Result<Stored, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    let key = idempotency_key(sub.headers)?;
    let job = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind: plan.kind.as_str().into(),
        inputs: plan.inputs.to_string(),
        username: plan.username.clone(),
        namespace: plan.namespace.clone(),
        steps: plan
            .steps()
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        submitted_by: sub.caller.name.clone(),
        request_id: sub.request_id.0.clone(),
        idempotency: key.map(|k| {
            let hash = request_hash(state.store.idempotency_secret(), sub.route, sub.raw_body);
            (k, hash)
        }),
        secret: plan
            .password
            .as_ref()
            .map(|p| (p.expose().to_string(), plan.password_generated)),
    };
    match state.store.submit(&job).await? {
        Submitted::Created(id) => {
            crate::telemetry::job_submitted(&job.kind);
            state.wake.notify_one();
            tracing::info!(job.id = %id, job.kind = %job.kind, submitted_by = %job.submitted_by, request_id = %job.request_id, "job accepted");
            Ok(Stored {
                id,
                kind: job.kind,
                status: JobStatus::Queued,
                replayed: false,
            })
        }
        Submitted::Replayed(id) => {
            let original = state.store.job(&id).await?.ok_or(ApiError::Internal)?;
            Ok(Stored {
                id,
                kind: original.kind,
                status: original.status,
                replayed: true,
            })
        }
        Submitted::Conflict(job_id) => Err(ApiError::IdempotencyConflict { job_id }),
        Submitted::Unverifiable(job_id) => Err(ApiError::IdempotencyUnverifiable { job_id }),
    }
}

fn set_location(response: &mut Response, id: &str) {
    if let Ok(v) = HeaderValue::from_str(&views::status_url(id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
}

/// The answer to `?dry_run=true`: the resolved inputs and the plan, nothing queued.
pub fn dry_run(plan: &Plan, steps: Vec<crate::plan::StepPreview>) -> Response {
    Json(
        json!({"dry_run": true, "kind": plan.kind.as_str(), "inputs": plan.inputs, "steps": steps}),
    )
    .into_response()
}
