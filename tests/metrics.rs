//! `GET /metrics`: Prometheus text that moves when jobs run. Its own test binary, because the
//! metrics recorder is process-wide. Each test on both backends.

mod common;

use std::collections::BTreeMap;

use common::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;

/// The recorder is shared by the tests of this binary: each holds this while it runs, so that
/// one test's scrapes do not see another's series appear.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

both_backends!(metrics_move_when_a_job_runs_and_need_a_key_unless_public);
async fn metrics_move_when_a_job_runs_and_need_a_key_unless_public(backend: Backend) {
    let _serial = SERIAL.lock().await;
    let app = TestApp::start_on(backend).await;
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

    let public = TestApp::start_on_with(backend, |c| c.metrics_public = true).await;
    let r = public
        .client
        .get(public.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    public.stop().await;
}

both_backends!(labels_stay_in_a_closed_set_whatever_the_client_sends);
/// Made-up methods and random paths, with and without a key: none of them becomes a label, and
/// the scrape stops growing once the few series they map to exist.
async fn labels_stay_in_a_closed_set_whatever_the_client_sends(backend: Backend) {
    let _serial = SERIAL.lock().await;
    let app = TestApp::start_on(backend).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let send_junk = |round: u32, count: u32| {
        let addr = addr.clone();
        async move {
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            for i in 0..count {
                let n = round * 100_000 + i;
                let (method, path, key) = match i % 3 {
                    0 => (format!("XRANDOM{n}"), format!("/x/{n}?q={n}"), ""),
                    // A real route with a key: the method is still not a label.
                    1 => (format!("XRANDOM{n}"), "/jobs".to_string(), common::KEY),
                    _ => ("GET".to_string(), format!("/jobs/zz{n}/nope"), common::KEY),
                };
                let r = common::raw::exchange(
                    &mut stream,
                    &format!("{method} {path} HTTP/1.1\r\nHost: t\r\nX-Admin-Key: {key}\r\n\r\n"),
                )
                .await
                .expect("the server answers every request on the connection");
                assert!(r.status < 500, "{method} {path}: {}", r.status);
            }
        }
    };
    // Warm-up: every series these requests map to exists afterwards.
    send_junk(0, 30).await;
    let before = scrape(&app).await;
    let rounds: Vec<_> = (1..=4).map(|round| send_junk(round, 750)).collect();
    for round in rounds {
        round.await;
    }
    let after = scrape(&app).await;

    assert!(
        !after.contains("XRANDOM"),
        "a made-up method became a label"
    );
    assert!(!after.contains("/x/"), "a raw path became a label");
    assert!(!after.contains("zz1"), "a raw path became a label");
    assert!(
        sample(&after, "http_requests_total", &[("method", "other")])
            - sample(&before, "http_requests_total", &[("method", "other")])
            >= 2000.0
    );
    assert!(
        sample(&after, "http_requests_total", &[("route", "unmatched")])
            - sample(&before, "http_requests_total", &[("route", "unmatched")])
            >= 3000.0
    );
    // 3,000 more requests only change numbers: a few digits, not a series per request.
    assert!(
        after.len() < before.len() + 2048,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    eprintln!(
        "3000 junk requests: /metrics {} -> {} bytes",
        before.len(),
        after.len()
    );
    app.stop().await;
}

both_backends!(every_metric_family_has_help_and_type);
/// Every metric family in a scrape has `# HELP` and `# TYPE`, and every family the service
/// records appears once the service was exercised.
async fn every_metric_family_has_help_and_type(backend: Backend) {
    let _serial = SERIAL.lock().await;
    let app = TestApp::start_on(backend).await;
    let id = app.bootstrap(json!({"username": "helpme"})).await;
    assert_eq!(app.wait_final(&id).await["status"], "succeeded");
    let text = scrape(&app).await;

    let mut help = BTreeMap::new();
    let mut kind = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name.to_string(), doc.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').unwrap();
            kind.insert(name.to_string(), t.to_string());
        }
    }
    // The family of each sample: its name, less a histogram's or summary's suffix.
    let mut families = std::collections::BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| kind.contains_key(*f)))
            .unwrap_or(name);
        families.insert(family.to_string());
    }
    for family in &families {
        let doc = help.get(family).map(String::as_str).unwrap_or_default();
        assert!(doc.len() > 10, "{family} has no useful # HELP: {doc:?}");
        assert!(kind.contains_key(family), "{family} has no # TYPE");
    }
    let mut expected = vec![
        "http_requests_total",
        "http_request_duration_seconds",
        "http_connections_open",
        "http_connections_closed_total",
        "jobs_submitted_total",
        "jobs_finished_total",
        "job_duration_seconds",
        "step_attempts_total",
        "step_duration_seconds",
        "cli_invocations_total",
        "lease_recoveries_total",
        "lock_handoffs_total",
        "jobs_queued",
        "jobs_running",
    ];
    if backend == Backend::Sqlite {
        // The families of SQLite's writer thread, which commits many writes together; on
        // PostgreSQL each operation commits its own transaction. (Whether they show on
        // PostgreSQL depends on the order of the tests: the recorder is the process's.)
        expected.extend(["db_commits_total", "db_write_batch_operations"]);
    }
    for family in expected {
        assert!(
            families.contains(family),
            "{family} is missing from the scrape"
        );
    }
    assert_eq!(kind["http_requests_total"], "counter");
    assert_eq!(kind["job_duration_seconds"], "histogram");
    assert_eq!(kind["jobs_queued"], "gauge");
    app.stop().await;
}

both_backends!(a_waiting_attempt_is_started_by_the_write_that_releases_its_lock);
/// Bootstraps queue up on `everest-accounts` (and the RBAC lock): each release starts a waiting
/// attempt in the same commit, counted in `lock_handoffs_total`, and the serialized commands
/// still never overlap.
async fn a_waiting_attempt_is_started_by_the_write_that_releases_its_lock(backend: Backend) {
    const JOBS: usize = 24;
    let _serial = SERIAL.lock().await;
    let app = TestApp::start_on_with(backend, |c| c.worker_concurrency = 4).await;
    // Time inside each command lets the other workers reach the lock and wait.
    app.sandbox.ctl("accounts-create", "delay", "0.02");
    let before = sample(&scrape(&app).await, "lock_handoffs_total", &[]);
    let mut ids = Vec::new();
    for i in 0..JOBS {
        ids.push(
            app.bootstrap(json!({"username": format!("handoff{i}")}))
                .await,
        );
    }
    for id in &ids {
        let status = app.wait_final(id).await;
        assert_eq!(status["status"], "succeeded", "{status}");
    }
    let creates = common::replicas::calls(&app.sandbox, "accounts-create");
    assert_eq!(creates.len(), JOBS, "one `accounts create` per bootstrap");
    common::replicas::assert_no_overlap("accounts-create", &creates);
    let handed = sample(&scrape(&app).await, "lock_handoffs_total", &[]) - before;
    // Four workers, one lock holder at a time: most starts of a serialized step wait, and
    // each is started by its predecessor's end. (Other tests of this binary run one at a time.)
    assert!(
        handed >= (JOBS / 2) as f64,
        "{handed} of {JOBS} serialized starts were handed off"
    );
}
