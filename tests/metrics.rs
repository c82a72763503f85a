//! `GET /metrics`: Prometheus text that moves when jobs run. Its own test binary, because the
//! metrics recorder is process-wide.

mod common;

use std::collections::BTreeMap;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::json;

/// Sum of the samples of `name` whose labels include all of `want`.
fn sample(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (metric, labels) = series
            .split_once('{')
            .map_or((series, ""), |(m, l)| (m, l.trim_end_matches('}')));
        if metric != name {
            continue;
        }
        let labels: BTreeMap<&str, &str> = labels
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k, v.trim_matches('"')))
                    .unwrap()
            })
            .collect();
        if want.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            total += value.parse::<f64>().unwrap();
        }
    }
    total
}

async fn scrape(app: &TestApp) -> String {
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    r.text().await.unwrap()
}

#[tokio::test]
async fn metrics_move_when_a_job_runs_and_need_a_key_unless_public() {
    let app = TestApp::start().await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let before = scrape(&app).await;
    let kind = [("kind", "bootstrap_user")];
    let id = app.bootstrap(json!({"username": "alice"})).await;
    assert_eq!(app.wait_final(&id).await["status"], "succeeded");
    // A CLI that fails (the account "already exists") in a job that still succeeds.
    app.sandbox
        .ctl("accounts-create", "fail", "1 1 user already exists");
    let second = app
        .bootstrap(json!({"username": "bob_1", "namespace": "bob"}))
        .await;
    assert_eq!(app.wait_final(&second).await["status"], "succeeded");
    let after = scrape(&app).await;

    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    assert_eq!(delta("jobs_submitted_total", &kind), 2.0);
    assert_eq!(
        delta(
            "jobs_finished_total",
            &[("kind", "bootstrap_user"), ("status", "succeeded")]
        ),
        2.0
    );
    assert_eq!(delta("job_duration_seconds_count", &kind), 2.0);
    assert!(
        delta(
            "step_attempts_total",
            &[("step", "create_account"), ("outcome", "succeeded")]
        ) >= 2.0
    );
    assert!(delta("step_duration_seconds_count", &[("step", "add_namespace")]) >= 2.0);
    assert!(
        delta(
            "cli_invocations_total",
            &[("binary", "everestctl"), ("exit_class", "ok")]
        ) >= 3.0
    );
    assert!(
        delta(
            "cli_invocations_total",
            &[("binary", "everestctl"), ("exit_class", "failed")]
        ) >= 1.0
    );
    assert!(
        delta(
            "cli_invocations_total",
            &[("binary", "kubectl"), ("exit_class", "ok")]
        ) >= 2.0
    );
    assert_eq!(
        delta(
            "http_requests_total",
            &[
                ("route", "/bootstrap/users"),
                ("method", "POST"),
                ("status", "202")
            ]
        ),
        2.0
    );
    assert!(
        delta(
            "http_requests_total",
            &[
                ("route", "/jobs/{id}"),
                ("method", "GET"),
                ("status", "200")
            ]
        ) >= 2.0
    );
    assert!(after.contains("http_request_duration_seconds_bucket"));
    assert!(
        after.lines().any(|l| l.starts_with("jobs_queued ")),
        "{after}"
    );
    assert!(after.lines().any(|l| l.starts_with("jobs_running ")));
    // Raw paths (with ids) never become labels.
    assert!(!after.contains(&id));
    app.stop().await;

    let public = TestApp::start_with(|c| c.metrics_public = true).await;
    let r = public
        .client
        .get(public.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    public.stop().await;
}
