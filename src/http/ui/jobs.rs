//! `GET /ui/jobs`: the job list of `GET /jobs`, with its filters in the URL (a view can be
//! bookmarked and shared) and its cursor paging.

use std::collections::HashMap;

use axum::extract::{Extension, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::fmt;
use super::layout::{self, Nav};
use super::overview::{error_line, job_link};
use super::session::Session;
use crate::domain::{JobKind, JobStatus};
use crate::http::history::{self, LIST_PARAMS, ListRequest};
use crate::http::{ApiError, AppState};
use crate::store::{JobPage, JobRecord, now_ms};

/// The text filters of the form: (parameter, label, hint).
const TEXT_FILTERS: &[(&str, &str, &str)] = &[
    ("username", "Username", ""),
    ("namespace", "Namespace", ""),
    ("submitted_by", "Submitted by", "the admin key's name"),
    (
        "created_after",
        "Created at or after",
        "RFC 3339, or 2026-11-26T09:15 (UTC)",
    ),
    (
        "created_before",
        "Created before",
        "RFC 3339, or 2026-11-26T09:15 (UTC)",
    ),
];

/// The query as the form sent it: empty fields dropped, unknown parameters ignored.
fn sent(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .map(|(k, v)| (k, v.trim().to_string()))
        .filter(|(k, v)| !v.is_empty() && LIST_PARAMS.contains(&k.as_str()))
        .collect()
}

/// `2026-11-26T09:15` (what people type, and what a `datetime-local` field sends) is read as
/// UTC; anything else goes to the API's parser as it is.
fn as_rfc3339(value: &str) -> String {
    let b = value.as_bytes();
    let shaped = |n: usize| {
        b.len() == n
            && b.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                _ => c.is_ascii_digit(),
            })
    };
    match () {
        _ if shaped(16) => format!("{value}:00Z"),
        _ if shaped(19) => format!("{value}Z"),
        _ => value.to_string(),
    }
}

pub async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    RawQuery(q): RawQuery,
) -> Response {
    let sent = sent(q.as_deref());
    let params: HashMap<String, String> = sent
        .iter()
        .map(|(k, v)| match k.as_str() {
            "created_after" | "created_before" => (k.clone(), as_rfc3339(v)),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let listed = match history::list_request(&params) {
        Ok(ListRequest {
            filter,
            after,
            limit,
        }) => state
            .store
            .list_jobs(&filter, after.as_ref(), limit)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let (status, error) = match &listed {
        Ok(_) => (StatusCode::OK, None),
        Err(e @ ApiError::BadRequest(_)) => (StatusCode::BAD_REQUEST, Some(e.to_string())),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Some(e.to_string())),
    };
    // A bad value's message starts with its parameter's name: it is shown at that field.
    let field_error = |name: &str| {
        error
            .as_deref()
            .filter(|e| e.starts_with(&format!("{name} ")))
    };
    let value = |name: &str| {
        sent.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let now = now_ms();
    let body = html! {
        h1 { "Jobs" }
        (filter_form(&value, &field_error, now))
        @if let Some(e) = &error {
            @if !LIST_PARAMS.iter().any(|p| field_error(p).is_some()) {
                p.error-text role="alert" { (e) }
            }
        }
        @if let Ok(page) = &listed { (results(page, &sent, now)) }
    };
    layout::page_with_status(status, "Jobs", Some(&session), Nav::Jobs, body)
}

fn filter_form<'a>(
    value: &dyn Fn(&str) -> Option<&'a str>,
    field_error: &dyn Fn(&str) -> Option<&'a str>,
    now: i64,
) -> Markup {
    let select = |name: &str, label: &str, options: Vec<&str>| {
        let current = value(name);
        html! {
            div.field {
                label for={ "f-" (name) } { (label) }
                select id={ "f-" (name) } name=(name) {
                    option value="" { "any" }
                    @for o in options { option value=(o) selected[current == Some(o)] { (o) } }
                }
                (error_for(name, field_error(name)))
            }
        }
    };
    let since = |hours: i64| crate::http::views::rfc3339(now - hours * 3_600_000);
    html! {
        form.filters method="get" action="/ui/jobs" aria-label="Filter jobs" {
            (select("status", "Status", JobStatus::ALL.iter().map(|s| s.as_str()).collect()))
            (select("kind", "Kind", JobKind::ALL.iter().map(|k| k.as_str()).collect()))
            @for (name, label, hint) in TEXT_FILTERS {
                @let err = field_error(name);
                @let ids = described_by(name, !hint.is_empty(), err.is_some());
                div.field {
                    label for={ "f-" (name) } { (label) }
                    input id={ "f-" (name) } type="text" name=(name) value=[value(name)]
                        spellcheck="false" autocomplete="off"
                        aria-invalid=[err.map(|_| "true")]
                        aria-describedby=[ids];
                    @if !hint.is_empty() { span.hint id={ "h-" (name) } { (hint) } }
                    (error_for(name, err))
                }
            }
            div.field {
                label for="f-limit" { "Per page" }
                select #f-limit name="limit" {
                    @for n in ["25", "50", "100", "200", "500"] {
                        option value=(n) selected[value("limit").unwrap_or("50") == n] { (n) }
                    }
                }
                (error_for("limit", field_error("limit")))
            }
            div.actions {
                button.primary type="submit" { "Apply filters" }
                a href="/ui/jobs" { "Clear" }
            }
        }
        p.quick {
            "Created in the last: "
            a href={ "/ui/jobs?created_after=" (since(1)) } { "hour" } " · "
            a href={ "/ui/jobs?created_after=" (since(24)) } { "24 hours" } " · "
            a href={ "/ui/jobs?created_after=" (since(24 * 7)) } { "7 days" }
        }
    }
}

/// The ids of a field's hint and error, for `aria-describedby`.
pub fn described_by(name: &str, hint: bool, error: bool) -> Option<String> {
    let ids: Vec<String> = [
        hint.then(|| format!("h-{name}")),
        error.then(|| format!("e-{name}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!ids.is_empty()).then(|| ids.join(" "))
}

/// The error text of a field, with the id its input refers to.
fn error_for(name: &str, error: Option<&str>) -> Markup {
    html! { @if let Some(e) = error { span.error-text id={ "e-" (name) } { (e) } } }
}

fn results(page: &JobPage, sent: &[(String, String)], now: i64) -> Markup {
    let link = |name: &str, value: &str| fmt::url("/ui/jobs", [(name, value)]);
    html! {
        @if page.jobs.is_empty() {
            p.muted role="status" { "No job matches these filters." }
        } @else {
            p.muted role="status" { (page.jobs.len()) " jobs on this page, newest first." }
            div.table-wrap {
                table.jobs {
                    thead { tr {
                        th scope="col" { "Job" } th scope="col" { "Status" } th scope="col" { "Kind" }
                        th scope="col" { "User" } th scope="col" { "Namespace" }
                        th scope="col" { "Submitted by" } th scope="col" { "Created" }
                        th scope="col" { "Summary" }
                    } }
                    tbody {
                        @for job in &page.jobs {
                            tr {
                                td { (job_link(job)) }
                                td { (layout::status(job.status)) }
                                td { a href=(link("kind", &job.kind)) { (job.kind) } }
                                td { @if let Some(u) = &job.username { a href=(link("username", u)) { (u) } } }
                                td { @if let Some(n) = &job.namespace { a href=(link("namespace", n)) { (n) } } }
                                td { a href=(link("submitted_by", &job.submitted_by)) { (job.submitted_by) } }
                                td { (layout::time_cell(job.created_at, now)) }
                                td { (summary(job)) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if sent.iter().any(|(k, _)| k == "cursor") {
                a href=(page_link(sent, None)) { "← Newest" }
            }
            @if let Some(next) = &page.next {
                a href=(page_link(sent, Some(&history::encode_cursor(next)))) rel="next" { "Older →" }
            }
        }
    }
}

/// What a job of the list says: its error, its current step or its summary.
fn summary(job: &JobRecord) -> String {
    match job.status {
        JobStatus::Failed => error_line(job),
        JobStatus::Running => format!(
            "running {}",
            job.current_step.as_deref().unwrap_or("its first step")
        ),
        _ => job.summary.clone().unwrap_or_default(),
    }
}

/// The same filters with another cursor (none: the first page).
fn page_link(sent: &[(String, String)], cursor: Option<&str>) -> String {
    let kept = sent
        .iter()
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| (k.as_str(), v.as_str()));
    fmt::url("/ui/jobs", kept.chain(cursor.map(|c| ("cursor", c))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_times_are_utc_and_the_rest_goes_to_the_api_parser() {
        assert_eq!(as_rfc3339("2026-11-26T09:15"), "2026-11-26T09:15:00Z");
        assert_eq!(as_rfc3339("2026-11-26T09:15:07"), "2026-11-26T09:15:07Z");
        assert_eq!(
            as_rfc3339("2026-11-26T09:15:00+01:00"),
            "2026-11-26T09:15:00+01:00"
        );
        assert_eq!(as_rfc3339("yesterday"), "yesterday");
    }

    #[test]
    fn empty_and_unknown_parameters_are_dropped() {
        let s = sent(Some("status=failed&username=&x=1&kind=+bootstrap_user+"));
        assert_eq!(
            s,
            [
                ("status".to_string(), "failed".to_string()),
                ("kind".to_string(), "bootstrap_user".to_string())
            ]
        );
        assert_eq!(
            page_link(&s, Some("ab")),
            "/ui/jobs?status=failed&kind=bootstrap_user&cursor=ab"
        );
    }
}
