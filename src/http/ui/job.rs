//! `GET /ui/jobs/{id}`: one job, its steps as a timeline, every attempt with its output, the
//! events and the result. The part that changes while the job runs is also served alone
//! (`/live`), which the script fetches again on every change the event stream reports.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{self, Nav};
use super::session::Session;
use super::{actions, api_error_page, fmt};
use crate::domain::JobStatus;
use crate::http::views::{self, PasswordAccess};
use crate::http::{ApiError, AppState, jobs};
use crate::store::{AttemptRecord, EventRecord, JobRecord, SecretRecord, StepRecord, now_ms};

/// Everything the page shows about one job.
pub struct Loaded {
    pub job: JobRecord,
    pub steps: Vec<StepRecord>,
    pub events: Vec<EventRecord>,
    pub attempts: Vec<AttemptRecord>,
    /// The `credentials` of the result (a password never in it), for a finished job.
    pub credentials: Value,
    pub secret: Option<SecretRecord>,
}

/// Reads the job with everything recorded about it.
pub async fn load(state: &AppState, id: &str) -> Result<Loaded, ApiError> {
    let id = jobs::job_id(id)?;
    let not_found = || ApiError::NotFound(format!("no job with id {id:?}"));
    let history = state.store.history(&id).await?.ok_or_else(not_found)?;
    let steps = state.store.steps(&id).await?;
    let (credentials, secret) = if history.job.status.is_final() {
        let last = state.store.last_attempts(&id).await?;
        let secret = state.store.secret(&id).await?;
        // The page never carries the password: revealing it is an action of its own, recorded.
        let access = PasswordAccess::Withheld("reveal");
        let result = views::job_result(&history.job, &steps, &last, secret.as_ref(), access);
        (result.body["credentials"].clone(), secret)
    } else {
        (Value::Null, None)
    };
    Ok(Loaded {
        job: history.job,
        steps,
        events: history.events,
        attempts: history.attempts,
        credentials,
        secret,
    })
}

pub async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let loaded = match load(&state, &id).await {
        Ok(l) => l,
        Err(e) => return api_error_page(e),
    };
    let job = &loaded.job;
    let title = format!(
        "{} {}",
        job.kind,
        job.username
            .as_deref()
            .or(job.namespace.as_deref())
            .unwrap_or("")
    );
    let body = html! {
        h1 { (job.kind) @if let Some(u) = &job.username { " · " (u) } }
        p.live-bar {
            span #live-status role="status" aria-live="polite" {
                @if job.status.is_final() { "This job has finished." }
                @else { "This page follows the job as it runs." }
            }
            " "
            button #live-toggle.link-button type="button" hidden { "Pause live updates" }
        }
        div #job data-fragment={ "/ui/jobs/" (job.id) "/live" } data-events={ "/ui/jobs/" (job.id) "/events" }
            data-final=(job.status.is_final()) {
            (live_part(&loaded, &session, now_ms()))
        }
    };
    layout::page(&title, Some(&session), Nav::Jobs, body)
}

/// `GET /ui/jobs/{id}/live`: the part of the page that changes.
pub async fn fragment(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    match load(&state, &id).await {
        Ok(loaded) => layout::html_response(StatusCode::OK, live_part(&loaded, &session, now_ms())),
        Err(e) => api_error_page(e),
    }
}

fn live_part(l: &Loaded, session: &Session, now: i64) -> Markup {
    let job = &l.job;
    html! {
        div #job-state hidden data-status=(job.status.as_str())
            data-step=(job.current_step.as_deref().unwrap_or("")) data-final=(job.status.is_final()) {}
        section.summary aria-label="Status" {
            p.status-line {
                (layout::status(job.status))
                @if let Some(step) = &job.current_step { " at step " strong { (step) } }
                @if job.status == JobStatus::Queued && job.run_at > now {
                    " · next attempt " (layout::time(job.run_at, now))
                }
                @if job.cancel_requested && !job.status.is_final() { " · cancel requested" }
            }
            @if let Some(s) = &job.summary { p { (s) } }
            (error_box(job))
            @if session.is_admin() { (actions::buttons(l, &session.csrf)) }
        }
        (details(job, now))
        (credentials(l, session, now))
        (timeline(&l.steps, now))
        (attempts(&l.attempts, now))
        (events(&l.events, now))
        section aria-labelledby="inputs-title" {
            h2 #inputs-title { "Inputs" }
            pre.code #inputs { (pretty(&job.inputs)) }
            (layout::copy_button("inputs", "inputs"))
        }
    }
}

fn error_box(job: &JobRecord) -> Markup {
    let Some(error) = job
        .error
        .as_deref()
        .and_then(|e| serde_json::from_str::<Value>(e).ok())
    else {
        return html! {};
    };
    html! {
        div.error-box role="note" {
            p {
                strong { "Failed at " (error["step"].as_str().unwrap_or("?")) }
                " (" (error["kind"].as_str().unwrap_or("?")) ")"
            }
            pre { (error["detail"].as_str().unwrap_or_default()) }
        }
    }
}

fn details(job: &JobRecord, now: i64) -> Markup {
    let filter = |name: &str, value: &str| fmt::url("/ui/jobs", [(name, value)]);
    html! {
        section aria-labelledby="details-title" {
            h2 #details-title { "Details" }
            dl.details {
                dt { "Job id" } dd { code #job-id { (job.id) } " " (layout::copy_button("job-id", "id")) }
                dt { "Kind" } dd { a href=(filter("kind", &job.kind)) { (job.kind) } }
                @if let Some(u) = &job.username {
                    dt { "User" } dd { a href=(filter("username", u)) { (u) } }
                }
                @if let Some(n) = &job.namespace {
                    dt { "Namespace" } dd { a href=(filter("namespace", n)) { (n) } }
                }
                dt { "Submitted by" } dd { a href=(filter("submitted_by", &job.submitted_by)) { (job.submitted_by) } }
                dt { "Request id" } dd { code { (job.request_id) } }
                dt { "Created" } dd { (layout::time(job.created_at, now)) }
                @if let Some(t) = job.started_at { dt { "Started" } dd { (layout::time(t, now)) } }
                @if let Some(t) = job.finished_at {
                    dt { "Finished" } dd { (layout::time(t, now)) }
                    dt { "Took" } dd { (fmt::duration(t - job.started_at.unwrap_or(job.created_at))) }
                }
                dt { "Claims" } dd { (job.attempt) }
            }
        }
    }
}

/// Whether the job set a password, and whether it may be revealed.
fn credentials(l: &Loaded, session: &Session, now: i64) -> Markup {
    let c = &l.credentials;
    if c.is_null() {
        return html! {};
    }
    let user = c["username"].as_str().unwrap_or_default();
    let expires = l.secret.as_ref().and_then(|s| s.expires_at);
    html! {
        section aria-labelledby="credentials-title" {
            h2 #credentials-title { "Credentials" }
            @if c["generated"] == false {
                p { "The password of " strong { (user) } " was chosen by the submitter; it is not kept." }
            } @else if c["expired"] == true {
                p { "The generated password of " strong { (user) } " has expired and was erased." }
            } @else if !session.is_admin() {
                p { "A password was generated for " strong { (user) } ". Read-only keys never see it." }
            } @else {
                p {
                    "A password was generated for " strong { (user) } "."
                    @if let Some(e) = expires {
                        " It can be revealed until " (fmt::absolute(e)) " (" (fmt::relative(e, now)) "), then it is erased."
                    }
                }
                form method="post" action={ "/ui/jobs/" (l.job.id) "/password" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button type="submit" { "Reveal the password" }
                    span.hint { " Each reveal is recorded in the job's history." }
                }
            }
        }
    }
}

fn timeline(steps: &[StepRecord], now: i64) -> Markup {
    html! {
        section aria-labelledby="steps-title" {
            h2 #steps-title { "Steps" }
            ol.timeline {
                @for s in steps {
                    li class={ "step step-" (s.status.as_str()) } {
                        div.step-head {
                            strong { (s.name) } " " (layout::step_status(s.status))
                        }
                        p.muted {
                            (s.attempts) " attempt" @if s.attempts != 1 { "s" }
                            @if let Some(code) = s.exit_code { " · exit code " (code) }
                            @if let Some(t) = s.started_at { " · started " (layout::time(t, now)) }
                            @if let (Some(a), Some(b)) = (s.started_at, s.finished_at) { " · took " (fmt::duration(b - a)) }
                        }
                        @if let Some(out) = s.output.as_deref().filter(|o| *o != "null") {
                            details.step-result id={ "result-" (s.position) } { summary { "Result of the step" } pre.code.small { (pretty(out)) } }
                        }
                    }
                }
            }
        }
    }
}

fn attempts(attempts: &[AttemptRecord], now: i64) -> Markup {
    html! {
        section aria-labelledby="attempts-title" {
            h2 #attempts-title { "Attempts" }
            @if attempts.is_empty() { p.muted { "Nothing has run yet." } }
            @for a in attempts {
                details.attempt id={ "attempt-" (a.id) } {
                    summary {
                        strong { (a.step) " #" (a.attempt) } " " (layout::outcome(a.outcome))
                        @if let Some(code) = a.exit_code { " · exit " (code) }
                        @if let Some(d) = a.duration_ms { " · " (fmt::duration(d)) }
                        " · " (fmt::relative(a.started_at, now))
                    }
                    dl.details {
                        dt { "Worker" } dd { code { (a.worker) } }
                        dt { "Claim" } dd { (a.job_attempt) }
                        @if let Some(k) = &a.error_kind { dt { "Error kind" } dd { (k.as_str()) } }
                        dt { "Started" } dd { (layout::time(a.started_at, now)) }
                        @if let Some(t) = a.finished_at { dt { "Finished" } dd { (layout::time(t, now)) } }
                    }
                    @if let Some(cmd) = &a.command {
                        (output("Command", &format!("cmd-{}", a.id), cmd, ""))
                    }
                    @if let Some(stdin) = &a.stdin_preview {
                        (output("Input (stdin)", &format!("in-{}", a.id), stdin, ""))
                    }
                    (output("stdout", &format!("out-{}", a.id), &a.stdout, ""))
                    (output("stderr", &format!("err-{}", a.id), &a.stderr, "stderr"))
                }
            }
        }
    }
}

/// A block of command output: monospace, scrollable, with copy and expand buttons.
fn output(label: &str, id: &str, text: &str, class: &str) -> Markup {
    html! {
        div.output {
            div.output-head {
                span { (label) }
                @if !text.is_empty() {
                    (layout::copy_button(id, label))
                    button.expand type="button" data-expand=(id) hidden { "Expand" }
                }
            }
            @if text.is_empty() { p.muted.small { "(empty)" } }
            @else { pre class={ "out " (class) } id=(id) tabindex="0" { (text) } }
        }
    }
}

fn events(events: &[EventRecord], now: i64) -> Markup {
    html! {
        section aria-labelledby="events-title" {
            h2 #events-title { "Events" }
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Claim" }
                        th scope="col" { "Worker" } th scope="col" { "Detail" }
                    } }
                    tbody {
                        @for e in events {
                            tr {
                                td { (layout::time_cell(e.at, now)) }
                                td { (e.kind) }
                                td { (e.attempt.map(|a| a.to_string()).unwrap_or_default()) }
                                td { @if let Some(w) = &e.worker { code { (w) } } }
                                td {
                                    (e.detail.as_deref().unwrap_or_default())
                                    @if let (Some(at), Some(delay)) = (e.retry_at, e.delay_ms) {
                                        br; span.muted { "retry after " (fmt::duration(delay)) ", due " (layout::time(at, now)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Stored JSON, indented.
fn pretty(json: &str) -> String {
    serde_json::from_str::<Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_string())
}
