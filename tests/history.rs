//! The audit trail: `GET /jobs` with filters and cursors, and `GET /jobs/{id}/history` with the
//! events of retried, failed and canceled jobs, on both backends. The pruner is in
//! `retention.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, CI_KEY, KEY, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CONFLICT: &str = "Operation cannot be fulfilled on secrets \"everest-accounts\": the object has been modified; please apply your changes to the latest version and try again";

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_string())
        .collect()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let (status, v) = app.get_json(&format!("/jobs?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {v}");
    v
}

async fn history(app: &TestApp, id: &str) -> Value {
    let (status, v) = app.get_json(&format!("/jobs/{id}/history")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// `(type, attempt)` of every event.
fn events(h: &Value) -> Vec<(String, Option<i64>)> {
    h["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["attempt"].as_i64(),
            )
        })
        .collect()
}

fn ev(kind: &str, attempt: Option<i64>) -> (String, Option<i64>) {
    (kind.to_string(), attempt)
}

/// The events a claim writes when all four bootstrap steps succeed.
fn all_steps(claim: i64) -> Vec<(String, Option<i64>)> {
    let mut v = vec![ev("claimed", Some(claim))];
    for _ in 0..4 {
        v.push(ev("step_started", Some(claim)));
        v.push(ev("step_finished", Some(claim)));
    }
    v
}

both_backends!(jobs_are_listed_newest_first_with_filters_and_a_cursor);
async fn jobs_are_listed_newest_first_with_filters_and_a_cursor(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    // carol's namespace exists unmanaged: her job fails.
    std::fs::create_dir_all(app.sandbox.state().join("namespaces")).unwrap();
    std::fs::write(app.sandbox.state().join("namespaces/carol"), "unmanaged\n").unwrap();
    let r = app
        .client
        .post(app.url("/bootstrap/users"))
        .header("X-Admin-Key", CI_KEY)
        .json(&json!({"username": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut submitted = vec![
        r.json::<Value>().await.unwrap()["job_id"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    for body in [
        json!({"username": "bob_1", "namespace": "bob"}),
        json!({"username": "carol"}),
        json!({"username": "dave"}),
        json!({"username": "erin"}),
    ] {
        submitted.push(app.bootstrap(body).await);
    }
    for id in &submitted {
        app.wait_final(id).await;
    }
    let newest_first: Vec<String> = submitted.iter().rev().cloned().collect();
    let all = list(&app, "").await;
    assert_eq!(ids(&all["items"]), newest_first);
    assert_eq!(all["next_cursor"], Value::Null);
    let item = &all["items"][2];
    assert_eq!(item["status"], "failed");
    assert_eq!(item["username"], "carol");
    assert_eq!(item["error"]["step"], "add_namespace");
    assert!(item.get("steps").is_none(), "{item}");
    assert_eq!(item["status_url"], format!("/jobs/{}", submitted[2]));

    let one = |i: usize| vec![submitted[i].clone()];
    assert_eq!(ids(&list(&app, "status=failed").await["items"]), one(2));
    assert_eq!(ids(&list(&app, "status=succeeded").await["items"]).len(), 4);
    assert_eq!(ids(&list(&app, "status=running").await["items"]).len(), 0);
    assert_eq!(
        ids(&list(&app, "kind=bootstrap_user").await["items"]),
        newest_first
    );
    assert_eq!(ids(&list(&app, "username=bob_1").await["items"]), one(1));
    assert_eq!(ids(&list(&app, "namespace=bob").await["items"]), one(1));
    assert_eq!(ids(&list(&app, "submitted_by=ci").await["items"]), one(0));
    assert_eq!(
        ids(&list(&app, "submitted_by=ops&username=alice").await["items"]).len(),
        0
    );

    // Pages of two follow each other without gap or overlap.
    let (mut paged, mut query, mut pages) = (Vec::new(), "limit=2".to_string(), 0);
    loop {
        let page = list(&app, &query).await;
        pages += 1;
        assert!(pages <= 3, "too many pages");
        paged.extend(ids(&page["items"]));
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!((paged, pages), (newest_first.clone(), 3));

    // Time windows: created_after is inclusive, created_before exclusive.
    let times: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["created_at"].as_str().unwrap().to_string())
        .collect();
    let t = &times[2];
    let after = list(&app, &format!("created_after={t}")).await;
    let want: Vec<String> = (0..5)
        .filter(|&i| times[i] >= *t)
        .map(|i| newest_first[i].clone())
        .collect();
    assert_eq!(ids(&after["items"]), want);
    let before = list(&app, &format!("created_before={t}")).await;
    let want: Vec<String> = (0..5)
        .filter(|&i| times[i] < *t)
        .map(|i| newest_first[i].clone())
        .collect();
    assert_eq!(ids(&before["items"]), want);
    // Percent-encoded, with an offset.
    let encoded = list(
        &app,
        "created_after=2000-01-01T00%3A00%3A00%2B01%3A00&created_before=2999-01-01T00:00:00+01:00",
    )
    .await;
    assert_eq!(ids(&encoded["items"]), newest_first);

    for bad in [
        "status=bogus",
        "kind=bogus",
        "username=a",
        "namespace=Not_A_Namespace",
        "submitted_by=",
        "limit=0",
        "limit=501",
        "limit=ten",
        "cursor=zz",
        "cursor=3132",
        "created_after=yesterday",
        "created_before=2026-01-01",
        "status=failed&status=succeeded",
        "sort=asc",
        "username=%zz",
    ] {
        let (status, v) = app.get_json(&format!("/jobs?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"], "bad_request", "{bad}");
    }
    assert_eq!(
        list(&app, "limit=500").await["items"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let r = app.client.get(app.url("/jobs")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

both_backends!(history_of_a_job_retried_once_after_a_transient_failure);
async fn history_of_a_job_retried_once_after_a_transient_failure(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    app.sandbox
        .ctl("accounts-create", "fail", &format!("1 1 {CONFLICT}"));
    let id = app.bootstrap(json!({"username": "alice"})).await;
    assert_eq!(app.wait_final(&id).await["status"], "succeeded");
    let h = history(&app, &id).await;
    assert_eq!(h["job_id"], id);
    let mut want = vec![
        ev("submitted", None),
        ev("claimed", Some(1)),
        ev("step_started", Some(1)),
        ev("step_finished", Some(1)),
        ev("retry_scheduled", Some(1)),
    ];
    want.extend(all_steps(2));
    want.push(ev("finished", Some(2)));
    assert_eq!(events(&h), want, "{h:#}");

    let e = h["events"].as_array().unwrap();
    assert!(
        e[0]["detail"]
            .as_str()
            .unwrap()
            .contains("submitted by ops")
    );
    let worker = e[1]["worker"].as_str().unwrap();
    assert!(!worker.is_empty());
    for event in &e[1..] {
        assert_eq!(event["worker"], worker, "{event}");
    }
    let detail = |i: usize| e[i]["detail"].as_str().unwrap().to_string();
    assert_eq!(
        detail(3),
        "create_account attempt 1: failed (exit code 1, transient)"
    );
    assert!(
        detail(4).starts_with("retry in ") && detail(4).contains("has been modified"),
        "{}",
        detail(4)
    );
    assert_retry_fields(e);
    assert_eq!(
        detail(7),
        "create_account attempt 2: succeeded (exit code 0)"
    );
    assert!(detail(e.len() - 1).starts_with("succeeded: "));
    let times: Vec<&str> = e.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {times:?}"
    );

    let attempts = h["attempts"].as_array().unwrap();
    let shape: Vec<(&str, i64, &str)> = attempts
        .iter()
        .map(|a| {
            (
                a["step"].as_str().unwrap(),
                a["attempt"].as_i64().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("create_account", 1, "failed"),
            ("create_account", 2, "succeeded"),
            ("add_namespace", 1, "succeeded"),
            ("apply_resource_quota", 1, "succeeded"),
            ("apply_rbac_policy", 1, "succeeded"),
        ]
    );
    let first = &attempts[0];
    assert_eq!(first["exit_code"], 1);
    assert!(
        first["stderr"]
            .as_str()
            .unwrap()
            .contains("has been modified")
    );
    let command = first["command"].as_str().unwrap();
    assert!(
        command.ends_with("everestctl accounts create -u alice -p ********"),
        "{command}"
    );
    assert_eq!(first["worker"], worker);
    assert!(first["duration_ms"].is_i64() && first["finished_at"].is_string());
    assert_eq!(attempts[1]["job_attempt"], 2);
    app.stop().await;
}

/// The `retry_scheduled` event says when the retry is due, as data: `retry_at` (RFC 3339 UTC,
/// milliseconds) is the event's time plus `delay_ms`, within the test's retry bounds, and the
/// next claim comes no earlier. No other event has the fields.
fn assert_retry_fields(events: &[Value]) {
    let ms = |v: &Value| {
        let text = v.as_str().unwrap();
        assert!(
            text.len() == 24 && text.ends_with('Z'),
            "RFC 3339 UTC with milliseconds: {text}"
        );
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    };
    let at = events
        .iter()
        .position(|e| e["type"] == "retry_scheduled")
        .unwrap();
    let retry = &events[at];
    let delay = retry["delay_ms"].as_i64().unwrap();
    // RETRY_BASE_SECONDS = 0.05 and RETRY_MAX_SECONDS = 0.2 in tests, with jitter below the base.
    assert!((0..=200).contains(&delay), "{retry}");
    let due = ms(&retry["retry_at"]);
    let written = ms(&retry["at"]);
    assert!(
        (due - written - delay).abs() <= 5,
        "retry_at = at + delay_ms: {retry}"
    );
    assert!(
        ms(&events[at + 1]["at"]) >= due,
        "claimed before it was due"
    );
    for e in events.iter().filter(|e| e["type"] != "retry_scheduled") {
        let fields = e.as_object().unwrap();
        assert!(
            !fields.contains_key("retry_at") && !fields.contains_key("delay_ms"),
            "{e}"
        );
    }
}

both_backends!(history_of_a_failed_job_retried_by_an_operator);
async fn history_of_a_failed_job_retried_by_an_operator(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    std::fs::create_dir_all(app.sandbox.state().join("namespaces")).unwrap();
    std::fs::write(app.sandbox.state().join("namespaces/alice"), "unmanaged\n").unwrap();
    let id = app.bootstrap(json!({"username": "alice"})).await;
    assert_eq!(app.wait_final(&id).await["status"], "failed");
    std::fs::write(app.sandbox.state().join("namespaces/alice"), "managed\n").unwrap();
    let r = app
        .client
        .post(app.url(&format!("/jobs/{id}/retry")))
        .header("X-Admin-Key", CI_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(app.wait_final(&id).await["status"], "succeeded");
    let h = history(&app, &id).await;
    let mut want = vec![ev("submitted", None)];
    want.extend(all_steps(1).into_iter().take(5)); // create_account, then add_namespace fails
    want.push(ev("finished", Some(1)));
    want.push(ev("retry_requested", Some(1)));
    want.push(ev("claimed", Some(2)));
    for _ in 0..3 {
        want.push(ev("step_started", Some(2)));
        want.push(ev("step_finished", Some(2)));
    }
    want.push(ev("finished", Some(2)));
    assert_eq!(events(&h), want, "{h:#}");
    let e = h["events"].as_array().unwrap();
    assert!(
        e[6]["detail"]
            .as_str()
            .unwrap()
            .starts_with("failed: Failed at add_namespace")
    );
    assert_eq!(e[7]["detail"], "by ci; was failed");
    assert_eq!(e[7]["worker"], Value::Null);
    let outcomes: Vec<&str> = h["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["succeeded", "failed", "succeeded", "succeeded", "succeeded"]
    );
    app.stop().await;
}

both_backends!(history_shows_running_attempts_and_jobs_canceled_while_queued);
async fn history_shows_running_attempts_and_jobs_canceled_while_queued(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| c.worker_concurrency = 1).await;
    app.sandbox.ctl("accounts-create", "delay", "30");
    let busy = app.bootstrap(json!({"username": "alice"})).await;
    let queued = app
        .bootstrap(json!({"username": "bob_1", "namespace": "bob"}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.sandbox.started("accounts-create") == 0 {
        assert!(Instant::now() < deadline, "the first command did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let h = history(&app, &busy).await;
    let running = &h["attempts"][0];
    assert_eq!(running["step"], "create_account");
    assert_eq!(running["outcome"], "running");
    assert_eq!(running["finished_at"], Value::Null);
    assert_eq!(running["exit_code"], Value::Null);

    let r = app
        .client
        .post(app.url(&format!("/jobs/{queued}/cancel")))
        .header("X-Admin-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let h = history(&app, &queued).await;
    assert_eq!(
        events(&h),
        [
            ev("submitted", None),
            ev("cancel_requested", Some(0)),
            ev("canceled", Some(0)),
            ev("finished", Some(0)),
        ]
    );
    assert_eq!(h["events"][1]["detail"], "by ops");
    assert_eq!(h["attempts"], json!([]));

    for missing in ["00000000-0000-7000-8000-000000000000", "not-a-uuid"] {
        let (status, v) = app.get_json(&format!("/jobs/{missing}/history")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
        assert_eq!(v["error"], "not_found");
    }
    let (status, _) = app.get_json(&format!("/jobs/{busy}/history?x=1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let r = app
        .client
        .post(app.url(&format!("/jobs/{busy}/cancel")))
        .header("X-Admin-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(app.wait_final(&busy).await["status"], "canceled");
    let h = history(&app, &busy).await;
    assert_eq!(h["attempts"][0]["outcome"], "canceled");
    app.sandbox.clear_ctl("accounts-create", "delay");
    app.stop().await;
}
