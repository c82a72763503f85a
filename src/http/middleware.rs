//! Request ids, the one log line per request, and admin-key authentication.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::SharedString;

use super::{ApiError, AppState};

pub const REQUEST_ID: &str = "x-request-id";

/// The request id of this request (kept from the client when well-formed, else generated).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The name of the admin key that authenticated the request (never the key itself).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

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
        .map(|c| c.0.clone())
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

/// Accepts `X-Admin-Key: <key>` or `Authorization: Bearer <key>`, compared in constant time
/// against every configured key.
pub async fn require_admin_key(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let presented = headers
        .get("x-admin-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
        })
        .map(str::trim);
    // Every key is compared, so the time taken does not tell which one matched.
    let mut matched = None;
    if let Some(presented) = presented {
        for key in &state.settings.api_keys {
            if key.matches(presented) && matched.is_none() {
                matched = Some(key.name.clone());
            }
        }
    }
    let Some(name) = matched else {
        return ApiError::Unauthorized.into_response();
    };
    req.extensions_mut().insert(Caller(name.clone()));
    let mut response = next.run(req).await;
    response.extensions_mut().insert(Caller(name));
    response
}
