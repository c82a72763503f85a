//! `GET /accounts/list`: a pass-through read of `everestctl accounts list`.

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApiError, AppState, extract};
use crate::passthrough::{self, PassthroughError};

pub fn router() -> Router<AppState> {
    Router::new().route("/accounts/list", get(list))
}

impl From<PassthroughError> for ApiError {
    fn from(e: PassthroughError) -> Self {
        match e {
            PassthroughError::NotFound(m) => ApiError::CliNotFound(m),
            PassthroughError::Timeout(m) => ApiError::CliTimeout(m),
            PassthroughError::Failed(m) => ApiError::CliFailed(m),
        }
    }
}

async fn list(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    extract::query(q.as_deref(), &[])?;
    let listing = passthrough::accounts_list(&state.settings).await?;
    Ok(Json(
        json!({"data": listing.data, "source": listing.source}),
    ))
}
