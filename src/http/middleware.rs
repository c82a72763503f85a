//! Request ids, the one log line per request, and API-key authentication.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::SharedString;

use super::throttle::{self, Failure};
use super::{ApiError, AppState};
use crate::config::{Role, keys};

pub const REQUEST_ID: &str = "x-request-id";

/// The request id of this request (kept from the client when well-formed, else generated).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Who authenticated the request: the name of the key (never the key itself) and its role.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

fn valid_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (1..=128).contains(&s.len()).then_some(())?;
    s.bytes()
        .all(|b| b.is_ascii_graphic())
        .then(|| s.to_string())
}

/// The route a request matched (its pattern, e.g. `/jobs/{id}`), for metrics and logs.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub SharedString);

/// The metric label of a route pattern: one shared copy per pattern, so that labelling a
/// request allocates nothing. Patterns are the router's own, so the set is small and fixed.
fn route_label(route: &str) -> SharedString {
    static ROUTES: RwLock<Vec<Arc<str>>> = RwLock::new(Vec::new());
    let find = |routes: &[Arc<str>]| routes.iter().find(|r| ***r == *route).cloned();
    let known = find(&ROUTES.read().unwrap_or_else(PoisonError::into_inner));
    let shared = known.unwrap_or_else(|| {
        let mut routes = ROUTES.write().unwrap_or_else(PoisonError::into_inner);
        find(&routes).unwrap_or_else(|| {
            let new: Arc<str> = Arc::from(route);
            routes.push(new.clone());
            new
        })
    });
    SharedString::from_shared(shared)
}

/// Runs inside the router, where the matched route is known, and hands it to the response.
pub async fn label_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| route_label(m.as_str()));
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(RouteLabel(route));
    }
    response
}

/// A request body that notes whether it was read to its end.
struct Watched {
    inner: Body,
    ended: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) {
            self.ended.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps the request's body; the flag it returns is set once the body was read to its end
/// (at once when there is no body).
fn watch_body(req: Request) -> (Request, Arc<AtomicBool>) {
    let (parts, body) = req.into_parts();
    let ended = Arc::new(AtomicBool::new(body.is_end_stream()));
    let watched = Watched {
        inner: body,
        ended: ended.clone(),
    };
    (Request::from_parts(parts, Body::new(watched)), ended)
}

/// Assigns the request id, echoes it on the response, and logs one line per request.
///
/// A response sent before the request's body was read (an early 401, 413 or 415, a 404 for a
/// POST) says `Connection: close`: the server cannot reuse the connection with the rest of
/// the body still on it, and without the header a client reusing it would see a reset.
pub async fn request_id_and_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (mut req, body_ended) = watch_body(req);
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(valid_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let mut response = next.run(req).await;
    if !body_ended.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let caller = response
        .extensions()
        .get::<Caller>()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map_or(SharedString::const_str("unmatched"), |r| r.0.clone());
    let status = response.status().as_u16();
    crate::telemetry::http_request(method.as_str(), route, status, started.elapsed());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    tracing::info!(
        http.method = %method,
        http.path = %path,
        http.status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        request_id = %id,
        submitted_by = %caller,
        "request"
    );
    response
}

/// Accepts `X-Admin-Key: <key>` or `Authorization: Bearer <key>` (the scheme in any case),
/// compared in constant time against every configured key. A client address with too many
/// recent failures is refused (429) before its key is looked at; a read-only key gets 403 for
/// every method but `GET` and `HEAD`, so a new state-changing route is covered without a list.
pub async fn require_admin_key(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let now = Instant::now();
    if let Some(wait) = client.and_then(|ip| state.auth_throttle.refused_for(ip, now)) {
        // Rounded up, so that a retry after this many seconds is not refused again.
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return ApiError::RateLimited { retry_after }.into_response();
    }
    let presented = presented_key(req.headers());
    let Some(key) = presented.and_then(|p| keys::find(&state.settings.api_keys, p)) else {
        // Only a wrong key counts: a request without one guesses nothing.
        if let (Some(ip), Some(_)) = (client, presented) {
            count_failure(&state, ip, now);
        }
        return ApiError::Unauthorized.into_response();
    };
    let caller = Caller {
        name: key.name.clone(),
        role: key.role,
    };
    let mut response =
        if caller.role == Role::ReadOnly && !matches!(*req.method(), Method::GET | Method::HEAD) {
            ApiError::Forbidden {
                name: caller.name.clone(),
            }
            .into_response()
        } else {
            req.extensions_mut().insert(caller.clone());
            next.run(req).await
        };
    response.extensions_mut().insert(caller);
    response
}

/// The key of `X-Admin-Key`, else of `Authorization: Bearer`; auth schemes are
/// case-insensitive (RFC 7235), and the credentials may follow after several spaces.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let key = match headers.get("x-admin-key") {
        Some(v) => v.to_str().ok()?,
        None => {
            let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
            let (scheme, credentials) = value.trim_start().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(credentials)?
        }
    };
    Some(key.trim())
}

/// Counts a failure from `ip`, and logs once per window when the address reaches the limit
/// (with the address only: neither the presented key nor any part of it).
pub(super) fn count_failure(state: &AppState, ip: IpAddr, now: Instant) {
    if state.auth_throttle.failed(ip, now) == Failure::LimitReached {
        tracing::warn!(
            client = %throttle::bucket(ip),
            failures = state.settings.auth_failure_limit,
            window_seconds = state.settings.auth_failure_window.as_secs(),
            "too many failed authentications from this address: it is refused with 429 \
             until its window ends"
        );
    }
}
