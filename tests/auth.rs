//! Least privilege and audit: read-only keys, hashed keys and `hash-key`, the `credentials_read`
//! event, throttled authentication failures, the auth scheme's case, `Cache-Control` on results,
//! and a `/readyz` without paths; each test on both backends, but for the configuration check
//! of the process, which opens no database.

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::service::{Service, command};
use common::{Backend, KEY, Sandbox, TestApp};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const RO_KEY: &str = "test-key-read-only-0123456789";
const NO_JOB: &str = "00000000-0000-7000-8000-000000000000";

async fn start_with_read_key(backend: Backend) -> TestApp {
    TestApp::start_on_with(backend, |c| c.read_api_keys = Some(format!("ro:{RO_KEY}"))).await
}

/// A client whose connections come from `127.0.0.<last>`.
fn client_from(last: u8) -> Client {
    Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get_as(app: &TestApp, key: &str, path: &str) -> (StatusCode, Value) {
    let r = app
        .client
        .get(app.url(path))
        .header("X-Admin-Key", key)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn event_details(app: &TestApp, id: &str, kind: &str) -> Vec<String> {
    let (status, h) = app.get_json(&format!("/jobs/{id}/history")).await;
    assert_eq!(status, StatusCode::OK, "{h}");
    h["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn job_count(app: &TestApp) -> usize {
    let (_, v) = app.get_json("/jobs").await;
    v["items"].as_array().unwrap().len()
}

both_backends!(a_read_only_key_reads_every_get_route_and_changes_nothing);
async fn a_read_only_key_reads_every_get_route_and_changes_nothing(backend: Backend) {
    let app = start_with_read_key(backend).await;
    let id = app.bootstrap(json!({"username": "alice"})).await;
    assert_eq!(app.wait_final(&id).await["status"], "succeeded");

    let (_, doc) = app.get_json("/openapi.json").await;
    let mut posts = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let path = path.replace("{id}", &id);
        for method in item.as_object().unwrap().keys() {
            match method.as_str() {
                "get" => {
                    let (status, v) = get_as(&app, RO_KEY, &path).await;
                    assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "GET {path} with a read-only key: {status} {v}"
                    );
                }
                "post" => posts.push(path.clone()),
                other => panic!("unexpected method {other}"),
            }
        }
    }
    assert!(posts.len() >= 9, "{posts:?}");
    posts.push("/bootstrap/users?dry_run=true".into());
    for path in &posts {
        let r = app
            .client
            .post(app.url(path))
            .header("Authorization", format!("Bearer {RO_KEY}"))
            .json(&json!({"username": "bob", "new_password": "Whatever-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "POST {path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "forbidden", "{v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains("\"ro\" is read-only"), "{detail}");
        assert!(!detail.contains(RO_KEY));
    }
    // Nothing was queued, canceled or retried.
    assert_eq!(job_count(&app).await, 1);
    let (_, status) = app.get_json(&format!("/jobs/{id}")).await;
    assert_eq!(status["status"], "succeeded");
    assert!(event_details(&app, &id, "retry_requested").await.is_empty());
    // A malformed body is refused for the role too, before it is read.
    let r = app
        .client
        .post(app.url("/bootstrap/users"))
        .header("X-Admin-Key", RO_KEY)
        .header("Content-Type", "text/plain")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

both_backends!(a_generated_password_is_withheld_from_a_read_only_key_and_every_showing_is_audited);
async fn a_generated_password_is_withheld_from_a_read_only_key_and_every_showing_is_audited(
    backend: Backend,
) {
    let app = start_with_read_key(backend).await;
    let id = app.bootstrap(json!({"username": "alice"})).await;
    app.wait_final(&id).await;

    let (status, ro) = get_as(&app, RO_KEY, &format!("/jobs/{id}/result")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ro["credentials"],
        json!({"username": "alice", "password": null, "generated": true, "withheld": "read-only key"})
    );
    assert!(
        event_details(&app, &id, "credentials_read")
            .await
            .is_empty(),
        "nothing was shown"
    );

    for request_id in ["first-read", "second-read"] {
        let r = app
            .client
            .get(app.url(&format!("/jobs/{id}/result")))
            .header("X-Admin-Key", KEY)
            .header("X-Request-ID", request_id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        let password = v["credentials"]["password"].as_str().unwrap();
        assert!(password.len() >= 24);
        assert!(!ro.to_string().contains(password));
    }
    assert_eq!(
        event_details(&app, &id, "credentials_read").await,
        ["by ops; request first-read", "by ops; request second-read"]
    );

    // A chosen password is never shown, so reading that result records nothing.
    let chosen = app
        .bootstrap(json!({"username": "carol", "password": "Chosen-Pass_42"}))
        .await;
    app.wait_final(&chosen).await;
    assert_eq!(
        app.result(&chosen).await["credentials"]["password"],
        Value::Null
    );
    assert!(
        event_details(&app, &chosen, "credentials_read")
            .await
            .is_empty()
    );

    // A generated password of a set_password job is audited the same way.
    let r = app
        .post("/accounts/password", &json!({"username": "alice"}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let set = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_final(&set).await;
    let (_, ro) = get_as(&app, RO_KEY, &format!("/jobs/{set}/result")).await;
    assert_eq!(ro["credentials"]["withheld"], "read-only key");
    assert!(app.result(&set).await["credentials"]["password"].is_string());
    let details = event_details(&app, &set, "credentials_read").await;
    assert_eq!(details.len(), 1, "{details:?}");
    assert!(details[0].starts_with("by ops; request "), "{details:?}");
    app.stop().await;
}

both_backends!(results_are_never_cached);
async fn results_are_never_cached(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let id = app.bootstrap(json!({"username": "alice"})).await;
    // Whatever the answer: finished, not yet finished, or no such job.
    let mut seen = Vec::new();
    for path in [
        format!("/jobs/{id}/result"),
        format!("/jobs/{NO_JOB}/result"),
    ] {
        let r = app.get(&path).await;
        seen.push(r.status());
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }
    app.wait_final(&id).await;
    let r = app.get(&format!("/jobs/{id}/result")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(seen[1], StatusCode::NOT_FOUND);
    app.stop().await;
}

both_backends!(the_bearer_scheme_is_case_insensitive);
async fn the_bearer_scheme_is_case_insensitive(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    for value in [
        format!("BEARER {KEY}"),
        format!("bearer {KEY}"),
        format!("BeArEr {KEY}"),
        format!("Bearer   {KEY}"),
    ] {
        let r = app
            .client
            .get(app.url("/jobs"))
            .header("Authorization", &value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{value}");
    }
    for value in [
        format!("Basic {KEY}"),
        format!("Bearer{KEY}"),
        KEY.to_string(),
    ] {
        let r = app
            .client
            .get(app.url("/jobs"))
            .header("Authorization", &value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{value}");
    }
    app.stop().await;
}

async fn jobs_from(client: &Client, app: &TestApp, key: Option<&str>) -> reqwest::Response {
    let mut request = client.get(app.url("/jobs"));
    if let Some(key) = key {
        request = request.header("X-Admin-Key", key);
    }
    request.send().await.unwrap()
}

both_backends!(failed_authentication_is_throttled_per_client_address);
async fn failed_authentication_is_throttled_per_client_address(backend: Backend) {
    const LIMIT: u32 = 5;
    let app = TestApp::start_on_with(backend, |c| {
        c.auth_failure_limit = LIMIT;
        c.auth_failure_window_seconds = 60;
    })
    .await;
    let attacker = client_from(1);
    let other = client_from(2);
    for i in 0..LIMIT {
        let r = jobs_from(&attacker, &app, Some(&format!("wrong-key-{i}"))).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    let r = jobs_from(&attacker, &app, Some("wrong-key-again")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "rate_limited", "{v}");
    // The address stays refused until its window ends, even with a valid key; the public
    // health check is not affected.
    let r = jobs_from(&attacker, &app, Some(KEY)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = attacker.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Another address is not slowed: its valid key works, and its own failures count anew.
    let r = jobs_from(&other, &app, Some(KEY)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = jobs_from(&other, &app, Some("wrong-key")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Requests without a key guess nothing and are not counted.
    let quiet = client_from(3);
    for _ in 0..LIMIT * 2 {
        let r = jobs_from(&quiet, &app, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        jobs_from(&quiet, &app, Some(KEY)).await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

both_backends!(a_refused_address_is_served_again_when_its_window_ends);
async fn a_refused_address_is_served_again_when_its_window_ends(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| {
        c.auth_failure_limit = 2;
        c.auth_failure_window_seconds = 1;
    })
    .await;
    let client = client_from(4);
    for _ in 0..2 {
        jobs_from(&client, &app, Some("wrong-key")).await;
    }
    let r = jobs_from(&client, &app, Some(KEY)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, 1);
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(
        jobs_from(&client, &app, Some(KEY)).await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

both_backends!(readyz_names_the_failing_check_without_paths);
async fn readyz_names_the_failing_check_without_paths(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["checks"]["everestctl"], "ok", "{v}");
    assert_eq!(v["checks"]["kubectl"], "ok", "{v}");
    assert!(!text.contains('/'), "{text}");
    app.stop().await;

    let app = TestApp::start_on_with(backend, |c| {
        c.everestctl_bin = "/nonexistent/everestctl".into()
    })
    .await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["checks"]["everestctl"], "not found", "{v}");
    assert_eq!(v["detail"], "failing checks: everestctl", "{v}");
    assert!(!text.contains("/nonexistent"), "{text}");
    app.stop().await;
}

/// Runs `everestctl-api hash-key` with `key` on stdin.
fn hash_key(sandbox: &Sandbox, key: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = command(sandbox)
        .arg("hash-key")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{key}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

both_backends!(hash_key_output_works_as_a_key_and_the_plaintext_is_not_configured);
async fn hash_key_output_works_as_a_key_and_the_plaintext_is_not_configured(backend: Backend) {
    let sandbox = Sandbox::on(backend).await;
    let admin = "hashed-admin-key-0123456789";
    let reader = "hashed-read-key-0123456789";
    let (code, hashed, _) = hash_key(&sandbox, admin, &[]);
    assert_eq!(code, Some(0));
    assert!(
        hashed.starts_with("sha256:") && hashed.len() == 71,
        "{hashed}"
    );
    let (code, entry, _) = hash_key(&sandbox, reader, &["--name", "dash"]);
    assert_eq!(code, Some(0));
    assert!(entry.starts_with("dash:sha256:"), "{entry}");
    // The environment needs no configuration for hash-key.
    let (code, _, err) = hash_key(&sandbox, "too-short", &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("at least 16") && !err.contains("too-short"),
        "{err}"
    );
    let (code, _, err) = hash_key(&sandbox, admin, &["--name", "bad name"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("key name"), "{err}");

    let service = Service::start_with(&sandbox, 1, |cmd| {
        cmd.env("ADMIN_API_KEYS", format!("ops:{hashed}"))
            .env("READ_API_KEYS", &entry);
    });
    let client = Client::new();
    let get = |key: &str| {
        client
            .get(service.url("/jobs"))
            .header("X-Admin-Key", key)
            .send()
    };
    assert_eq!(get(admin).await.unwrap().status(), StatusCode::OK);
    assert_eq!(get(reader).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        get(&hashed).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = client
        .post(service.url("/bootstrap/users?dry_run=true"))
        .header("X-Admin-Key", reader)
        .json(&json!({"username": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client
        .post(service.url("/bootstrap/users?dry_run=true"))
        .header("X-Admin-Key", admin)
        .json(&json!({"username": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[test]
fn a_short_key_or_a_name_in_both_lists_stops_the_process_with_a_message() {
    let sandbox = Sandbox::new();
    let run = |cmd: &mut Command| {
        let out = cmd.arg("check-config").output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(command(&sandbox).env("ADMIN_API_KEYS", "ops:change-me"));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("ADMIN_API_KEYS") && err.contains("at least 16") && !err.contains("change-me"),
        "{err}"
    );
    let (code, err) = run(command(&sandbox).env("READ_API_KEYS", format!("ops:{RO_KEY}")));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("in both ADMIN_API_KEYS and READ_API_KEYS"),
        "{err}"
    );
}

both_backends!(the_throttle_warns_once_per_window_without_key_material);
async fn the_throttle_warns_once_per_window_without_key_material(backend: Backend) {
    let sandbox = Sandbox::on(backend).await;
    let service = Service::start_with(&sandbox, 1, |cmd| {
        cmd.env("AUTH_FAILURE_LIMIT", "3").env("LOG_FORMAT", "json");
    });
    let client = client_from(5);
    let mut statuses = Vec::new();
    for i in 0..8 {
        let r = client
            .get(service.url("/jobs"))
            .header("X-Admin-Key", format!("guessed-key-{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429, 429, 429]);
    let logs = service.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("too many failed authentications"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("127.0.0.5"), "{}", warnings[0]);
    assert!(!logs.contains("guessed-key"), "{logs}");
}
