//! `GET /ui/jobs/{id}/events`: server-sent events that say when a job changed, fed by the
//! store's change notifications. The page fetches its changing part again on each event.
//!
//! A stream ends when the job is finished (after saying so), when the service starts shutting
//! down (an open stream would hold graceful shutdown), and after [`MAX_STREAM`] (the browser
//! reconnects). A notification can be lost (on PostgreSQL while the listener reconnects): the
//! job is read again at least every [`REREAD`] anyway, as the API's long-poll does.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api_error_page;
use crate::http::{AppState, jobs};
use crate::store::{JobRecord, Store};

/// The longest time without reading the job.
const REREAD: Duration = Duration::from_secs(2);

/// The longest a stream stays open.
const MAX_STREAM: Duration = Duration::from_secs(300);

/// What a stream has to do next.
struct Follow {
    store: Store,
    id: String,
    changes: broadcast::Receiver<String>,
    stop: CancellationToken,
    /// `(status, current step, updated_at)` last reported; `None` before the first event.
    seen: Option<(String, Option<String>, i64)>,
    ends_at: Instant,
    done: bool,
}

pub async fn events(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if state.is_shutting_down() {
        // The script falls back to polling.
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    // Subscribed before the first read, so that no change between the two is missed.
    let changes = state.store.subscribe();
    let job = match jobs::find(&state, &id).await {
        Ok(job) => job,
        Err(e) => return api_error_page(e),
    };
    let follow = Follow {
        store: state.store.clone(),
        id: job.id,
        changes,
        stop: state.shutdown.clone(),
        seen: None,
        ends_at: Instant::now() + MAX_STREAM,
        done: false,
    };
    let mut response = Sse::new(stream_of(follow))
        .keep_alive(KeepAlive::default())
        .into_response();
    // Proxies that buffer responses (nginx) would hold the events back.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    response
}

fn stream_of(follow: Follow) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(follow, |mut f| async move {
        if f.done {
            return None;
        }
        loop {
            if let Some(event) = f.changed().await {
                return Some((Ok(event), f));
            }
            if f.done {
                return None;
            }
            f.wait().await;
        }
    })
}

impl Follow {
    /// Reads the job; an event if it changed since the last one (or none was sent yet).
    async fn changed(&mut self) -> Option<Event> {
        let job = match self.store.job(&self.id).await {
            Ok(Some(job)) => job,
            // Gone (pruned) or the database is unavailable: the page polls instead.
            _ => {
                self.done = true;
                return None;
            }
        };
        let now = (
            job.status.as_str().to_string(),
            job.current_step.clone(),
            job.updated_at,
        );
        if self.seen.as_ref() == Some(&now) {
            return None;
        }
        self.seen = Some(now);
        self.done = job.status.is_final();
        Some(event(&job))
    }

    /// Waits for a notification about this job, a lag, [`REREAD`], or the end.
    async fn wait(&mut self) {
        let reread = Instant::now() + REREAD;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => { self.done = true; return; }
                _ = tokio::time::sleep_until(self.ends_at) => { self.done = true; return; }
                _ = tokio::time::sleep_until(reread) => return,
                change = self.changes.recv() => match change {
                    Ok(id) if id != self.id => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => { self.done = true; return; }
                },
            }
        }
    }
}

fn event(job: &JobRecord) -> Event {
    let data = json!({
        "status": job.status.as_str(),
        "current_step": job.current_step,
        "final": job.status.is_final(),
    });
    Event::default().event("job").data(data.to_string())
}
