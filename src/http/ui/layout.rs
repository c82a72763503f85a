//! The page shell (head, navigation, sign-out), error pages and the small pieces every page
//! uses: status badges and times.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::Session;
use super::{assets, fmt, login};
use crate::domain::{AttemptOutcome, JobStatus, StepStatus};

/// The section of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    None,
    Overview,
    Jobs,
    Tenants,
    New,
}

/// A whole page, 200.
pub fn page(title: &str, session: Option<&Session>, nav: Nav, body: Markup) -> Response {
    page_with_status(StatusCode::OK, title, session, nav, body)
}

pub fn page_with_status(
    status: StatusCode,
    title: &str,
    session: Option<&Session>,
    nav: Nav,
    body: Markup,
) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · everestctl-api" }
                link rel="icon" href=(assets::url("icon.svg")) type="image/svg+xml";
                link rel="stylesheet" href=(assets::url("app.css"));
                // Not deferred: it sets the chosen theme before the first paint.
                script src=(assets::url("app.js")) {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                (header(session, nav))
                main #main tabindex="-1" { (body) }
            }
        }
    };
    html_response(status, doc)
}

fn header(session: Option<&Session>, nav: Nav) -> Markup {
    let item = |target: Nav, href: &str, label: &str| {
        html! {
            li { a href=(href) aria-current=[(nav == target).then_some("page")] { (label) } }
        }
    };
    html! {
        header.top {
            a.brand href="/ui" { "everestctl-api" }
            @if let Some(s) = session {
                nav aria-label="Main" {
                    ul {
                        (item(Nav::Overview, "/ui", "Overview"))
                        (item(Nav::Jobs, "/ui/jobs", "Jobs"))
                        (item(Nav::Tenants, "/ui/tenants", "Tenants"))
                        @if s.is_admin() { (item(Nav::New, "/ui/new", "New job")) }
                    }
                }
                div.who {
                    span {
                        "Signed in as " strong { (s.name) } @if !s.is_admin() { " (read-only)" }
                        span.abs { " until " (fmt::absolute(s.expires_at_ms)) }
                    }
                    button #theme-toggle.link-button type="button" hidden { "Theme: system" }
                    (login::logout_form(&s.csrf))
                }
            }
        }
    }
}

/// An HTML response, never cached.
pub fn html_response(status: StatusCode, doc: Markup) -> Response {
    let mut response = (status, doc.into_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// A page that says what went wrong, with a way back.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = html! {
        h1 { (title) }
        p.error-text role="alert" { (message) }
        p { a href="/ui" { "Back to the overview" } }
    };
    page_with_status(status, title, None, Nav::None, body)
}

/// A page that loads `url` again at once, from this origin (see `session::signed_out`).
pub fn reload_page(url: &str) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content={ "0;url=" (url) };
                title { "Opening…" }
            }
            body { p { a href=(url) { "Continue" } } }
        }
    };
    html_response(StatusCode::OK, doc)
}

/// A job's status as an icon, a word and a colour.
pub fn status(s: JobStatus) -> Markup {
    let icon = match s {
        JobStatus::Queued => "◷",
        JobStatus::Running => "▶",
        JobStatus::Succeeded => "✓",
        JobStatus::Failed => "✕",
        JobStatus::Canceled => "⊘",
    };
    badge(tone_of_job(s), icon, s.as_str())
}

fn tone_of_job(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Queued => "wait",
        JobStatus::Running => "run",
        JobStatus::Succeeded => "ok",
        JobStatus::Failed => "err",
        JobStatus::Canceled => "off",
    }
}

/// A step's status.
pub fn step_status(s: StepStatus) -> Markup {
    let (tone, icon) = match s {
        StepStatus::Pending => ("wait", "○"),
        StepStatus::Running => ("run", "▶"),
        StepStatus::Succeeded => ("ok", "✓"),
        StepStatus::Failed => ("err", "✕"),
        StepStatus::Skipped => ("off", "↷"),
        StepStatus::Canceled => ("off", "⊘"),
    };
    badge(tone, icon, s.as_str())
}

/// An attempt's outcome.
pub fn outcome(o: AttemptOutcome) -> Markup {
    let (tone, icon) = match o {
        AttemptOutcome::Succeeded => ("ok", "✓"),
        AttemptOutcome::Running => ("run", "▶"),
        AttemptOutcome::Failed | AttemptOutcome::TimedOut => ("err", "✕"),
        AttemptOutcome::Interrupted | AttemptOutcome::Canceled => ("off", "⊘"),
    };
    badge(tone, icon, o.as_str())
}

fn badge(tone: &str, icon: &str, text: &str) -> Markup {
    html! {
        span class={ "badge tone-" (tone) } { span.icon aria-hidden="true" { (icon) } " " (text) }
    }
}

/// A time: relative text, the absolute time in UTC next to it (and as the `datetime`).
pub fn time(ms: i64, now: i64) -> Markup {
    html! {
        time datetime=(crate::http::views::rfc3339(ms)) title=(fmt::absolute(ms)) {
            (fmt::relative(ms, now))
        }
        " " span.abs { (fmt::absolute(ms)) }
    }
}

/// A time in a table cell: relative only, the absolute one in its title and a second line.
pub fn time_cell(ms: i64, now: i64) -> Markup {
    html! {
        time datetime=(crate::http::views::rfc3339(ms)) title=(fmt::absolute(ms)) {
            (fmt::relative(ms, now))
        }
        br;
        span.abs { (fmt::absolute(ms)) }
    }
}

/// A copy button for the text of the element `target` (works where the script runs).
pub fn copy_button(target: &str, what: &str) -> Markup {
    html! {
        button.copy type="button" data-copy=(target) hidden { "Copy " (what) }
    }
}
