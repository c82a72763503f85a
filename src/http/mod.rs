//! The HTTP API: routes, authentication, request ids and the error envelope.
//! Handlers validate into domain types and call the store or pass-through reads; they never
//! run SQL or spawn processes themselves.

mod accounts;
mod bootstrap;
mod error;
mod extract;
mod health;
mod history;
mod jobs;
mod middleware;
pub mod openapi;
mod plans;
mod submit;
mod tenants;
pub mod throttle;
mod ui;
mod views;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use error::ApiError;

use crate::config::Settings;
use crate::domain::Rules;
use crate::store::Store;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler can reach: one shared reference, because axum clones the state for every
/// request, and cloning each field (the store alone holds a dozen reference counts) showed in
/// the submit path's profile.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`].
pub struct Shared {
    pub store: Store,
    pub settings: Arc<Settings>,
    pub rules: Arc<Rules>,
    /// Notified after every accepted job, to wake an idle worker.
    pub wake: Arc<tokio::sync::Notify>,
    pub shutting_down: Arc<AtomicBool>,
    /// Failed authentications per client address.
    pub auth_throttle: Arc<throttle::AuthThrottle>,
    /// Cancelled when the service starts shutting down: ends the streams that would otherwise
    /// hold graceful shutdown open (the dashboard's server-sent events).
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Store, settings: Arc<Settings>, wake: Arc<tokio::sync::Notify>) -> Self {
        let rules = Arc::new(Rules {
            namespaces: settings.namespace_policy.clone(),
            default_operators: settings.default_operators,
        });
        let auth_throttle = Arc::new(throttle::AuthThrottle::new(
            settings.auth_failure_limit,
            settings.auth_failure_window,
        ));
        AppState(Arc::new(Shared {
            auth_throttle,
            store,
            settings,
            rules,
            wake,
            shutting_down: Arc::new(AtomicBool::new(false)),
            shutdown: tokio_util::sync::CancellationToken::new(),
        }))
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// The whole API.
/// The authenticated and the public routes, each with its part of the OpenAPI document.
fn parts(metrics_public: bool) -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let mut authed = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(bootstrap::router())
        .merge(jobs::router())
        .merge(history::router())
        .merge(accounts::router())
        .merge(tenants::router())
        .merge(openapi::router());
    let mut public = health::router();
    if metrics_public {
        public = public.merge(health::metrics_router());
    } else {
        authed = authed.merge(health::metrics_router());
    }
    (authed, public)
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    crate::telemetry::install();
    let (authed, public) = parts(state.settings.metrics_public);
    // The document covers both parts; built from a second copy of them.
    let (doc_authed, doc_public) = parts(state.settings.metrics_public);
    openapi::document(&mut doc_authed.merge(doc_public));
    let (authed, _) = authed.split_for_parts();
    let (public, _) = public.split_for_parts();
    let authed = authed.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        middleware::require_admin_key,
    ));
    let mut routes = Router::new().merge(public).merge(authed);
    // The dashboard has its own authentication (a session), not the API key.
    if let Some(dashboard) = ui::router(&state) {
        routes = routes.nest("/ui", dashboard).route(
            "/ui/",
            axum::routing::get(|| async { axum::response::Redirect::permanent("/ui") }),
        );
    }
    routes
        .route_layer(axum::middleware::from_fn(middleware::label_route))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::NotFound("no such route for this method".into())
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(middleware::request_id_and_log))
        .with_state(state)
}
