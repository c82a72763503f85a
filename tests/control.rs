//! Job control under concurrency: cancel, retry, long-poll, and resource locks that keep two
//! jobs off the same thing while unrelated jobs run in parallel; each test on both backends.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Backend, KEY, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post_empty(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let r = app
        .client
        .post(app.url(path))
        .header("X-Admin-Key", KEY)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

both_backends!(a_queued_job_is_canceled_at_once_and_finished_jobs_answer_409);
async fn a_queued_job_is_canceled_at_once_and_finished_jobs_answer_409(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| c.worker_concurrency = 1).await;
    app.sandbox.ctl("accounts-create", "delay", "2");
    let busy = app.bootstrap(json!({"username": "alice"})).await;
    let queued = app
        .bootstrap(json!({"username": "bob_1", "namespace": "bob"}))
        .await;
    let (status, v) = post_empty(&app, &format!("/jobs/{queued}/cancel")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "canceled");
    assert!(
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "canceled")
    );
    let (status, v) = post_empty(&app, &format!("/jobs/{queued}/cancel")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"], "already_finished");
    assert_eq!(app.result(&queued).await["overall_status"], "canceled");
    app.sandbox.clear_ctl("accounts-create", "delay");
    assert_eq!(app.wait_final(&busy).await["status"], "succeeded");
    // The canceled job never ran anything.
    assert_eq!(app.sandbox.started("accounts-create"), 1);
    let (status, _) = post_empty(&app, "/jobs/00000000-0000-7000-8000-000000000000/cancel").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

both_backends!(a_running_job_is_stopped_within_a_second_and_runs_no_further_step);
async fn a_running_job_is_stopped_within_a_second_and_runs_no_further_step(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| c.kill_grace_seconds = 1).await;
    app.sandbox.ctl("namespaces-add", "delay", "60");
    let id = app.bootstrap(json!({"username": "alice"})).await;
    wait_for("namespaces add to start", || {
        app.sandbox.started("namespaces-add") == 1
    })
    .await;
    let started = Instant::now();
    let (status, v) = post_empty(&app, &format!("/jobs/{id}/cancel")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let v = app.wait_final(&id).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(v["status"], "canceled", "{v}");
    let steps: HashMap<_, _> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["status"].clone()))
        .collect();
    assert_eq!(steps["create_account"], "succeeded");
    assert_eq!(steps["add_namespace"], "canceled");
    assert_eq!(steps["apply_resource_quota"], "canceled");
    let canceled = app.attempts(&id, &[("outcome", "canceled")]).await;
    assert_eq!(canceled.len(), 1);
    for kind in ["cancel_requested", "canceled"] {
        assert_eq!(app.events(&id, &[("type", kind)]).await.len(), 1, "{kind}");
    }
    // The command was stopped (SIGTERM: the fake logs exit 143), and nothing ran after it.
    let calls = app.sandbox.calls();
    assert!(
        calls
            .lines()
            .any(|l| l.starts_with("END") && l.contains("namespaces-add 143")),
        "{calls}"
    );
    assert_eq!(app.sandbox.started("kubectl-apply"), 0);
    app.stop().await;
}

both_backends!(retry_resumes_a_failed_job_at_its_first_unsucceeded_step);
async fn retry_resumes_a_failed_job_at_its_first_unsucceeded_step(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    std::fs::create_dir_all(app.sandbox.state().join("namespaces")).unwrap();
    std::fs::write(app.sandbox.state().join("namespaces/alice"), "unmanaged\n").unwrap();
    let id = app.bootstrap(json!({"username": "alice"})).await;
    let v = app.wait_final(&id).await;
    assert_eq!(v["status"], "failed");
    // The operator fixes the cause (here: Everest now manages the namespace) and retries.
    std::fs::write(app.sandbox.state().join("namespaces/alice"), "managed\n").unwrap();
    let (status, v) = post_empty(&app, &format!("/jobs/{id}/retry")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert!(
        matches!(v["status"].as_str(), Some("queued" | "running")),
        "{v}"
    );
    let v = app.wait_final(&id).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["error"], Value::Null);
    assert_eq!(
        app.sandbox.started("accounts-create"),
        1,
        "the succeeded step did not run again"
    );
    assert_eq!(app.sandbox.started("namespaces-add"), 2);
    // Earlier attempts stay in the history.
    let failed = [("step", "add_namespace"), ("outcome", "failed")];
    assert_eq!(app.attempts(&id, &failed).await.len(), 1);
    let retries = app.events(&id, &[("type", "retry_requested")]).await;
    assert_eq!(retries.len(), 1);
    // The generated password is still returned: the account was created by this job.
    assert!(app.result(&id).await["credentials"]["password"].is_string());

    let (status, v) = post_empty(&app, &format!("/jobs/{id}/retry")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"], "already_finished");
    app.sandbox.ctl("accounts-create", "delay", "2");
    let running = app
        .bootstrap(json!({"username": "bob_1", "namespace": "bob"}))
        .await;
    let (status, v) = post_empty(&app, &format!("/jobs/{running}/retry")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"], "not_finished");
    app.sandbox.clear_ctl("accounts-create", "delay");
    app.wait_final(&running).await;
    app.stop().await;
}

both_backends!(a_canceled_job_can_be_retried);
async fn a_canceled_job_can_be_retried(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| c.worker_concurrency = 1).await;
    app.sandbox.ctl("accounts-create", "delay", "1");
    let busy = app.bootstrap(json!({"username": "alice"})).await;
    let id = app
        .bootstrap(json!({"username": "bob_1", "namespace": "bob"}))
        .await;
    assert_eq!(
        post_empty(&app, &format!("/jobs/{id}/cancel")).await.0,
        StatusCode::ACCEPTED
    );
    app.sandbox.clear_ctl("accounts-create", "delay");
    assert_eq!(
        post_empty(&app, &format!("/jobs/{id}/retry")).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.wait_final(&id).await["status"], "succeeded");
    assert_eq!(app.wait_final(&busy).await["status"], "succeeded");
    app.stop().await;
}

both_backends!(long_poll_answers_when_the_job_changes_or_after_the_wait);
async fn long_poll_answers_when_the_job_changes_or_after_the_wait(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    for bad in ["61", "-1", "abc", "1.5"] {
        let (status, v) = app
            .get_json(&format!(
                "/jobs/00000000-0000-7000-8000-000000000000?wait={bad}"
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    app.sandbox.ctl("accounts-create", "delay", "30");
    let id = app.bootstrap(json!({"username": "alice"})).await;
    wait_for("accounts create to start", || {
        app.sandbox.started("accounts-create") == 1
    })
    .await;
    // Nothing changes while the step runs: the wait runs out.
    let t = Instant::now();
    let (_, v) = app.get_json(&format!("/jobs/{id}?wait=1")).await;
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(v["current_step"], "create_account");
    // A change (the step ends and the next one starts) answers at once.
    let waiter = {
        let (client, url) = (app.client.clone(), app.url(&format!("/jobs/{id}?wait=30")));
        tokio::spawn(async move {
            let t = Instant::now();
            let v: Value = client
                .get(url)
                .header("X-Admin-Key", KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (t.elapsed(), v)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.sandbox.clear_ctl("accounts-create", "delay");
    let pid = app
        .sandbox
        .calls()
        .lines()
        .find(|l| l.starts_with("START") && l.contains("accounts-create"))
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    // Wake the fake's sleep so that the step ends now.
    let _ = std::process::Command::new("pkill")
        .args(["-TERM", "-P", &pid])
        .status();
    let (elapsed, v) = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert!(
        v["current_step"] != "create_account" || v["status"] != "running",
        "{v}"
    );
    app.wait_final(&id).await;
    app.stop().await;
}

/// One execution of a fake CLI, from `calls.log`.
#[derive(Debug)]
struct Run {
    op: String,
    args: String,
    start: u128,
    end: u128,
}

fn runs(calls: &str) -> Vec<Run> {
    let mut open: HashMap<String, (String, String, u128)> = HashMap::new();
    let mut done = Vec::new();
    for line in calls.lines() {
        let parts: Vec<&str> = line.splitn(5, ' ').collect();
        let (kind, ts, pid, op) = (
            parts[0],
            parts[1].parse::<u128>().unwrap(),
            parts[2],
            parts[3],
        );
        match kind {
            "START" => {
                open.insert(
                    pid.to_string(),
                    (op.to_string(), parts.get(4).unwrap_or(&"").to_string(), ts),
                );
            }
            _ => {
                if let Some((op, args, start)) = open.remove(pid) {
                    done.push(Run {
                        op,
                        args,
                        start,
                        end: ts,
                    });
                }
            }
        }
    }
    done
}

fn overlap(a: &Run, b: &Run) -> bool {
    a.start < b.end && b.start < a.end
}

fn namespace_of(run: &Run) -> Option<String> {
    let words: Vec<&str> = run.args.split_whitespace().collect();
    match run.op.as_str() {
        "namespaces-add" => words.get(2).map(|s| s.to_string()),
        "kubectl-apply" => words
            .iter()
            .position(|w| *w == "-n")
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string()),
        _ => None,
    }
}

both_backends!(locks_keep_jobs_off_the_same_resource_while_unrelated_ones_overlap);
async fn locks_keep_jobs_off_the_same_resource_while_unrelated_ones_overlap(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| c.worker_concurrency = 8).await;
    for op in ["accounts-create", "namespaces-add", "kubectl-apply"] {
        app.sandbox.ctl(op, "delay", "0.15");
    }
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            app.bootstrap(
                json!({"username": format!("user_{i}"), "namespace": format!("team-{i}")}),
            )
            .await,
        );
    }
    // Several jobs on one namespace (the second and later find it managed: `existed`).
    for i in 0..4 {
        ids.push(
            app.bootstrap(json!({"username": format!("shared_{i}"), "namespace": "shared"}))
                .await,
        );
    }
    for id in &ids {
        assert_eq!(app.wait_final(id).await["status"], "succeeded");
    }
    let runs = runs(&app.sandbox.calls());
    let accounts: Vec<&Run> = runs.iter().filter(|r| r.op == "accounts-create").collect();
    assert_eq!(accounts.len(), 14);
    for (i, a) in accounts.iter().enumerate() {
        for b in &accounts[i + 1..] {
            assert!(!overlap(a, b), "accounts changed concurrently: {a:?} {b:?}");
        }
    }
    let ns_runs: Vec<(&Run, String)> = runs
        .iter()
        .filter_map(|r| namespace_of(r).map(|ns| (r, ns)))
        .collect();
    let mut unrelated_overlaps = 0;
    for (i, (a, ns_a)) in ns_runs.iter().enumerate() {
        for (b, ns_b) in &ns_runs[i + 1..] {
            if ns_a == ns_b {
                assert!(
                    !overlap(a, b),
                    "namespace {ns_a} changed concurrently: {a:?} {b:?}"
                );
            } else if overlap(a, b) {
                unrelated_overlaps += 1;
            }
        }
    }
    assert!(
        unrelated_overlaps > 0,
        "jobs on different namespaces never ran in parallel"
    );
    assert_eq!(app.rows("resource_locks").await, 0, "locks are released");
    app.stop().await;
}
