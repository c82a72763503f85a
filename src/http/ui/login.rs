//! Signing in (an API key, once, for a session cookie) and signing out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Extension, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use maud::{Markup, html};
use serde::Deserialize;
use sha2::Sha256;

use super::session::{Lookup, TokenForm, read_form};
use super::{Ui, fmt, layout, security, see_other};
use crate::config::keys;
use crate::http::{AppState, middleware};

/// How long the sign-in form's token is accepted.
const LOGIN_TOKEN_MS: i64 = 3_600_000;

/// The query of the sign-in page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginQuery {
    next: Option<String>,
    expired: Option<String>,
    signed_out: Option<String>,
}

/// Where to go after signing in: a dashboard path, else the overview (never another site).
fn next_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if (p == "/ui" || p.starts_with("/ui/") || p.starts_with("/ui?"))
                && p.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            p.to_string()
        }
        _ => "/ui".to_string(),
    }
}

/// The sign-in form's token: when it was made and an HMAC of that under the process's key, so
/// that only a form this process served can be posted.
fn login_token(ui: &Ui, issued_ms: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&ui.login_key).expect("HMAC takes any key");
    mac.update(format!("login:{issued_ms}").as_bytes());
    format!("{issued_ms}.{}", hex::encode(mac.finalize().into_bytes()))
}

fn login_token_valid(ui: &Ui, token: &str) -> bool {
    let Some((issued, _)) = token.split_once('.') else {
        return false;
    };
    let Ok(issued_ms) = issued.parse::<i64>() else {
        return false;
    };
    let age = crate::store::now_ms() - issued_ms;
    (0..=LOGIN_TOKEN_MS).contains(&age)
        && security::tokens_match(token, &login_token(ui, issued_ms))
}

/// `GET /ui/login`: the sign-in form (or, already signed in, where it leads).
pub async fn page(
    Extension(ui): Extension<Arc<Ui>>,
    Query(q): Query<LoginQuery>,
    req: Request,
) -> Response {
    let next = next_path(q.next.as_deref());
    if let Some(Lookup::Valid(_)) = ui
        .sessions
        .id_from(req.headers())
        .map(|id| ui.sessions.lookup(id))
    {
        return see_other(&next);
    }
    let notice = if q.expired.is_some() {
        Some("Your session expired: sign in again.")
    } else if q.signed_out.is_some() {
        Some("You are signed out.")
    } else {
        None
    };
    form_page(&ui, StatusCode::OK, &next, notice, None)
}

fn form_page(
    ui: &Ui,
    status: StatusCode,
    next: &str,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response {
    let token = login_token(ui, crate::store::now_ms());
    let body = html! {
        section.login aria-labelledby="login-title" {
            h1 #login-title { "Sign in" }
            p { "Sign in with an admin key, or a read-only key to look without changing anything. The key is sent once; the browser keeps only a session cookie." }
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            @if let Some(e) = error { p.error-text #key-error role="alert" { (e) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="token" value=(token);
                input type="hidden" name="next" value=(next);
                div.field {
                    label for="key" { "API key" }
                    input #key type="password" name="key" required autocomplete="current-password"
                        spellcheck="false" autofocus aria-invalid=[error.map(|_| "true")]
                        aria-describedby=[error.map(|_| "key-error")];
                }
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    layout::page_with_status(status, "Sign in", None, layout::Nav::None, body)
}

/// `POST /ui/login`: checks the key (the API's lookup and failure throttle) and starts a
/// session.
pub async fn sign_in(
    State(state): State<AppState>,
    Extension(ui): Extension<Arc<Ui>>,
    req: Request,
) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let fields = match read_form(req, &state).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let next = next_path(fields.get("next"));
    if !login_token_valid(&ui, fields.get("token").unwrap_or_default()) {
        let why = "The sign-in form was too old or not from this dashboard; it is reloaded: sign in again.";
        return form_page(&ui, StatusCode::FORBIDDEN, &next, None, Some(why));
    }
    let now = Instant::now();
    if let Some(wait) = client.and_then(|ip| state.auth_throttle.refused_for(ip, now)) {
        let why = format!(
            "Too many wrong keys from this address; try again in {} s.",
            wait.as_secs() + 1
        );
        return form_page(&ui, StatusCode::TOO_MANY_REQUESTS, &next, None, Some(&why));
    }
    let presented = fields.get("key").unwrap_or_default().trim();
    let Some(key) =
        keys::find(&state.settings.api_keys, presented).filter(|_| !presented.is_empty())
    else {
        if let (Some(ip), false) = (client, presented.is_empty()) {
            middleware::count_failure(&state, ip, now);
        }
        let why = "That key is not valid.";
        return form_page(&ui, StatusCode::UNAUTHORIZED, &next, None, Some(why));
    };
    let id = ui.sessions.create(key);
    tracing::info!(key = %key.name, "dashboard: signed in");
    let mut response = see_other(&fmt::url("/ui/login/check", [("next", next.as_str())]));
    response
        .headers_mut()
        .insert(header::SET_COOKIE, ui.sessions.set_cookie(&id));
    response
}

/// `GET /ui/login/check`: where a sign-in lands. With the new session's cookie it goes on to
/// the page asked for; without it the browser dropped the cookie, which it does to a `Secure`
/// cookie over plain HTTP (other than to localhost), and the page says so.
pub async fn check(
    Extension(ui): Extension<Arc<Ui>>,
    Query(q): Query<LoginQuery>,
    req: Request,
) -> Response {
    let next = next_path(q.next.as_deref());
    if let Some(Lookup::Valid(_)) = ui
        .sessions
        .id_from(req.headers())
        .map(|id| ui.sessions.lookup(id))
    {
        return see_other(&next);
    }
    let why = "The key was accepted, but the browser did not keep the session cookie. It is \
               marked Secure, which browsers keep over HTTPS and over plain HTTP to localhost \
               only: use HTTPS, or set DASHBOARD_PUBLIC_URL=http://host:port for plain HTTP.";
    form_page(&ui, StatusCode::OK, &next, None, Some(why))
}

/// `POST /ui/logout`: ends the session and removes the cookie.
pub async fn logout(Extension(ui): Extension<Arc<Ui>>, req: Request) -> Response {
    let id = ui.sessions.id_from(req.headers()).map(str::to_string);
    let form = match <TokenForm as axum::extract::FromRequest<()>>::from_request(req, &()).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Some(id) = id {
        ui.sessions.remove(&id);
    }
    tracing::info!(key = %form.session.name, "dashboard: signed out");
    let mut response = see_other("/ui/login?signed_out=1");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, ui.sessions.clear_cookie());
    response.into_response()
}

/// The sign-out button of every page.
pub fn logout_form(csrf: &str) -> Markup {
    html! {
        form.inline method="post" action="/ui/logout" {
            input type="hidden" name="csrf" value=(csrf);
            button.link-button type="submit" { "Sign out" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_dashboard() {
        assert_eq!(
            next_path(Some("/ui/jobs?status=failed")),
            "/ui/jobs?status=failed"
        );
        assert_eq!(next_path(Some("/ui")), "/ui");
        for bad in [
            "//evil.example",
            "https://evil.example/ui",
            "/uix",
            "/jobs",
            "/ui/\n",
        ] {
            assert_eq!(next_path(Some(bad)), "/ui", "{bad:?}");
        }
        assert_eq!(next_path(None), "/ui");
    }

    #[test]
    fn login_tokens_are_signed_and_expire() {
        let ui = Ui {
            sessions: super::super::session::Sessions::new(std::time::Duration::from_secs(9), true),
            login_key: [7; 32],
            public_origin: None,
            counts: Default::default(),
        };
        let now = crate::store::now_ms();
        assert!(login_token_valid(&ui, &login_token(&ui, now)));
        assert!(!login_token_valid(
            &ui,
            &login_token(&ui, now - LOGIN_TOKEN_MS - 1)
        ));
        let forged = format!("{now}.{}", "0".repeat(64));
        assert!(!login_token_valid(&ui, &forged));
        assert!(!login_token_valid(&ui, "garbage"));
    }
}
