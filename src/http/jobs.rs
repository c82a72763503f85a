//! `GET /jobs/{id}` and `GET /jobs/{id}/result`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use serde_json::Value;

use super::{ApiError, AppState, extract, views};
use crate::domain::JobStatus;
use crate::store::JobRecord;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs/{id}", get(status))
        .route("/jobs/{id}/result", get(result))
}

async fn find(state: &AppState, id: &str) -> Result<JobRecord, ApiError> {
    let not_found = || ApiError::NotFound(format!("no job with id {id:?}"));
    let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
    state
        .store
        .job(&id.to_string())
        .await?
        .ok_or_else(not_found)
}

async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    extract::query(q.as_deref(), &[])?;
    let job = find(&state, &id).await?;
    let steps = state.store.steps(&job.id).await?;
    Ok(Json(views::job_status(&job, &steps)))
}

async fn result(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    extract::query(q.as_deref(), &[])?;
    let job = find(&state, &id).await?;
    if !JobStatus::parse(&job.status).is_some_and(JobStatus::is_final) {
        return Err(ApiError::NotFinished { status: job.status });
    }
    let steps = state.store.steps(&job.id).await?;
    let last = state.store.last_attempts(&job.id).await?;
    let secret = state.store.secret(&job.id).await?;
    Ok(Json(views::job_result(
        &job,
        &steps,
        &last,
        secret.as_ref(),
    )))
}
