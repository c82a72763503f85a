//! The headers of every dashboard response, and the origin check of every state-changing
//! request.

use std::sync::Arc;

use axum::extract::{Extension, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::{Ui, layout};

/// Scripts, styles, images and fetches from this origin only; no inline script or style
/// attribute, no `eval`, no framing, forms only to this origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Refuses a state-changing request that a browser did not send from the dashboard's own
/// origin (403), and puts the security headers on every response.
pub async fn guard(Extension(ui): Extension<Arc<Ui>>, req: Request, next: Next) -> Response {
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD);
    let mut response =
        match changes_state.then(|| same_origin(req.headers(), ui.public_origin.as_deref())) {
            Some(Err(why)) => layout::error_page(StatusCode::FORBIDDEN, "Refused", why),
            _ => next.run(req).await,
        };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // Pages show jobs (and once a password): no cache keeps them. Assets set their own.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Whether the browser says the request comes from our origin. `Sec-Fetch-Site`, when sent,
/// decides (browsers send it over HTTPS and to loopback addresses); otherwise `Origin` must be
/// `expected` (`DASHBOARD_PUBLIC_URL`) or, without one, the origin of the `Host` header (any
/// scheme: TLS may end at a proxy in front). Plain HTTP to another address gets `Origin` but
/// no `Sec-Fetch-Site` from Chromium, so a check of that header alone would refuse it.
pub fn same_origin(headers: &HeaderMap, expected: Option<&str>) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" => Ok(()),
            _ => Err("The request came from another site (Sec-Fetch-Site), so it was refused."),
        };
    }
    let refused = "The request does not come from the dashboard's own origin (Origin), so it \
                   was refused.";
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .ok_or(
            "The request does not say where it comes from (no Origin header), so it was refused.",
        )?;
    let matches = match expected {
        Some(expected) => origin.eq_ignore_ascii_case(expected),
        None => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let authority = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
        }
    };
    matches.then_some(()).ok_or(refused)
}

/// Compares a form's token with the expected one in constant time.
pub fn tokens_match(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_browser_must_say_the_request_is_ours() {
        let ok = [
            vec![("sec-fetch-site", "same-origin")],
            vec![
                ("origin", "http://10.0.0.5:8080"),
                ("host", "10.0.0.5:8080"),
            ],
            vec![
                ("origin", "https://ops.example.com"),
                ("host", "ops.example.com"),
            ],
        ];
        for h in ok {
            assert!(same_origin(&headers(&h), None).is_ok(), "{h:?}");
        }
        let refused = [
            vec![
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://a"),
                ("host", "a"),
            ],
            vec![("sec-fetch-site", "same-site")],
            vec![("sec-fetch-site", "none")],
            vec![("origin", "http://evil.example"), ("host", "10.0.0.5:8080")],
            vec![("origin", "null"), ("host", "10.0.0.5:8080")],
            vec![("host", "10.0.0.5:8080")],
        ];
        for h in refused {
            assert!(same_origin(&headers(&h), None).is_err(), "{h:?}");
        }
        let public = Some("https://ops.example.com");
        let behind_proxy = [
            ("origin", "https://ops.example.com"),
            ("host", "backend:8080"),
        ];
        assert!(same_origin(&headers(&behind_proxy), public).is_ok());
        let other = [("origin", "https://evil.example"), ("host", "backend:8080")];
        assert!(same_origin(&headers(&other), public).is_err());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abd", "abc"));
        assert!(!tokens_match("ab", "abc"));
        assert!(!tokens_match("", "abc"));
    }
}
