//! Cancel and retry (each confirmed first: in a dialog where the script runs, else on a page
//! of its own), and revealing a generated password.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::job::{Loaded, load};
use super::layout::{self, Nav};
use super::session::{Session, TokenForm};
use super::{api_error_page, read_only_page, see_other};
use crate::domain::{JobStatus, StepStatus};
use crate::http::middleware::RequestId;
use crate::http::{AppState, jobs};
use crate::store::now_ms;

/// What cancelling does to this job.
fn cancel_text(l: &Loaded) -> String {
    match (l.job.status, l.job.current_step.as_deref()) {
        (JobStatus::Queued, _) => "The job has not started its next step: it becomes canceled at \
             once and nothing more runs."
            .into(),
        (_, step) => format!(
            "The command of the current step ({}) is stopped (SIGTERM to its process group, \
             then SIGKILL after KILL_GRACE_SECONDS), the step and the job become canceled, and \
             no further step runs. Steps already done are not undone.",
            step.unwrap_or("the first step")
        ),
    }
}

/// What retrying does to this job.
fn retry_text(l: &Loaded) -> String {
    let resume_at = l
        .steps
        .iter()
        .find(|s| s.status != StepStatus::Succeeded)
        .map_or("its first step", |s| s.name.as_str());
    format!(
        "The job is queued again and resumes at {resume_at}, its first step that did not \
         succeed; steps that succeeded are not run again, and earlier attempts stay in the \
         history."
    )
}

/// The cancel and retry buttons of a job's page, with their dialogs.
pub fn buttons(l: &Loaded, csrf: &str) -> Markup {
    let job = &l.job;
    let cancelable = matches!(job.status, JobStatus::Queued | JobStatus::Running);
    let retryable = matches!(job.status, JobStatus::Failed | JobStatus::Canceled);
    html! {
        div.actions {
            @if cancelable {
                a.button.danger href={ "/ui/jobs/" (job.id) "/cancel" } data-dialog="cancel-dialog" { "Cancel job…" }
                (dialog("cancel-dialog", "Cancel this job?", &cancel_text(l),
                        &format!("/ui/jobs/{}/cancel", job.id), csrf, "Cancel the job", "Keep it"))
            }
            @if retryable {
                a.button href={ "/ui/jobs/" (job.id) "/retry" } data-dialog="retry-dialog" { "Retry job…" }
                (dialog("retry-dialog", "Retry this job?", &retry_text(l),
                        &format!("/ui/jobs/{}/retry", job.id), csrf, "Retry the job", "Not now"))
            }
        }
    }
}

fn dialog(
    id: &str,
    title: &str,
    text: &str,
    action: &str,
    csrf: &str,
    confirm: &str,
    back: &str,
) -> Markup {
    html! {
        dialog id=(id) aria-labelledby={ (id) "-title" } {
            h2 id={ (id) "-title" } { (title) }
            p { (text) }
            form method="post" action=(action) {
                input type="hidden" name="csrf" value=(csrf);
                div.actions {
                    button.primary type="submit" { (confirm) }
                    // The safe choice has the focus when the dialog opens.
                    button type="submit" formmethod="dialog" formnovalidate autofocus { (back) }
                }
            }
        }
    }
}

/// A confirmation page (where no script runs, the buttons lead here).
fn confirm_page(
    session: &Session,
    l: &Loaded,
    what: &str,
    error: Option<(StatusCode, String)>,
) -> Response {
    let job = &l.job;
    let (title, text, confirm) = match what {
        "cancel" => ("Cancel this job?", cancel_text(l), "Cancel the job"),
        _ => ("Retry this job?", retry_text(l), "Retry the job"),
    };
    let body = html! {
        h1 { (title) }
        p { a href={ "/ui/jobs/" (job.id) } { code { (job.id) } } " · " (job.kind) " · " (layout::status(job.status)) }
        @if let Some((_, e)) = &error { p.error-text role="alert" { (e) } }
        p { (text) }
        form method="post" action={ "/ui/jobs/" (job.id) "/" (what) } {
            input type="hidden" name="csrf" value=(session.csrf);
            div.actions {
                button.primary type="submit" { (confirm) }
                a href={ "/ui/jobs/" (job.id) } { "Back to the job" }
            }
        }
    };
    let status = error.map_or(StatusCode::OK, |(s, _)| s);
    layout::page_with_status(status, title, Some(session), Nav::Jobs, body)
}

async fn confirm(state: AppState, session: Session, id: String, what: &str) -> Response {
    if !session.is_admin() {
        return read_only_page();
    }
    match load(&state, &id).await {
        Ok(l) => confirm_page(&session, &l, what, None),
        Err(e) => api_error_page(e),
    }
}

pub async fn confirm_cancel(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    confirm(state, session, id, "cancel").await
}

pub async fn confirm_retry(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    confirm(state, session, id, "retry").await
}

/// Runs the action; on success back to the job, else the confirmation page with the reason.
async fn act(state: AppState, form: TokenForm, id: String, what: &str) -> Response {
    let session = form.session;
    if !session.is_admin() {
        return read_only_page();
    }
    let caller = session.caller();
    let done = match what {
        "cancel" => jobs::cancel_job(&state, &caller, &id).await,
        _ => jobs::retry_job(&state, &caller, &id).await,
    };
    match done {
        Ok(id) => see_other(&format!("/ui/jobs/{id}")),
        Err(e) => {
            let detail = e.to_string();
            let status = axum::response::IntoResponse::into_response(e).status();
            match load(&state, &id).await {
                Ok(l) => confirm_page(&session, &l, what, Some((status, detail))),
                Err(e) => api_error_page(e),
            }
        }
    }
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: TokenForm,
) -> Response {
    act(state, form, id, "cancel").await
}

pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: TokenForm,
) -> Response {
    act(state, form, id, "retry").await
}

/// `POST /ui/jobs/{id}/password`: shows a generated password once, to an admin session, after
/// recording the viewing in the job's history (as `GET /jobs/{id}/result` does, through the
/// same code).
pub async fn reveal_password(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    form: TokenForm,
) -> Response {
    let session = form.session;
    if !session.is_admin() {
        return read_only_page();
    }
    let result = match jobs::job_result(&state, &session.caller(), &request_id, &id, None).await {
        Ok(r) => r,
        Err(e) => return api_error_page(e),
    };
    let job_id = result["job_id"].as_str().unwrap_or_default().to_string();
    let c = &result["credentials"];
    let Some(password) = c["password"].as_str() else {
        let why = if c["expired"] == true {
            "The generated password has expired and was erased."
        } else {
            "This job has no generated password to show."
        };
        return layout::error_page(StatusCode::NOT_FOUND, "No password", why);
    };
    let expires = match state.store.secret(&job_id).await {
        Ok(s) => s.and_then(|s| s.expires_at),
        Err(_) => None,
    };
    let now = now_ms();
    let body = html! {
        h1 { "Password of " (c["username"].as_str().unwrap_or_default()) }
        p { "Store it now: this page is shown once and not kept by the browser. Revealing it again is possible until it expires, and each reveal is recorded." }
        div.secret {
            label for="password" { "Password" }
            input #password type="text" readonly value=(password) spellcheck="false" autocomplete="off";
            (layout::copy_button("password", "password"))
        }
        @if let Some(e) = expires {
            p.notice { "It expires " (layout::time(e, now)) " and is then erased from the service." }
        }
        p.muted { "This viewing was recorded in the job's history as credentials_read by " (session.name) "." }
        p { a href={ "/ui/jobs/" (job_id) } { "Back to the job" } }
    };
    layout::page("Password", Some(&session), Nav::Jobs, body)
}
