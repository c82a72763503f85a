//! `POST /bootstrap/users`.

use axum::extract::State;
use axum::response::Response;

use super::openapi::{SubmitHeaders, SubmitQuery, SubmitResponses};
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
    params(SubmitQuery, SubmitHeaders), responses(SubmitResponses))]
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
