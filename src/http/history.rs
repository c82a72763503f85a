//! The audit trail: `GET /jobs` (filters, newest first, keyset cursor) and
//! `GET /jobs/{id}/history` (every event and every attempt of one job, oldest first).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::DateTime;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorBody;
use super::{ApiError, AppState, extract, views};
use crate::domain::{AttemptOutcome, ErrorKind, JobKind, JobStatus, Username};
use crate::store::{AttemptRecord, Cursor, EventRecord, JobFilter, JobRecord};

const DEFAULT_LIMIT: u32 = 50;
pub(super) const MAX_LIMIT: u32 = 500;
/// The query parameters of `GET /jobs`.
pub(super) const LIST_PARAMS: &[&str] = &[
    "status",
    "kind",
    "username",
    "namespace",
    "submitted_by",
    "created_after",
    "created_before",
    "limit",
    "cursor",
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(history))
}

/// A page of `GET /jobs`.
#[derive(Serialize, ToSchema)]
pub struct JobListBody {
    /// Job statuses without their steps, plus `username` and `namespace`; newest first.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    /// Pass it back unchanged as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Everything recorded about one job, oldest first.
#[derive(Serialize, ToSchema)]
pub struct JobHistoryBody {
    pub job_id: String,
    pub events: Vec<HistoryEvent>,
    pub attempts: Vec<HistoryAttempt>,
}

/// One audit event: `submitted`, `claimed`, `step_started`, `step_finished`, `retry_scheduled`,
/// `lease_expired`, `recovered`, `interrupted`, `cancel_requested`, `canceled`,
/// `retry_requested`, `finished`.
#[derive(Serialize, ToSchema)]
pub struct HistoryEvent {
    pub at: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The job's claim number at the time.
    pub attempt: Option<i64>,
    /// The worker that wrote it; null for what an operator did.
    pub worker: Option<String>,
    pub detail: Option<String>,
    /// `retry_scheduled` only (absent otherwise): when the job is due again, RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, example = "2026-11-26T09:15:02.600Z")]
    pub retry_at: Option<String>,
    /// `retry_scheduled` only (absent otherwise): the delay before the retry, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub delay_ms: Option<i64>,
}

/// One attempt of one step.
#[derive(Serialize, ToSchema)]
pub struct HistoryAttempt {
    pub step: String,
    /// 1-based, per step.
    pub attempt: i64,
    /// The claim it ran under (the `attempt` of its `claimed` event).
    pub job_attempt: i64,
    /// `running` while it runs.
    pub outcome: AttemptOutcome,
    /// For failures.
    pub error_kind: Option<ErrorKind>,
    /// Redacted command line.
    pub command: Option<String>,
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub worker: String,
}

/// The query of `GET /jobs` (every parameter is optional; unknown ones are 400).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documentation only: the query is parsed strictly by `extract::query`
pub struct ListQuery {
    /// `queued`, `running`, `succeeded`, `failed` or `canceled`.
    status: Option<String>,
    /// A job kind, e.g. `bootstrap_user`.
    kind: Option<String>,
    username: Option<String>,
    namespace: Option<String>,
    /// The name of the admin key that submitted the job.
    submitted_by: Option<String>,
    /// RFC 3339; jobs created at or after this instant.
    created_after: Option<String>,
    /// RFC 3339; jobs created before this instant.
    created_before: Option<String>,
    /// Page size, 1-500 (default 50).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/jobs", tag = "jobs", summary = "List jobs, newest first",
    params(ListQuery),
    responses((status = 200, body = JobListBody), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<JobListBody>, ApiError> {
    let params = extract::query(q.as_deref(), LIST_PARAMS)?;
    let ListRequest {
        filter,
        after,
        limit,
    } = list_request(&params)?;
    let page = state
        .store
        .list_jobs(&filter, after.as_ref(), limit)
        .await?;
    Ok(Json(JobListBody {
        items: page.jobs.iter().map(list_item).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
}

#[utoipa::path(get, path = "/jobs/{id}/history", tag = "jobs",
    summary = "Every event and every attempt of a job, oldest first",
    params(("id" = String, Path, description = "job id (UUID)")),
    responses((status = 200, body = JobHistoryBody), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
async fn history(
    State(state): State<AppState>,
    extract::AppPath(id): extract::AppPath<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<JobHistoryBody>, ApiError> {
    extract::query(q.as_deref(), &[])?;
    let not_found = || ApiError::NotFound(format!("no job with id {id:?}"));
    let uuid = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
    let h = state
        .store
        .history(&uuid.to_string())
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(JobHistoryBody {
        job_id: h.job.id,
        events: h.events.into_iter().map(event).collect(),
        attempts: h.attempts.into_iter().map(attempt).collect(),
    }))
}

/// What a `GET /jobs` query asks for.
pub(super) struct ListRequest {
    pub filter: JobFilter,
    pub after: Option<Cursor>,
    pub limit: u32,
}

/// The filters, cursor and page size of a `GET /jobs` query (400 for a bad one): the job list
/// of the API and of the dashboard.
pub(super) fn list_request(params: &HashMap<String, String>) -> Result<ListRequest, ApiError> {
    let filter = filter(params)?;
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}"
                ))
            })?,
    };
    let after = params.get("cursor").map(|c| decode_cursor(c)).transpose()?;
    Ok(ListRequest {
        filter,
        after,
        limit,
    })
}

/// A job of the list: its status without steps, plus whom it is about.
fn list_item(job: &JobRecord) -> Value {
    let mut v = views::job_summary(job);
    v["username"] = json!(job.username);
    v["namespace"] = json!(job.namespace);
    v
}

fn event(e: EventRecord) -> HistoryEvent {
    HistoryEvent {
        at: views::rfc3339(e.at),
        kind: e.kind,
        attempt: e.attempt,
        worker: e.worker,
        detail: e.detail,
        retry_at: e.retry_at.map(views::rfc3339),
        delay_ms: e.delay_ms,
    }
}

/// An attempt; one that has not ended yet has the outcome `running`.
fn attempt(a: AttemptRecord) -> HistoryAttempt {
    HistoryAttempt {
        step: a.step,
        attempt: a.attempt,
        job_attempt: a.job_attempt,
        outcome: a.outcome,
        error_kind: a.error_kind,
        command: a.command,
        exit_code: a.exit_code,
        stdout: a.stdout,
        stderr: a.stderr,
        started_at: views::rfc3339(a.started_at),
        finished_at: a.finished_at.map(views::rfc3339),
        duration_ms: a.duration_ms,
        worker: a.worker,
    }
}

/// `rule` is a predicate that reads after the parameter's name, like the domain's rules
/// ("must match …"), so the two never double up.
fn bad(name: &str, rule: &str) -> ApiError {
    ApiError::BadRequest(format!("{name} {rule}"))
}

/// The filters of `GET /jobs`. Values that no job can have are refused rather than answered
/// with an empty list, so that a typo is noticed.
fn filter(params: &HashMap<String, String>) -> Result<JobFilter, ApiError> {
    let get = |name: &str| params.get(name).map(String::as_str);
    let status = get("status")
        .map(|s| {
            JobStatus::parse(s).ok_or_else(|| {
                let all: Vec<_> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                bad("status", &format!("must be one of {}", all.join(", ")))
            })
        })
        .transpose()?;
    let kind = get("kind")
        .map(|k| {
            JobKind::parse(k)
                .map(|k| k.as_str().to_string())
                .ok_or_else(|| {
                    let kinds: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
                    bad("kind", &format!("must be one of {}", kinds.join(", ")))
                })
        })
        .transpose()?;
    let username = get("username")
        .map(|u| {
            Username::parse(u)
                .map(|u| u.as_str().to_string())
                .map_err(|rule| bad("username", &rule))
        })
        .transpose()?;
    let namespace = get("namespace")
        .map(|n| {
            is_rfc1035_label(n)
                .then(|| n.to_string())
                .ok_or_else(|| bad("namespace", "must be a namespace name (RFC 1035 label)"))
        })
        .transpose()?;
    let submitted_by = get("submitted_by")
        .map(|n| {
            let ok = !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            ok.then(|| n.to_string())
                .ok_or_else(|| bad("submitted_by", "must be an admin key name"))
        })
        .transpose()?;
    Ok(JobFilter {
        status,
        kind,
        username,
        namespace,
        submitted_by,
        created_after: get("created_after")
            .map(|t| timestamp("created_after", t))
            .transpose()?,
        created_before: get("created_before")
            .map(|t| timestamp("created_before", t))
            .transpose()?,
    })
}

fn is_rfc1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// An RFC 3339 timestamp in ms since the epoch, rounded up to the next millisecond (jobs are
/// stamped in whole milliseconds, so `>=` and `<` keep their meaning).
fn timestamp(name: &str, value: &str) -> Result<i64, ApiError> {
    let t = DateTime::parse_from_rfc3339(value).map_err(|_| {
        bad(
            name,
            "must be an RFC 3339 timestamp, e.g. 2026-11-26T09:15:02Z",
        )
    })?;
    let extra = i64::from(t.timestamp_subsec_nanos() % 1_000_000 != 0);
    Ok(t.timestamp_millis() + extra)
}

/// The cursor is opaque to clients: hex of `<created_at ms>:<job id>`.
pub(super) fn encode_cursor(c: &Cursor) -> String {
    hex::encode(format!("{}:{}", c.created_at, c.id))
}

fn decode_cursor(s: &str) -> Result<Cursor, ApiError> {
    let invalid = || {
        ApiError::BadRequest(
            "cursor is not valid; pass the next_cursor of a previous page unchanged".into(),
        )
    };
    let text = hex::decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    let (at, id) = text.split_once(':').ok_or_else(invalid)?;
    let created_at = at.parse::<i64>().map_err(|_| invalid())?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok(Cursor {
        created_at,
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            created_at: 1_764_148_502_123,
            id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)).unwrap(), c);
        for bad in [
            "",
            "zz",
            "abc",
            &hex::encode("12:not-a-uuid"),
            &hex::encode("x:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
            &hex::encode("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_rounded_up_to_the_millisecond() {
        assert_eq!(timestamp("t", "1970-01-01T00:00:01Z").unwrap(), 1_000);
        assert_eq!(timestamp("t", "1970-01-01T01:00:01+01:00").unwrap(), 1_000);
        assert_eq!(timestamp("t", "1970-01-01T00:00:01.0005Z").unwrap(), 1_001);
        for bad in [
            "yesterday",
            "2026-01-01",
            "2026-01-01 00:00:00",
            "1764148502",
        ] {
            assert!(timestamp("t", bad).is_err(), "{bad}");
        }
    }
}
