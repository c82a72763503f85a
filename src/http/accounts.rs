//! `GET /accounts/list`: a pass-through read of `everestctl accounts list`.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};

use super::openapi::{ErrorBody, ListingBody};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, AppState, extract};
use crate::passthrough::{self, PassthroughError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
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

#[utoipa::path(get, path = "/accounts/list", tag = "reads", summary = "Everest accounts (everestctl accounts list)",
    responses((status = 200, body = ListingBody), (status = 401, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
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
