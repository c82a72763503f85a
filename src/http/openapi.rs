//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! request types themselves, so routes, methods, status codes and request bodies cannot drift
//! from the code. Response bodies are described by the types below.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// The document, rendered once when the router is built.
static DOCUMENT: OnceLock<String> = OnceLock::new();

#[derive(OpenApi)]
#[openapi(
    info(title = "everestctl-api", description = "Create and manage Percona Everest tenants through durable jobs."),
    modifiers(&Security),
    components(schemas(ErrorBody, FieldErrorBody, JobAccepted, JobStatusBody, JobResultBody, DryRunBody, ListingBody, HealthBody)),
    security(("admin_key" = []), ("bearer" = [])),
    tags((name = "jobs"), (name = "tenants"), (name = "reads"), (name = "operations")),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Admin-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The error envelope of every 4xx and 5xx answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// `validation_failed`, `not_found`, `unauthorized`, `forbidden`, `rate_limited`, …
    pub error: String,
    pub detail: String,
    /// Only for 422: one entry per invalid field.
    pub fields: Option<Vec<FieldErrorBody>>,
    /// The job's status, for `not_finished` / `already_finished`.
    pub status: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FieldErrorBody {
    pub field: String,
    pub message: String,
}

/// The answer to an accepted job (202), or to an idempotent replay (200).
#[derive(Serialize, ToSchema)]
pub struct JobAccepted {
    pub job_id: String,
    pub kind: String,
    pub status: crate::domain::JobStatus,
    pub status_url: String,
    pub result_url: String,
}

/// A job's status with its steps (`GET /jobs/{id}`); see the README for every field.
#[derive(Serialize, ToSchema)]
pub struct JobStatusBody {
    pub job_id: String,
    pub kind: String,
    pub status: crate::domain::JobStatus,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub current_step: Option<String>,
    pub summary: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub steps: Vec<serde_json::Value>,
    pub submitted_by: String,
    pub request_id: String,
    pub status_url: String,
    pub result_url: String,
}

/// The outcome of a finished job (`GET /jobs/{id}/result`).
#[derive(Serialize, ToSchema)]
pub struct JobResultBody {
    pub job_id: String,
    pub kind: String,
    pub overall_status: crate::domain::JobStatus,
    pub summary: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
    #[schema(value_type = Object)]
    pub inputs: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub steps: Vec<serde_json::Value>,
    /// Bootstrap and set-password jobs only.
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<serde_json::Value>,
}

/// The answer to `?dry_run=true`: nothing is queued.
#[derive(Serialize, ToSchema)]
pub struct DryRunBody {
    pub dry_run: bool,
    pub kind: String,
    #[schema(value_type = Object)]
    pub inputs: serde_json::Value,
    pub steps: Vec<crate::plan::StepPreview>,
}

/// A pass-through read.
#[derive(Serialize, ToSchema)]
pub struct ListingBody {
    #[schema(value_type = Vec<Object>)]
    pub data: serde_json::Value,
    pub source: String,
}

#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub checks: Option<serde_json::Value>,
}

/// The answers of every job submission (`POST /bootstrap/users`, `/accounts/*`, `/namespaces/*`).
#[derive(utoipa::IntoResponses)]
pub enum SubmitResponses {
    /// Stored and queued.
    #[response(status = 202)]
    Accepted(JobAccepted),
    /// A dry run (`DryRunBody`), or an idempotent replay (`JobAccepted`).
    #[response(status = 200)]
    DryRun(DryRunBody),
    /// Malformed JSON or query.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No valid key.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The Idempotency-Key was used with another body, or the request conflicts with the
    /// service's configuration or state (`rbac_unavailable`, `not_suspended`).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is over 1 MiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Validation failed; nothing was queued.
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// Shutting down, or the database is unavailable.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The query of every job submission.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// Validate and return the plan without queuing anything.
    pub dry_run: Option<bool>,
}

/// The headers of every job submission.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct SubmitHeaders {
    /// The same key with the same body returns the original job (kept at least 24 h). Keys are
    /// scoped to the admin key name that sent them.
    #[param(rename = "Idempotency-Key")]
    pub idempotency_key: Option<String>,
}

/// Renders the document of `router` (which is returned unchanged) and keeps it for
/// `GET /openapi.json`.
pub fn document(router: &mut OpenApiRouter<AppState>) -> &'static str {
    DOCUMENT.get_or_init(|| {
        let mut doc = router.to_openapi();
        add_auth_responses(&mut doc);
        doc.to_pretty_json().expect("the document serializes")
    })
}

/// The answers of the authentication layer, added to every operation that needs a key (those
/// that document 401), so that no route can forget them: 429 everywhere, and 403 for every
/// method but GET (a read-only key may only read).
fn add_auth_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::header::Header;
    use utoipa::openapi::{Object, RefOr, Type};
    for item in doc.paths.paths.values_mut() {
        let operations = [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ];
        for (operation, changes) in operations {
            let Some(operation) = operation else { continue };
            let responses = &mut operation.responses.responses;
            let Some(RefOr::T(unauthorized)) = responses.get("401").cloned() else {
                continue;
            };
            if changes {
                let mut forbidden = unauthorized.clone();
                forbidden.description = "`forbidden`: the key is read-only".into();
                responses.insert("403".into(), RefOr::T(forbidden));
            }
            let mut limited = unauthorized;
            limited.description = "`rate_limited`: too many failed authentications from this \
                address (AUTH_FAILURE_LIMIT); `Retry-After` gives the seconds until its window ends"
                .into();
            let seconds = Header::new(Object::with_type(Type::Integer));
            limited.headers.insert("Retry-After".into(), seconds);
            responses.insert("429".into(), RefOr::T(limited));
        }
    }
}

/// The route serving the document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"),
              (status = 401, body = ErrorBody)))]
async fn openapi_json() -> Response {
    let body = DOCUMENT.get().cloned().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
