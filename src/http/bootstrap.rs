//! `POST /bootstrap/users`.

use axum::extract::State;
use axum::response::Response;

use super::openapi::{DryRunBody, ErrorBody, JobAccepted};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::AppJson;
use super::submit::{self, SubmitContext};
use super::{ApiError, AppState};
use crate::domain::BootstrapRequest;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(bootstrap))
}

#[utoipa::path(post, path = "/bootstrap/users", tag = "jobs", summary = "Bootstrap a tenant: account, namespace, quota, RBAC", request_body = BootstrapRequest,
    params(("dry_run" = Option<bool>, Query, description = "validate and return the plan without queuing anything"),
           ("Idempotency-Key" = Option<String>, Header, description = "the same key with the same body returns the original job")),
    responses((status = 202, body = JobAccepted, description = "stored and queued"),
              (status = 200, body = DryRunBody, description = "a dry run, or (as JobAccepted) an idempotent replay"),
              (status = 400, body = ErrorBody, description = "malformed JSON or query"),
              (status = 401, body = ErrorBody), (status = 409, body = ErrorBody, description = "Idempotency-Key used with another body"),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "validation failed; nothing was queued"),
              (status = 503, body = ErrorBody, description = "shutting down, or the database is unavailable")))]
async fn bootstrap(
    State(state): State<AppState>,
    ctx: SubmitContext,
    body: AppJson<BootstrapRequest>,
) -> Result<Response, ApiError> {
    let plan = body
        .value
        .validate(&state.rules)
        .map_err(ApiError::Validation)?;
    submit::accept(&state, ctx, &body.raw, plan).await
}
