//! `POST /bootstrap/users`.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};

use super::extract::{self, AppJson};
use super::middleware::{Caller, RequestId};
use super::submit::{self, Submission};
use super::{ApiError, AppState};
use crate::domain::{BootstrapInput, BootstrapRequest};

pub fn router() -> Router<AppState> {
    Router::new().route("/bootstrap/users", post(bootstrap))
}

async fn bootstrap(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(request_id): Extension<RequestId>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: AppJson<BootstrapRequest>,
) -> Result<Response, ApiError> {
    let dry = extract::flag(&extract::query(q.as_deref(), &["dry_run"])?, "dry_run")?;
    let plan = body
        .value
        .validate(&state.rules)
        .map_err(ApiError::Validation)?;
    if dry {
        let input: BootstrapInput =
            serde_json::from_value(plan.inputs.clone()).map_err(|_| ApiError::Internal)?;
        return Ok(submit::dry_run(
            &plan,
            crate::plan::preview_bootstrap(&input, &state.settings),
        ));
    }
    let sub = Submission {
        caller: &caller,
        request_id: &request_id,
        headers: &headers,
        route: "POST /bootstrap/users",
        raw_body: &body.raw,
    };
    submit::store_job(&state, sub, plan).await
}
