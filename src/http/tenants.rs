//! The jobs that change an existing tenant: password, resources, operators, suspension,
//! resumption and deletion; and `GET /namespaces`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::openapi::{ErrorBody, ListingBody, SubmitHeaders, SubmitQuery, SubmitResponses};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{self, AppJson};
use super::submit::{self, SubmitContext};
use super::{ApiError, AppState, plans};
use crate::domain::{
    AddOperatorsRequest, DeleteUserRequest, SetPasswordRequest, UpdateResourcesRequest, UserRequest,
};
use crate::passthrough;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(set_password))
        .routes(routes!(suspend))
        .routes(routes!(resume))
        .routes(routes!(delete))
        .routes(routes!(update_resources))
        .routes(routes!(add_operators))
        .routes(routes!(namespaces))
}

#[utoipa::path(post, path = "/accounts/password", tag = "tenants", summary = "Set an account's password", request_body = SetPasswordRequest,
    params(SubmitQuery, SubmitHeaders), responses(SubmitResponses))]
async fn set_password(
    State(state): State<AppState>,
    ctx: SubmitContext,
    body: AppJson<SetPasswordRequest>,
) -> Result<Response, ApiError> {
    let plan = body.value.validate().map_err(ApiError::Validation)?;
    submit::accept(&state, ctx, &body.raw, plan).await
}

#[utoipa::path(post, path = "/namespaces/resources", tag = "tenants", summary = "Re-apply a namespace's quota and limits", request_body = UpdateResourcesRequest,
    params(SubmitQuery, SubmitHeaders), responses(SubmitResponses))]
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

#[utoipa::path(post, path = "/namespaces/operators", tag = "tenants", summary = "Add database operators to a namespace", request_body = AddOperatorsRequest,
    params(SubmitQuery, SubmitHeaders), responses(SubmitResponses))]
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

#[utoipa::path(post, path = "/accounts/suspend", tag = "tenants", summary = "Suspend a user (removes its RBAC bindings)", request_body = UserRequest,
    params(SubmitQuery, SubmitHeaders), responses(SubmitResponses))]
async fn suspend(
    State(state): State<AppState>,
    ctx: SubmitContext,
    body: AppJson<UserRequest>,
) -> Result<Response, ApiError> {
    let plan = plans::suspend(&state, body.value)?;
    submit::accept(&state, ctx, &body.raw, plan).await
}

#[utoipa::path(post, path = "/accounts/resume", tag = "tenants", summary = "Resume a user (restores what the latest suspension removed)", request_body = UserRequest,
    params(SubmitQuery, SubmitHeaders), responses(SubmitResponses))]
async fn resume(
    State(state): State<AppState>,
    ctx: SubmitContext,
    body: AppJson<UserRequest>,
) -> Result<Response, ApiError> {
    let plan = plans::resume(&state, body.value).await?;
    submit::accept(&state, ctx, &body.raw, plan).await
}

#[utoipa::path(post, path = "/accounts/delete", tag = "tenants", summary = "Delete a tenant: namespace, RBAC, account", request_body = DeleteUserRequest,
    params(SubmitQuery, SubmitHeaders), responses(SubmitResponses))]
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

#[utoipa::path(get, path = "/namespaces", tag = "reads", summary = "Namespaces managed by Everest",
    responses((status = 200, body = ListingBody), (status = 401, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
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
