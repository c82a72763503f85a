//! `GET /healthz` (the process serves) and `GET /readyz` (it can do its work).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::openapi::{ErrorBody, HealthBody};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::exec;
use crate::store::StoreError;

/// `GET /metrics` in Prometheus text format; queue gauges are sampled at each scrape.
pub fn metrics_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
              (status = 401, body = ErrorBody, description = "unless METRICS_PUBLIC is set")))]
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

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Liveness", security(),
    responses((status = 200, body = HealthBody)))]
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// How long the readiness check waits for the database.
const DATABASE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Checks the database and both binaries on every call. Each check says `ok` or what failed,
/// never a path.
#[utoipa::path(get, path = "/readyz", tag = "operations", summary = "Readiness: database and both CLIs", security(),
    responses((status = 200, body = HealthBody), (status = 503, body = ErrorBody, description = "not ready or shutting down")))]
async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_shutting_down() {
        let body = json!({"error": "shutting_down", "detail": "the service is shutting down"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let Readiness { checks, failing } = readiness(&state).await;
    if failing.is_empty() {
        return Json(json!({"status": "ready", "checks": checks})).into_response();
    }
    let detail = format!("failing checks: {}", failing.join(", "));
    let body = json!({"error": "not_ready", "detail": detail, "checks": checks});
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// What `/readyz` checks: each check `ok` or what failed (never a path), and the failing ones.
pub(super) struct Readiness {
    pub checks: Map<String, Value>,
    pub failing: Vec<&'static str>,
}

/// Checks the database (bounded by [`DATABASE_CHECK`]) and both binaries. `/readyz` and the
/// dashboard's overview.
pub(super) async fn readiness(state: &AppState) -> Readiness {
    let mut checks = Map::new();
    let mut failing = Vec::new();
    // Bounded below a probe's usual timeout, so that a database that does not answer (or a
    // pool whose connections are all waited for) is a 503 the probe reads, not a timeout.
    let ping = tokio::time::timeout(DATABASE_CHECK, state.store.ping()).await;
    match ping.unwrap_or_else(|_| Err(StoreError::unavailable("no answer within 2 s"))) {
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
        // This route needs no key: it names the failing check, but the binaries' paths (which
        // tell an attacker about the host) only go to the log.
        let check = match exec::resolve_binary(bin) {
            Ok(_) => "ok",
            Err(e) => {
                tracing::warn!(check = name, error = %e, "readiness: binary check failed");
                failing.push(name);
                match e {
                    exec::ExecError::NotExecutable { .. } => "not executable",
                    _ => "not found",
                }
            }
        };
        checks.insert(name.into(), json!(check));
    }
    Readiness { checks, failing }
}
