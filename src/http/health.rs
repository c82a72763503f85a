//! `GET /healthz` (the process serves) and `GET /readyz` (it can do its work).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::AppState;
use crate::exec;

/// `GET /metrics` in Prometheus text format; queue gauges are sampled at each scrape.
pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.store.queue_counts().await {
        Ok((queued, running)) => crate::telemetry::job_counts(queued, running),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count jobs"),
    }
    let headers = [(
        axum::http::header::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8",
    )];
    (headers, crate::telemetry::render()).into_response()
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Checks the database and both binaries on every call.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_shutting_down() {
        let body = json!({"error": "shutting_down", "detail": "the service is shutting down"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let mut checks = Map::new();
    let mut failing = Vec::new();
    match state.store.ping().await {
        Ok(()) => {
            checks.insert("database".into(), json!("ok"));
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            checks.insert("database".into(), json!("unavailable"));
            failing.push("database");
        }
    }
    for (name, bin) in [
        ("everestctl", &state.settings.everestctl_bin),
        ("kubectl", &state.settings.kubectl_bin),
    ] {
        match exec::resolve_binary(bin) {
            Ok(path) => checks.insert(name.into(), json!(format!("ok: {}", path.display()))),
            Err(e) => {
                failing.push(name);
                checks.insert(name.into(), json!(e.to_string()))
            }
        };
    }
    if failing.is_empty() {
        return Json(json!({"status": "ready", "checks": checks})).into_response();
    }
    let detail = format!("failing checks: {}", failing.join(", "));
    let body = json!({"error": "not_ready", "detail": detail, "checks": checks});
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
