//! How jobs run: retries, permanent failures, idempotent re-runs, timeouts, floods,
//! missing binaries, the RBAC command, and that secrets never reach stored records; each test
//! on both backends.

mod common;

use common::{Backend, TestApp};
use serde_json::{Value, json};

const CONFLICT: &str = "Operation cannot be fulfilled on secrets \"everest-accounts\": the object has been modified; please apply your changes to the latest version and try again";

fn step<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

both_backends!(transient_failures_are_retried_with_backoff_then_succeed);
async fn transient_failures_are_retried_with_backoff_then_succeed(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    app.sandbox
        .ctl("accounts-create", "fail", &format!("2 1 {CONFLICT}"));
    let id = app.bootstrap(json!({"username": "alice"})).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(step(&status, "create_account")["attempts"], 3);
    assert_eq!(app.sandbox.started("accounts-create"), 3);
    let transient = [("outcome", "failed"), ("error_kind", "transient")];
    assert_eq!(app.attempts(&id, &transient).await.len(), 2);
    let retries = app.events(&id, &[("type", "retry_scheduled")]).await;
    assert_eq!(retries.len(), 2);
    // The account was created by this job, so its password is returned.
    let result = app.result(&id).await;
    assert!(result["credentials"]["password"].is_string(), "{result}");
    app.stop().await;
}

both_backends!(attempts_are_bounded_by_max_attempts);
async fn attempts_are_bounded_by_max_attempts(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| c.max_attempts = 3).await;
    app.sandbox.ctl("namespaces-add", "fail", "10 1 Get \"https://10.0.0.1:6443/api\": dial tcp 10.0.0.1:6443: connect: connection refused");
    let id = app.bootstrap(json!({"username": "alice"})).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"]["step"], "add_namespace");
    let detail = status["error"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("gave up after 3 attempts") && detail.contains("connection refused"),
        "{detail}"
    );
    assert_eq!(app.sandbox.started("namespaces-add"), 3);
    app.stop().await;
}

both_backends!(permanent_failure_stops_the_job_with_the_cli_message_and_skips_the_rest);
async fn permanent_failure_stops_the_job_with_the_cli_message_and_skips_the_rest(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| c.everest_rbac_apply_cmd = None).await;
    std::fs::create_dir_all(app.sandbox.state().join("namespaces")).unwrap();
    std::fs::write(app.sandbox.state().join("namespaces/alice"), "unmanaged\n").unwrap();
    let id = app.bootstrap(json!({"username": "alice"})).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["error"]["step"], "add_namespace");
    assert_eq!(status["error"]["kind"], "cli_failed");
    assert_eq!(
        status["error"]["detail"],
        "'alice': namespace already exists. HINT: set '--take-ownership' flag to use existing namespaces"
    );
    assert_eq!(step(&status, "add_namespace")["attempts"], 1);
    assert_eq!(step(&status, "apply_resource_quota")["status"], "skipped");
    assert_eq!(step(&status, "apply_rbac_policy")["status"], "skipped");
    assert_eq!(app.sandbox.started("kubectl-apply"), 0);
    let result = app.result(&id).await;
    assert_eq!(result["overall_status"], "failed");
    assert!(
        result["steps"][1]["stderr"]
            .as_str()
            .unwrap()
            .contains("HINT")
    );
    // The account was created before the failure: its credentials are still shown.
    assert_eq!(result["credentials"]["username"], "alice");
    app.stop().await;
}

both_backends!(existing_account_and_managed_namespace_count_as_existed);
async fn existing_account_and_managed_namespace_count_as_existed(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    for dir in ["users", "namespaces"] {
        std::fs::create_dir_all(app.sandbox.state().join(dir)).unwrap();
    }
    std::fs::write(app.sandbox.state().join("users/alice"), "OldPass123\n").unwrap();
    std::fs::write(app.sandbox.state().join("namespaces/alice"), "managed\n").unwrap();
    let id = app.bootstrap(json!({"username": "alice"})).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let result = app.result(&id).await;
    assert_eq!(result["steps"][0]["existed"], true);
    assert_eq!(result["steps"][1]["existed"], true);
    assert_eq!(
        result["credentials"],
        Value::Null,
        "no password that was not set is returned"
    );
    assert!(
        result["summary"]
            .as_str()
            .unwrap()
            .contains("already existed (password unchanged)")
    );
    let stored = std::fs::read_to_string(app.sandbox.state().join("users/alice")).unwrap();
    assert_eq!(stored.trim(), "OldPass123");
    app.stop().await;
}

both_backends!(a_hanging_cli_is_killed_at_the_timeout_with_its_children);
async fn a_hanging_cli_is_killed_at_the_timeout_with_its_children(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| {
        c.subprocess_timeout = 1;
        c.max_attempts = 2;
    })
    .await;
    app.sandbox.ctl("accounts-create", "hang", "");
    let id = app.bootstrap(json!({"username": "alice"})).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"]["kind"], "timeout");
    assert!(
        status["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("timed out")
    );
    let timed_out = app.attempts(&id, &[("outcome", "timed_out")]).await;
    assert_eq!(timed_out.len(), 2);
    app.sandbox.clear_ctl("accounts-create", "hang");

    // A CLI that leaves a grandchild holding stdout open: the step ends, the grandchild dies.
    app.sandbox.ctl("accounts-create", "hang", "grandchild");
    let id = app
        .bootstrap(json!({"username": "bob_1", "namespace": "bob"}))
        .await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let pid = std::fs::read_to_string(app.sandbox.state().join("grandchild.pid")).unwrap();
    let proc_path = format!("/proc/{}", pid.trim());
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        !std::path::Path::new(&proc_path).exists()
            || std::fs::read_to_string(format!("{proc_path}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    assert!(gone, "grandchild {pid} survived");
    app.stop().await;
}

both_backends!(floods_garbage_and_signals_give_bounded_clear_results);
async fn floods_garbage_and_signals_give_bounded_clear_results(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| {
        c.max_output_chars = 1000;
        c.max_attempts = 1;
    })
    .await;
    app.sandbox.ctl("accounts-create", "flood", "20000000");
    app.sandbox.ctl("kubectl-apply", "garbage", "");
    let id = app.bootstrap(json!({"username": "alice"})).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let result = app.result(&id).await;
    let out = result["steps"][0]["stdout"].as_str().unwrap();
    assert!(out.chars().count() < 1200, "{} chars", out.len());
    assert!(out.contains("omitted"), "{out}");
    let garbage = result["steps"][2]["stdout"].as_str().unwrap();
    assert!(!garbage.contains('\u{1b}'), "{garbage:?}");
    assert!(garbage.contains('\u{fffd}'), "{garbage:?}");

    app.sandbox.ctl("accounts-create", "signal", "");
    let id = app
        .bootstrap(json!({"username": "bob_1", "namespace": "bob"}))
        .await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "failed");
    assert!(
        status["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("signal 9"),
        "{status}"
    );
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert!(r.status().is_success());
    app.stop().await;
}

both_backends!(a_missing_binary_is_a_permanent_clear_error);
async fn a_missing_binary_is_a_permanent_clear_error(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| {
        c.kubectl_bin = "kubectl-that-does-not-exist".into()
    })
    .await;
    let id = app.bootstrap(json!({"username": "alice"})).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"]["step"], "apply_resource_quota");
    assert_eq!(status["error"]["kind"], "not_found");
    assert!(
        status["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("kubectl-that-does-not-exist"),
        "{status}"
    );
    assert_eq!(step(&status, "apply_resource_quota")["attempts"], 1);
    app.stop().await;
}

both_backends!(rbac_policy_goes_through_the_configured_command_only_after_the_other_steps);
async fn rbac_policy_goes_through_the_configured_command_only_after_the_other_steps(
    backend: Backend,
) {
    let sandbox = common::Sandbox::on(backend).await;
    let cmd = format!("{} --file {{file}}", sandbox.bin("rbac-apply"));
    let app = TestApp::start_in(sandbox, |c| c.everest_rbac_apply_cmd = Some(cmd)).await;
    let id = app
        .bootstrap(json!({"username": "alice", "namespace": "team-a"}))
        .await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let result = app.result(&id).await;
    assert_eq!(result["steps"][3]["rbac_applied"], true);
    let applied = std::fs::read_to_string(app.sandbox.state().join("rbac/applied.csv")).unwrap();
    assert!(
        applied.contains("p, role:alice, database-clusters, *, team-a/*"),
        "{applied}"
    );
    assert!(applied.contains("g, alice, role:alice"), "{applied}");
    // With an earlier failure the RBAC command never runs.
    app.sandbox.ctl(
        "kubectl-apply",
        "fail",
        "1 1 error: the server doesn't have a resource type \"resourcequotas\"",
    );
    let id = app
        .bootstrap(json!({"username": "bob_1", "namespace": "team-b"}))
        .await;
    assert_eq!(app.wait_final(&id).await["status"], "failed");
    assert_eq!(app.sandbox.started("rbac-apply"), 1);
    app.stop().await;
}

both_backends!(passwords_never_reach_status_results_or_stored_records);
async fn passwords_never_reach_status_results_or_stored_records(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let given = "Given-Pass_123!";
    app.sandbox.ctl(
        "accounts-create",
        "fail",
        &format!("1 1 {CONFLICT} (password {given})"),
    );
    let id = app
        .bootstrap(json!({"username": "alice", "password": given}))
        .await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let result = app.result(&id).await;
    assert_eq!(
        result["credentials"],
        json!({"username": "alice", "password": null, "generated": false})
    );
    let generated_id = app
        .bootstrap(json!({"username": "bob_1", "namespace": "bob"}))
        .await;
    app.wait_final(&generated_id).await;
    let generated = app.result(&generated_id).await["credentials"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    for (secret, job) in [(given, &id), (generated.as_str(), &generated_id)] {
        let (_, status) = app.get_json(&format!("/jobs/{job}")).await;
        assert!(!status.to_string().contains(secret));
        let stored = app.stored_text().await;
        assert!(
            !stored.contains(secret),
            "{secret} is stored outside job_secrets"
        );
    }
    assert!(!result.to_string().contains(given));
    // The failing attempt's stderr had the password in it: its line was withheld.
    let withheld: Vec<Value> = app
        .attempts(&id, &[])
        .await
        .into_iter()
        .filter(|a| {
            a["stderr"]
                .as_str()
                .unwrap()
                .contains("[line withheld: it contained a secret]")
        })
        .collect();
    assert_eq!(withheld.len(), 1);
    // A password the client chose is erased once the job succeeded.
    let erased = format!("job_id = '{id}' AND password IS NULL");
    assert_eq!(app.count("job_secrets", &erased).await, 1);
    app.stop().await;
}

both_backends!(generated_credentials_expire);
async fn generated_credentials_expire(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| c.credentials_ttl_seconds = 1).await;
    let id = app.bootstrap(json!({"username": "alice"})).await;
    app.wait_final(&id).await;
    assert!(app.result(&id).await["credentials"]["password"].is_string());
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let result = app.result(&id).await;
    assert_eq!(
        result["credentials"],
        json!({"username": "alice", "password": null, "generated": true, "expired": true})
    );
    // The purge erased it from the database too.
    assert_eq!(app.count("job_secrets", "password IS NOT NULL").await, 0);
    app.stop().await;
}

both_backends!(older_everestctl_gets_the_legacy_mysql_flag);
async fn older_everestctl_gets_the_legacy_mysql_flag(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    app.sandbox.ctl(
        "namespaces-add",
        "fail",
        "1 1 unknown flag: --operator.mysql",
    );
    let id = app
        .bootstrap(json!({"username": "alice", "operators": {"mysql": true}}))
        .await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let calls = app.sandbox.calls();
    let adds: Vec<_> = calls
        .lines()
        .filter(|l| l.starts_with("START") && l.contains("namespaces-add"))
        .collect();
    assert_eq!(adds.len(), 2, "{calls}");
    assert!(adds[0].contains("--operator.mysql=true"), "{}", adds[0]);
    assert!(
        adds[1].contains("--operator.xtradb-cluster=true") && !adds[1].contains("--operator.mysql"),
        "{}",
        adds[1]
    );
    // Later jobs use the legacy flag straight away.
    let id = app
        .bootstrap(json!({"username": "bob_1", "namespace": "bob"}))
        .await;
    assert_eq!(app.wait_final(&id).await["status"], "succeeded");
    assert!(
        app.sandbox
            .calls()
            .lines()
            .filter(|l| l.starts_with("START") && l.contains("namespaces-add"))
            .nth(2)
            .unwrap()
            .contains("xtradb-cluster")
    );
    app.stop().await;
}
