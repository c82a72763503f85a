//! `POST /bootstrap/users`.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;

use super::extract::AppJson;
use super::submit::{self, SubmitContext};
use super::{ApiError, AppState};
use crate::domain::BootstrapRequest;

pub fn router() -> Router<AppState> {
    Router::new().route("/bootstrap/users", post(bootstrap))
}

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
