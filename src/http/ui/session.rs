//! Sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie; the server keeps only
//! the SHA-256 of the id, with the key's name and role, the session's form token and its
//! expiry, in memory (a restart signs everyone out).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Extension, FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{Ui, layout, security};
use crate::config::{ApiKey, Role};
use crate::http::middleware::Caller;

/// The most sessions kept at once; a new one beyond it replaces the one that expires first.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The name of the key it signed in with (recorded as `submitted_by`, `by <name>`).
    pub name: String,
    pub role: Role,
    /// The token every form of this session carries.
    pub csrf: String,
    /// When it ends, ms since the epoch (for display).
    pub expires_at_ms: i64,
    expires: Instant,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn caller(&self) -> Caller {
        Caller {
            name: self.name.clone(),
            role: self.role,
        }
    }
}

/// What a cookie's session id names.
pub enum Lookup {
    Valid(Session),
    /// It existed, and its time is up (now removed).
    Expired,
    Unknown,
}

/// The sessions of this process.
pub struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
    ttl: Duration,
    /// The cookie has `Secure` and the `__Host-` prefix.
    secure: bool,
}

impl Sessions {
    pub fn new(ttl: Duration, secure: bool) -> Self {
        Sessions {
            by_digest: Mutex::default(),
            ttl,
            secure,
        }
    }

    /// Starts a session for `key`; returns the id for the cookie.
    pub fn create(&self, key: &ApiKey) -> String {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let session = Session {
            name: key.name.clone(),
            role: key.role,
            csrf: hex::encode(rand::random::<[u8; 32]>()),
            expires_at_ms: crate::store::now_ms()
                + i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX),
            expires: Instant::now() + self.ttl,
        };
        let mut all = self.lock();
        let now = Instant::now();
        all.retain(|_, s| s.expires > now);
        if all.len() >= MAX_SESSIONS
            && let Some(first) = all.iter().min_by_key(|(_, s)| s.expires).map(|(d, _)| *d)
        {
            all.remove(&first);
        }
        all.insert(digest(&id), session);
        id
    }

    pub fn lookup(&self, id: &str) -> Lookup {
        let mut all = self.lock();
        let d = digest(id);
        match all.get(&d) {
            None => Lookup::Unknown,
            Some(s) if s.expires <= Instant::now() => {
                all.remove(&d);
                Lookup::Expired
            }
            Some(s) => Lookup::Valid(s.clone()),
        }
    }

    /// Ends the session (sign-out).
    pub fn remove(&self, id: &str) {
        self.lock().remove(&digest(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cookie's name: `__Host-` makes browsers refuse it unless it is `Secure`, has
    /// `Path=/` and no `Domain`, so that no other host (a sibling subdomain) can set it.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-everestctl_session"
        } else {
            "everestctl_session"
        }
    }

    /// `Set-Cookie` for a new session.
    pub fn set_cookie(&self, id: &str) -> HeaderValue {
        self.cookie(id, self.ttl.as_secs())
    }

    /// `Set-Cookie` that removes the cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
            self.cookie_name()
        );
        HeaderValue::from_str(&text).expect("cookie is visible ASCII")
    }

    /// The session id of the request's cookie, if it has one.
    pub fn id_from<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let name = self.cookie_name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, v)| *k == name && !v.is_empty())
            .map(|(_, v)| v)
    }
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Lets only signed-in requests through, with their [`Session`] (and the [`Caller`] the API's
/// shared code takes) in the request's extensions; the others go to the sign-in page.
pub async fn require(Extension(ui): Extension<Arc<Ui>>, mut req: Request, next: Next) -> Response {
    let lookup = match ui.sessions.id_from(req.headers()) {
        Some(id) => ui.sessions.lookup(id),
        None => Lookup::Unknown,
    };
    let session = match lookup {
        Lookup::Valid(session) => session,
        other => return signed_out(&req, matches!(other, Lookup::Expired)),
    };
    let caller = session.caller();
    req.extensions_mut().insert(session);
    req.extensions_mut().insert(caller.clone());
    let mut response = next.run(req).await;
    // The request's log line names the key, as it does for the API.
    response.extensions_mut().insert(caller);
    response
}

/// The answer to a request without a valid session.
fn signed_out(req: &Request, expired: bool) -> Response {
    let path = req.uri().path();
    let background = path.ends_with("/live") || path.ends_with("/events");
    if background || req.method() != Method::GET {
        // A script's fetch (it reloads the page) or a form posted after the session ended.
        return layout::error_page(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your session has ended; sign in again.",
        );
    }
    // A link followed from another site: a SameSite=Strict cookie is not sent with that
    // navigation, so the page reloads itself once from here, which sends it.
    let cross_site = req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|s| s.as_bytes() != b"same-origin" && s.as_bytes() != b"none");
    // The router under /ui sees the path without it; the page asked for is the original.
    let here = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .and_then(|u| u.0.path_and_query())
        .map_or("/ui", |p| p.as_str())
        .to_string();
    if cross_site {
        return layout::reload_page(&here);
    }
    let expired = expired.then_some(("expired", "1"));
    let login = super::fmt::url(
        "/ui/login",
        [("next", here.as_str())].into_iter().chain(expired),
    );
    super::see_other(&login)
}

/// The fields of a posted form.
#[derive(Debug, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The value of the field, if it was sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn parse(body: &[u8]) -> Self {
        Fields(form_urlencoded::parse(body).into_owned().collect())
    }
}

/// A form posted by this session: it must carry the session's token (`csrf`), else 403.
pub struct TokenForm {
    pub session: Session,
    pub fields: Fields,
}

impl<S: Send + Sync> FromRequest<S> for TokenForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let session = req
            .extensions()
            .get::<Session>()
            .cloned()
            .ok_or_else(|| StatusCode::UNAUTHORIZED.into_response())?;
        let fields = read_form(req, state).await?;
        let presented = fields.get("csrf").unwrap_or_default();
        if !security::tokens_match(presented, &session.csrf) {
            return Err(layout::error_page(
                StatusCode::FORBIDDEN,
                "Refused",
                "The form did not carry this session's token, so it was refused. Reload the \
                 page and try again.",
            ));
        }
        Ok(TokenForm { session, fields })
    }
}

/// Reads a `application/x-www-form-urlencoded` body (415 otherwise, 413 over the limit).
pub async fn read_form<S: Send + Sync>(req: Request, state: &S) -> Result<Fields, Response> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(layout::error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Not a form",
            "Send the form as application/x-www-form-urlencoded.",
        ));
    }
    let body = axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|e| layout::error_page(e.status(), "Unreadable form", &e.body_text()))?;
    Ok(Fields::parse(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        ApiKey::new("ops", "k-0123456789abcdef", Role::Admin)
    }

    #[test]
    fn a_session_lives_until_its_ttl_and_ends_at_sign_out() {
        let sessions = Sessions::new(Duration::from_secs(60), true);
        let id = sessions.create(&key());
        assert_eq!(id.len(), 64);
        let Lookup::Valid(s) = sessions.lookup(&id) else {
            panic!("no session")
        };
        assert_eq!((s.name.as_str(), s.role), ("ops", Role::Admin));
        assert!(matches!(sessions.lookup("other"), Lookup::Unknown));
        sessions.remove(&id);
        assert!(matches!(sessions.lookup(&id), Lookup::Unknown));

        let short = Sessions::new(Duration::from_millis(1), true);
        let id = short.create(&key());
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(short.lookup(&id), Lookup::Expired));
        assert!(matches!(short.lookup(&id), Lookup::Unknown));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_with_the_host_prefix() {
        let secure = Sessions::new(Duration::from_secs(60), true);
        let c = secure.set_cookie("abc");
        assert_eq!(
            c.to_str().unwrap(),
            "__Host-everestctl_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure"
        );
        let plain = Sessions::new(Duration::from_secs(60), false);
        assert_eq!(
            plain.clear_cookie().to_str().unwrap(),
            "everestctl_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; everestctl_session=xyz; b=2"),
        );
        assert_eq!(plain.id_from(&h), Some("xyz"));
        assert_eq!(secure.id_from(&h), None);
    }
}
