//! `GET /ui`: counts by status and kind, the queue, what runs now, the latest failures, and
//! readiness.

use std::time::{Duration, Instant};

use axum::extract::{Extension, State};
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{self, Nav};
use super::session::Session;
use super::{Ui, fmt};
use crate::domain::JobStatus;
use crate::http::{AppState, health};
use crate::store::{JobCounts, JobFilter, JobRecord, Store, StoreError, now_ms};

/// How long counted totals are reused once counting is slow: it reads an index entry of every
/// job (see `Store::job_counts`), which at a million jobs is worth doing once per this, not per
/// view.
const COUNTS_FRESH: Duration = Duration::from_secs(10);

/// A count that took less than this is read again at every view (a small database).
const COUNT_IS_CHEAP: Duration = Duration::from_millis(50);

/// The counts: read at every view while that is cheap, else at most once per
/// [`COUNTS_FRESH`] by this process (one read at a time: the views that arrive meanwhile wait
/// for it and share it).
#[derive(Default)]
pub struct CountsCache {
    last: tokio::sync::Mutex<Option<Counted>>,
}

struct Counted {
    at: Instant,
    took: Duration,
    read_ms: i64,
    counts: JobCounts,
}

impl CountsCache {
    /// The counts and when they were read (ms since the epoch).
    pub async fn get(&self, store: &Store) -> Result<(JobCounts, i64), StoreError> {
        let mut last = self.last.lock().await;
        if let Some(c) = last.as_ref()
            && c.took >= COUNT_IS_CHEAP
            && c.at.elapsed() < COUNTS_FRESH
        {
            return Ok((c.counts.clone(), c.read_ms));
        }
        let started = Instant::now();
        let counts = store.job_counts().await?;
        let took = started.elapsed();
        tracing::debug!(took_ms = took.as_millis() as u64, "dashboard: jobs counted");
        let read_ms = now_ms();
        *last = Some(Counted {
            at: Instant::now(),
            took,
            read_ms,
            counts: counts.clone(),
        });
        Ok((counts, read_ms))
    }
}

fn filter(status: JobStatus) -> JobFilter {
    JobFilter {
        status: Some(status),
        ..JobFilter::default()
    }
}

pub async fn page(
    State(state): State<AppState>,
    Extension(ui): Extension<std::sync::Arc<Ui>>,
    Extension(session): Extension<Session>,
) -> Response {
    let (running, failed) = (filter(JobStatus::Running), filter(JobStatus::Failed));
    let (counts, queue, oldest, running, failed, ready) = tokio::join!(
        ui.counts.get(&state.store),
        state.store.queue_counts(),
        state.store.oldest_queued(),
        state.store.list_jobs(&running, None, 20),
        state.store.list_jobs(&failed, None, 10),
        health::readiness(&state),
    );
    let now = now_ms();
    let body = html! {
        h1 { "Overview" }
        div.cards {
            section.card aria-labelledby="queue-title" {
                h2 #queue-title { "Queue" }
                @match (&queue, &oldest) {
                    (Ok((queued, running)), Ok(oldest)) => {
                        dl.stats {
                            dt { a href="/ui/jobs?status=queued" { "Queued" } } dd { (queued) }
                            dt { a href="/ui/jobs?status=running" { "Running" } } dd { (running) }
                            dt { "Oldest queued" }
                            dd {
                                @if let Some((id, created)) = oldest {
                                    a href={ "/ui/jobs/" (id) } { "waiting " (fmt::relative(*created, now).trim_end_matches(" ago")) }
                                } @else { "none" }
                            }
                        }
                    }
                    _ => { (unavailable()) }
                }
            }
            section.card aria-labelledby="ready-title" {
                h2 #ready-title { "Readiness" }
                ul.checks {
                    @for (name, check) in &ready.checks {
                        @let ok = check.as_str() == Some("ok");
                        li {
                            span class={ "badge tone-" (if ok { "ok" } else { "err" }) } {
                                span.icon aria-hidden="true" { (if ok { "✓" } else { "✕" }) } " " (check.as_str().unwrap_or("?"))
                            }
                            " " (name)
                        }
                    }
                }
            }
            (counts_cards(&counts, now))
        }
        section aria-labelledby="running-title" {
            h2 #running-title { "Running now" }
            @match &running {
                Ok(page) if page.jobs.is_empty() => p.muted { "No job is running." },
                Ok(page) => (running_table(&page.jobs, now)),
                Err(_) => (unavailable()),
            }
        }
        section aria-labelledby="failures-title" {
            h2 #failures-title { "Latest failures" }
            @match &failed {
                Ok(page) if page.jobs.is_empty() => p.muted { "No job has failed." },
                Ok(page) => (failures_table(&page.jobs, now)),
                Err(_) => (unavailable()),
            }
            p { a href="/ui/jobs?status=failed" { "Every failed job" } }
        }
    };
    layout::page("Overview", Some(&session), Nav::Overview, body)
}

fn unavailable() -> Markup {
    html! { p.error-text { "The database is unavailable; this part will show again once it answers." } }
}

fn counts_cards(counts: &Result<(JobCounts, i64), StoreError>, now: i64) -> Markup {
    let Ok((counts, read_at)) = counts else {
        return html! { section.card { h2 { "Jobs" } (unavailable()) } };
    };
    html! {
        section.card aria-labelledby="status-title" {
            h2 #status-title { "Jobs by status" }
            table.compact {
                thead { tr { th scope="col" { "Status" } th scope="col" class="num" { "Jobs" } } }
                tbody {
                    @for (status, n) in &counts.by_status {
                        tr {
                            td { a href={ "/ui/jobs?status=" (status.as_str()) } { (layout::status(*status)) } }
                            td.num { (n) }
                        }
                    }
                }
                tfoot { tr { th scope="row" { "All" } td.num { (counts.total()) } } }
            }
            p.muted { "Counted " (fmt::relative(*read_at, now)) "; with many jobs, counts are read at most every 10 s." }
        }
        section.card aria-labelledby="kind-title" {
            h2 #kind-title { "Jobs by kind" }
            @if counts.by_kind.is_empty() { p.muted { "No jobs yet." } }
            @else {
                table.compact {
                    thead { tr { th scope="col" { "Kind" } th scope="col" class="num" { "Jobs" } } }
                    tbody {
                        @for (kind, n) in &counts.by_kind {
                            tr { td { a href={ "/ui/jobs?kind=" (kind) } { (kind) } } td.num { (n) } }
                        }
                    }
                }
            }
        }
    }
}

fn running_table(jobs: &[JobRecord], now: i64) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead { tr {
                    th scope="col" { "Job" } th scope="col" { "Kind" } th scope="col" { "Tenant" }
                    th scope="col" { "Current step" } th scope="col" { "Running for" }
                } }
                tbody {
                    @for job in jobs {
                        tr {
                            td { (job_link(job)) }
                            td { (job.kind) }
                            td { (tenant(job)) }
                            td { (job.current_step.as_deref().unwrap_or("—")) }
                            td { (job.started_at.map(|s| fmt::duration(now - s)).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}

fn failures_table(jobs: &[JobRecord], now: i64) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead { tr {
                    th scope="col" { "Job" } th scope="col" { "Kind" } th scope="col" { "Tenant" }
                    th scope="col" { "Failed" } th scope="col" { "Reason" }
                } }
                tbody {
                    @for job in jobs {
                        tr {
                            td { (job_link(job)) }
                            td { (job.kind) }
                            td { (tenant(job)) }
                            td { (layout::time_cell(job.finished_at.unwrap_or(job.updated_at), now)) }
                            td { (error_line(job)) }
                        }
                    }
                }
            }
        }
    }
}

/// A link to the job, its id in monospace.
pub fn job_link(job: &JobRecord) -> Markup {
    html! { a.id href={ "/ui/jobs/" (job.id) } { code { (job.id) } } }
}

/// The user and namespace a job is about.
pub fn tenant(job: &JobRecord) -> String {
    match (&job.username, &job.namespace) {
        (Some(u), Some(n)) if u != n => format!("{u} / {n}"),
        (Some(u), _) => u.clone(),
        (None, Some(n)) => n.clone(),
        (None, None) => String::new(),
    }
}

/// The one-line reason of a failed job: `step: detail`.
pub fn error_line(job: &JobRecord) -> String {
    let Some(error) = job
        .error
        .as_deref()
        .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
    else {
        return job.summary.clone().unwrap_or_default();
    };
    let step = error["step"].as_str().unwrap_or("job");
    let detail = error["detail"].as_str().unwrap_or_default();
    format!("{step}: {}", fmt::one_line(detail, 160))
}
