//! The jobs that change an existing tenant: password, resources, operators, suspension,
//! resumption and deletion; and `GET /namespaces`.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::extract::{self, AppJson};
use super::submit::{self, SubmitContext};
use super::{ApiError, AppState};
use crate::config::RbacMode;
use crate::domain::{
    AddOperatorsRequest, DeleteUserRequest, SetPasswordRequest, UpdateResourcesRequest,
    UserRequest, resume_plan,
};
use crate::passthrough;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/accounts/password", post(set_password))
        .route("/accounts/suspend", post(suspend))
        .route("/accounts/resume", post(resume))
        .route("/accounts/delete", post(delete))
        .route("/namespaces/resources", post(update_resources))
        .route("/namespaces/operators", post(add_operators))
        .route("/namespaces", get(namespaces))
}

async fn set_password(
    State(state): State<AppState>,
    ctx: SubmitContext,
    body: AppJson<SetPasswordRequest>,
) -> Result<Response, ApiError> {
    let plan = body.value.validate().map_err(ApiError::Validation)?;
    submit::accept(&state, ctx, &body.raw, plan).await
}

async fn update_resources(
    State(state): State<AppState>,
    ctx: SubmitContext,
    body: AppJson<UpdateResourcesRequest>,
) -> Result<Response, ApiError> {
    let plan = body
        .value
        .validate(&state.rules)
        .map_err(ApiError::Validation)?;
    submit::accept(&state, ctx, &body.raw, plan).await
}

async fn add_operators(
    State(state): State<AppState>,
    ctx: SubmitContext,
    body: AppJson<AddOperatorsRequest>,
) -> Result<Response, ApiError> {
    let plan = body
        .value
        .validate(&state.rules)
        .map_err(ApiError::Validation)?;
    submit::accept(&state, ctx, &body.raw, plan).await
}

/// Suspension and resumption only exist as RBAC edits (Everest has no CLI to disable an
/// account), so they are refused up front when this service does not edit the RBAC ConfigMap.
fn require_rbac_configmap(state: &AppState, what: &str) -> Result<(), ApiError> {
    if state.settings.rbac == RbacMode::ConfigMap {
        return Ok(());
    }
    Err(ApiError::Conflict {
        code: "rbac_unavailable",
        detail: format!(
            "{what} works through Everest RBAC and needs RBAC_MODE=configmap (without EVEREST_RBAC_APPLY_CMD)"
        ),
    })
}

async fn suspend(
    State(state): State<AppState>,
    ctx: SubmitContext,
    body: AppJson<UserRequest>,
) -> Result<Response, ApiError> {
    let plan = body.value.suspend().map_err(ApiError::Validation)?;
    require_rbac_configmap(&state, "suspending a user")?;
    submit::accept(&state, ctx, &body.raw, plan).await
}

async fn resume(
    State(state): State<AppState>,
    ctx: SubmitContext,
    body: AppJson<UserRequest>,
) -> Result<Response, ApiError> {
    let username = body.value.username().map_err(ApiError::Validation)?;
    require_rbac_configmap(&state, "resuming a user")?;
    let Some((suspend_job, lines)) = state.store.latest_suspension(username.as_str()).await? else {
        return Err(ApiError::Conflict {
            code: "not_suspended",
            detail: format!(
                "no successful suspension of {} to resume",
                username.as_str()
            ),
        });
    };
    submit::accept(
        &state,
        ctx,
        &body.raw,
        resume_plan(&username, lines, suspend_job),
    )
    .await
}

async fn delete(
    State(state): State<AppState>,
    ctx: SubmitContext,
    body: AppJson<DeleteUserRequest>,
) -> Result<Response, ApiError> {
    let plan = body
        .value
        .validate(&state.rules)
        .map_err(ApiError::Validation)?;
    submit::accept(&state, ctx, &body.raw, plan).await
}

async fn namespaces(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    extract::query(q.as_deref(), &[])?;
    let listing = passthrough::managed_namespaces(&state.settings).await?;
    Ok(Json(
        json!({"data": listing.data, "source": listing.source}),
    ))
}
