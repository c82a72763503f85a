//! The one error type of the API and its JSON envelope.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::{FieldError, JobStatus};
use crate::store::StoreError;

/// Every error the API answers with. 5xx bodies never carry internals; the cause is logged.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid admin key is required (X-Admin-Key or Authorization: Bearer)")]
    Unauthorized,
    /// A read-only key asked for a change.
    #[error(
        "the key {name:?} is read-only: it can use every GET route, but not submit jobs \
         (dry runs included), cancel or retry; use an admin key"
    )]
    Forbidden { name: String },
    /// Too many failed authentications from this client address.
    #[error("too many failed authentications from this address; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("{0}")]
    NotFound(String),
    #[error("the job has not finished yet")]
    NotFinished { status: JobStatus },
    /// A request that conflicts with the service's state or configuration.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("the job has already finished ({status})")]
    AlreadyFinished { status: JobStatus },
    #[error("this Idempotency-Key was used with a different request (job {job_id})")]
    IdempotencyConflict { job_id: String },
    /// The key was used before an upgrade, whose request hash could not be kept.
    #[error(
        "this Idempotency-Key was used before an upgrade of the service (job {job_id}); that \
         request cannot be verified, so the key cannot be reused: send a new key"
    )]
    IdempotencyUnverifiable { job_id: String },
    #[error("the request body is larger than 1 MiB")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    CliFailed(String),
    #[error("{0}")]
    CliNotFound(String),
    #[error("{0}")]
    CliTimeout(String),
    #[error("the service is shutting down; retry against another instance or after restart")]
    ShuttingDown,
    #[error("{0}")]
    NotReady(String),
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NotFinished { .. } => (StatusCode::CONFLICT, "not_finished"),
            ApiError::AlreadyFinished { .. } => (StatusCode::CONFLICT, "already_finished"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::IdempotencyConflict { .. } | ApiError::IdempotencyUnverifiable { .. } => {
                (StatusCode::CONFLICT, "idempotency_conflict")
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ApiError::CliFailed(_) => (StatusCode::BAD_GATEWAY, "cli_failed"),
            ApiError::CliNotFound(_) => (StatusCode::SERVICE_UNAVAILABLE, "cli_not_found"),
            ApiError::CliTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "cli_timeout"),
            ApiError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // Logged once here; the client only learns that the database is unavailable.
        tracing::error!(error = %e, "database error while serving a request");
        ApiError::NotReady("the database is unavailable; retry later".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut body = json!({"error": code, "detail": self.to_string()});
        match &self {
            ApiError::Validation(fields) => {
                body["fields"] = json!(fields);
                body["detail"] = json!(
                    fields
                        .iter()
                        .map(|f| format!("{}: {}", f.field, f.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            ApiError::NotFinished { status } | ApiError::AlreadyFinished { status } => {
                body["status"] = json!(status)
            }
            ApiError::IdempotencyConflict { job_id }
            | ApiError::IdempotencyUnverifiable { job_id } => body["job_id"] = json!(job_id),
            ApiError::RateLimited { retry_after } => {
                let retry_after = [(header::RETRY_AFTER, retry_after.to_string())];
                return (status, retry_after, Json(body)).into_response();
            }
            _ => {}
        }
        (status, Json(body)).into_response()
    }
}
