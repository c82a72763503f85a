//! Prometheus metrics: one process-wide recorder, small functions for each thing counted, and
//! the text rendering served at `GET /metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{SharedString, counter, gauge, histogram};
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
        handle
    })
}

/// The metrics in Prometheus text format.
pub fn render() -> String {
    install().render()
}

/// One HTTP request, by matched route (never the raw path, to bound cardinality).
///
/// `route` is shared rather than copied: labels are built on every request.
pub fn http_request(method: &str, route: SharedString, status: u16, elapsed: Duration) {
    let method = http_method(method).map_or_else(
        || SharedString::from_owned(method.to_owned()),
        SharedString::const_str,
    );
    let status = http_status(status).map_or_else(
        || SharedString::from_owned(status.to_string()),
        SharedString::const_str,
    );
    let labels = [("method", method), ("route", route), ("status", status)];
    counter!("http_requests_total", &labels).increment(1);
    histogram!("http_request_duration_seconds", &labels[..2]).record(elapsed.as_secs_f64());
}

fn http_method(method: &str) -> Option<&'static str> {
    ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
        .into_iter()
        .find(|m| *m == method)
}

/// The status codes this API answers with, as label values that need no allocation.
fn http_status(status: u16) -> Option<&'static str> {
    Some(match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return None,
    })
}

pub fn job_submitted(kind: &str) {
    counter!("jobs_submitted_total", "kind" => kind.to_string()).increment(1);
}

/// A job reached a final status; `elapsed` is from submission to the end.
pub fn job_finished(kind: &str, status: &str, elapsed: Duration) {
    let labels = [("kind", kind.to_string()), ("status", status.to_string())];
    counter!("jobs_finished_total", &labels).increment(1);
    histogram!("job_duration_seconds", &labels).record(elapsed.as_secs_f64());
}

pub fn step_attempt(step: &str, outcome: &str, elapsed: Duration) {
    let labels = [("step", step.to_string()), ("outcome", outcome.to_string())];
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
