//! Prometheus metrics: one process-wide recorder, small functions for each thing counted, and
//! the text rendering served at `GET /metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use crate::domain::{AttemptOutcome, JobStatus};

use metrics::{
    SharedString, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets in seconds: from a fast HTTP answer to a slow `namespaces add`.
const SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1200.0,
];

/// Installs the recorder (once per process; later calls return the same handle).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .expect("buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours just stays empty.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        describe();
        handle
    })
}

/// The `# HELP` text (and unit) of every metric family this service records.
fn describe() {
    describe_counter!(
        "http_requests_total",
        Unit::Count,
        "HTTP requests answered, by method (known methods, else `other`), matched route \
         template (else `unmatched`) and status code (codes this API uses, else its class)"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time from receiving an HTTP request's headers to its response, in seconds, by method \
         and route"
    );
    describe_gauge!(
        "http_connections_open",
        Unit::Count,
        "HTTP connections currently open"
    );
    describe_counter!(
        "http_connections_closed_total",
        Unit::Count,
        "HTTP connections the server closed on its own, by reason: `header_timeout` (headers not \
         received in time), `idle_timeout` (keep-alive connection idle too long) or `evicted` \
         (idle connection closed to make room at the connection cap)"
    );
    describe_counter!(
        "jobs_submitted_total",
        Unit::Count,
        "Jobs accepted (202), by kind"
    );
    describe_counter!(
        "jobs_finished_total",
        Unit::Count,
        "Jobs that reached a final status, by kind and status"
    );
    describe_histogram!(
        "job_duration_seconds",
        Unit::Seconds,
        "Time from a job's submission to its final status, in seconds, by kind and status"
    );
    describe_counter!(
        "step_attempts_total",
        Unit::Count,
        "Attempts of job steps, by step and outcome"
    );
    describe_histogram!(
        "step_duration_seconds",
        Unit::Seconds,
        "Duration of one attempt of a job step, in seconds, by step and outcome"
    );
    describe_counter!(
        "cli_invocations_total",
        Unit::Count,
        "everestctl/kubectl runs (jobs and pass-through reads), by binary name and exit class \
         (`ok`, `failed`, `timeout`, `signal`, `canceled`, `not_found`)"
    );
    describe_counter!(
        "lease_recoveries_total",
        Unit::Count,
        "Jobs taken over from a dead owner, at start or after their lease expired"
    );
    describe_counter!(
        "lock_handoffs_total",
        Unit::Count,
        "Step attempts started by the write that released the lock they waited for"
    );
    describe_gauge!(
        "jobs_queued",
        Unit::Count,
        "Jobs waiting to run, sampled at each scrape"
    );
    describe_gauge!(
        "jobs_running",
        Unit::Count,
        "Jobs running, sampled at each scrape"
    );
    describe_counter!(
        "db_commits_total",
        Unit::Count,
        "Write transactions committed by the database writer"
    );
    describe_histogram!(
        "db_write_batch_operations",
        Unit::Count,
        "Writes committed together in one database transaction"
    );
    // Present from the start, so that a dashboard sees zeros rather than no series.
    for reason in ConnectionClosed::ALL {
        counter!("http_connections_closed_total", "reason" => reason.label()).absolute(0);
    }
    gauge!("http_connections_open").set(0.0);
    counter!("lock_handoffs_total").absolute(0);
}

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionClosed {
    /// The request's headers did not arrive within the header timeout.
    HeaderTimeout,
    /// A keep-alive connection stayed idle longer than the idle timeout.
    IdleTimeout,
    /// An idle connection was closed to make room at the connection cap.
    Evicted,
}

impl ConnectionClosed {
    const ALL: [ConnectionClosed; 3] = [
        ConnectionClosed::HeaderTimeout,
        ConnectionClosed::IdleTimeout,
        ConnectionClosed::Evicted,
    ];

    fn label(self) -> &'static str {
        match self {
            ConnectionClosed::HeaderTimeout => "header_timeout",
            ConnectionClosed::IdleTimeout => "idle_timeout",
            ConnectionClosed::Evicted => "evicted",
        }
    }
}

/// The server closed a connection on its own.
pub fn connection_closed(reason: ConnectionClosed) {
    counter!("http_connections_closed_total", "reason" => reason.label()).increment(1);
}

/// The number of open HTTP connections changed.
pub fn connections_open(open: usize) {
    gauge!("http_connections_open").set(open as f64);
}

/// The metrics in Prometheus text format.
pub fn render() -> String {
    install().render()
}

/// One HTTP request, by matched route (never the raw path, to bound cardinality).
///
/// Every label value comes from a closed set, whatever the client sent: the method is a known
/// one or `other`, `route` is a route template of the router (or `unmatched`, chosen by the
/// caller) and the status is a code this API uses or its class. `route` is shared rather
/// than copied: labels are built on every request.
pub fn http_request(method: &str, route: SharedString, status: u16, elapsed: Duration) {
    let method = SharedString::const_str(http_method(method));
    let status = SharedString::const_str(http_status(status));
    let labels = [("method", method), ("route", route), ("status", status)];
    counter!("http_requests_total", &labels).increment(1);
    histogram!("http_request_duration_seconds", &labels[..2]).record(elapsed.as_secs_f64());
}

/// The method as a label: a standard method, else `other` (clients may send any token).
fn http_method(method: &str) -> &'static str {
    [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ]
    .into_iter()
    .find(|m| *m == method)
    .unwrap_or("other")
}

/// The status as a label: the codes this API answers with, else the class (`1xx`..`5xx`).
fn http_status(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
    }
}

pub fn job_submitted(kind: &str) {
    counter!("jobs_submitted_total", "kind" => kind.to_string()).increment(1);
}

/// A job reached a final status; `elapsed` is from submission to the end.
pub fn job_finished(kind: &str, status: JobStatus, elapsed: Duration) {
    let labels = [
        ("kind", kind.to_string()),
        ("status", status.as_str().to_string()),
    ];
    counter!("jobs_finished_total", &labels).increment(1);
    histogram!("job_duration_seconds", &labels).record(elapsed.as_secs_f64());
}

pub fn step_attempt(step: &str, outcome: AttemptOutcome, elapsed: Duration) {
    let labels = [
        ("step", step.to_string()),
        ("outcome", outcome.as_str().to_string()),
    ];
    counter!("step_attempts_total", &labels).increment(1);
    histogram!("step_duration_seconds", &labels).record(elapsed.as_secs_f64());
}

/// One CLI run: `class` is `ok`, `failed`, `timeout`, `signal`, `canceled` or `not_found`.
pub fn cli_invocation(program: &str, class: &str) {
    let binary = program.rsplit('/').next().unwrap_or(program).to_string();
    counter!("cli_invocations_total", "binary" => binary, "exit_class" => class.to_string())
        .increment(1);
}

/// Jobs taken over from a dead owner (at startup, or after their lease expired).
pub fn lease_recoveries(n: u64) {
    counter!("lease_recoveries_total").increment(n);
}

/// A step attempt was started by the write that released the lock it waited for.
pub fn lock_handoff() {
    counter!("lock_handoffs_total").increment(1);
}

/// Queue depth and running jobs, sampled when metrics are scraped.
pub fn job_counts(queued: i64, running: i64) {
    gauge!("jobs_queued").set(queued as f64);
    gauge!("jobs_running").set(running as f64);
}

/// One write transaction of the store's writer, committing `operations` writes together.
pub fn write_batch(operations: usize) {
    counter!("db_commits_total").increment(1);
    histogram!("db_write_batch_operations").record(operations as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_unknown_methods_and_statuses_are_closed() {
        assert_eq!(http_method("GET"), "GET");
        assert_eq!(http_method("get"), "other");
        assert_eq!(http_method("XRANDOM123"), "other");
        assert_eq!(http_status(202), "202");
        assert_eq!(http_status(101), "1xx");
        assert_eq!(http_status(302), "3xx");
        assert_eq!(http_status(418), "4xx");
        assert_eq!(http_status(599), "5xx");
        assert_eq!(http_status(999), "5xx");
    }
}
