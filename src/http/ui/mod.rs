//! The operator dashboard at `/ui`: server-rendered HTML (maud, escaped by default) with one
//! small script and one style sheet, both embedded.
//!
//! # What it is built on
//!
//! Every read and every action goes through what the JSON API uses: the store's reads, the
//! shared parts of the handlers (`jobs::cancel_job`, `jobs::retry_job`, `jobs::job_result`,
//! `history::list_request`, `health::readiness`) and, for submissions, `plans::plan` and
//! `submit::store` with the form turned into the JSON body the API would get. No rule is
//! written twice.
//!
//! # Security
//!
//! - Signing in takes an API key once (the same constant-time lookup and the same failure
//!   throttle as the API) and sets a session cookie (`HttpOnly`, `SameSite=Strict`, `Secure`
//!   unless `DASHBOARD_PUBLIC_URL` is `http://`); the server keeps only the SHA-256 of the
//!   session id, in memory. The key is never in a page, a URL or the browser's storage.
//! - Every state-changing request is refused unless the browser says it comes from this origin
//!   (`Sec-Fetch-Site: same-origin`, or else an `Origin` equal to ours) and it carries the
//!   session's form token (sign-in: a signed, short-lived token of its own).
//! - Every response has a strict Content-Security-Policy (scripts and styles from this origin
//!   only, no inline script, no `eval`), refuses framing and is not cached (assets excepted).

mod actions;
mod assets;
mod fmt;
mod forms;
mod job;
mod jobs;
mod layout;
mod live;
mod login;
mod overview;
mod security;
mod session;
mod tenants;

use std::sync::Arc;

use axum::Router;
use axum::extract::Extension;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{ApiError, AppState};
use crate::config::Dashboard;

/// What the dashboard keeps while the process runs.
pub struct Ui {
    pub sessions: session::Sessions,
    /// Signs the sign-in form's token (random at each start).
    login_key: [u8; 32],
    /// The `Origin` that state-changing requests must have (`DASHBOARD_PUBLIC_URL`); `None`:
    /// the origin of the request's `Host`.
    public_origin: Option<String>,
    pub counts: overview::CountsCache,
}

/// The dashboard's routes under `/ui`, or `None` when `DASHBOARD=false`.
pub fn router(state: &AppState) -> Option<Router<AppState>> {
    let settings: &Dashboard = state.settings.dashboard.as_ref()?;
    let secure = settings.public_origin.as_ref().is_none_or(|o| o.secure);
    let ui = Arc::new(Ui {
        sessions: session::Sessions::new(settings.session_ttl, secure),
        login_key: rand::random(),
        public_origin: settings.public_origin.as_ref().map(|o| o.origin.clone()),
        counts: overview::CountsCache::default(),
    });
    let signed_in = Router::new()
        .route("/", get(overview::page))
        .route("/jobs", get(jobs::page))
        .route("/jobs/{id}", get(job::page))
        .route("/jobs/{id}/live", get(job::fragment))
        .route("/jobs/{id}/events", get(live::events))
        .route(
            "/jobs/{id}/cancel",
            get(actions::confirm_cancel).post(actions::cancel),
        )
        .route(
            "/jobs/{id}/retry",
            get(actions::confirm_retry).post(actions::retry),
        )
        .route("/jobs/{id}/password", post(actions::reveal_password))
        .route("/tenants", get(tenants::page))
        .route("/new", get(forms::index))
        .route("/new/{kind}", get(forms::blank).post(forms::submit))
        .route("/logout", post(login::logout))
        .route_layer(axum::middleware::from_fn(session::require));
    let public = Router::new()
        .route("/login", get(login::page).post(login::sign_in))
        .route("/login/check", get(login::check))
        .route("/assets/{file}", get(assets::serve));
    Some(
        Router::new()
            .merge(signed_in)
            .merge(public)
            .fallback(not_found)
            .layer(axum::middleware::from_fn(security::guard))
            .layer(Extension(ui)),
    )
}

/// Unknown paths under `/ui`.
async fn not_found() -> Response {
    layout::error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no dashboard page at this address.",
    )
}

/// An HTML answer for an error of the API's kind: its status and its sentence.
fn api_error_page(e: ApiError) -> Response {
    let detail = e.to_string();
    let status = e.into_response().status();
    let title = status.canonical_reason().unwrap_or("Error");
    layout::error_page(status, title, &detail)
}

/// The answer to an action a read-only session may not take.
fn read_only_page() -> Response {
    layout::error_page(
        StatusCode::FORBIDDEN,
        "Read-only key",
        "This session signed in with a read-only key: it can see every page, but not submit, \
         cancel or retry jobs, nor see generated passwords. Sign in with an admin key.",
    )
}

/// A `303 See Other` to `location` (after a form post).
fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}
