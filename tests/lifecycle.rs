//! The tenant lifecycle after bootstrap: passwords, quotas, operators, suspension and
//! resumption through the RBAC ConfigMap, deletion, and the managed-namespace listing; each test
//! on both backends.

mod common;

use std::time::Duration;

use common::{Backend, KEY, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// How many jobs `GET /jobs` lists.
async fn job_count(app: &TestApp) -> usize {
    let (status, v) = app.get_json("/jobs?limit=500").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["items"].as_array().unwrap().len()
}

fn policy(app: &TestApp) -> String {
    std::fs::read_to_string(app.sandbox.state().join("rbac/policy.csv")).unwrap_or_default()
}

async fn submit(app: &TestApp, path: &str, body: Value) -> String {
    let r = app.post(path, &body).await;
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{path}: {:?}",
        r.text().await
    );
    r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn run_ok(app: &TestApp, path: &str, body: Value) -> Value {
    let id = submit(app, path, body).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "succeeded", "{path}: {status}");
    app.result(&id).await
}

async fn run_failed(app: &TestApp, path: &str, body: Value) -> Value {
    let id = submit(app, path, body).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "failed", "{path}: {status}");
    status
}

async fn expect_422(app: &TestApp, path: &str, body: Value, field: &str) {
    let r = app.post(path, &body).await;
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "{path} {body}"
    );
    let v: Value = r.json().await.unwrap();
    let fields: Vec<_> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_string())
        .collect();
    assert!(fields.iter().any(|f| f == field), "{path} {body}: {v}");
}

both_backends!(set_password_with_given_and_generated_passwords);
async fn set_password_with_given_and_generated_passwords(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    run_ok(
        &app,
        "/bootstrap/users",
        json!({"username": "alice", "password": "First-pass1"}),
    )
    .await;
    let result = run_ok(
        &app,
        "/accounts/password",
        json!({"username": "alice", "new_password": "Second-pass2"}),
    )
    .await;
    assert_eq!(
        result["credentials"],
        json!({"username": "alice", "password": null, "generated": false})
    );
    assert!(
        result["steps"][0]["command"]
            .as_str()
            .unwrap()
            .ends_with("accounts set-password -u alice -p ********")
    );
    assert_eq!(
        std::fs::read_to_string(app.sandbox.state().join("users/alice"))
            .unwrap()
            .trim(),
        "Second-pass2"
    );
    let result = run_ok(&app, "/accounts/password", json!({"username": "alice"})).await;
    let generated = result["credentials"]["password"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(app.sandbox.state().join("users/alice"))
            .unwrap()
            .trim(),
        generated
    );
    assert!(!app.stored_text().await.contains("Second-pass2"));

    let status = run_failed(
        &app,
        "/accounts/password",
        json!({"username": "nobody", "new_password": "Whatever-1"}),
    )
    .await;
    assert_eq!(status["error"]["detail"], "account not found");
    assert_eq!(status["steps"][0]["attempts"], 1, "not retried");
    expect_422(
        &app,
        "/accounts/password",
        json!({"username": "admin"}),
        "username",
    )
    .await;
    expect_422(
        &app,
        "/accounts/password",
        json!({"username": "alice", "new_password": "short"}),
        "new_password",
    )
    .await;
    expect_422(
        &app,
        "/accounts/password",
        json!({"username": "alice", "password": "Whatever-1"}),
        "password",
    )
    .await;
    app.stop().await;
}

both_backends!(resources_are_reapplied_only_to_managed_namespaces);
async fn resources_are_reapplied_only_to_managed_namespaces(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    run_ok(&app, "/bootstrap/users", json!({"username": "alice"})).await;
    let body = json!({"namespace": "alice", "resources": {"cpu_cores": 8, "ram_mb": 16384, "disk_gb": 200, "max_databases": 4}});
    let result = run_ok(&app, "/namespaces/resources", body).await;
    assert!(result["summary"].as_str().unwrap().contains("alice"));
    let applied = std::fs::read_to_string(app.sandbox.state().join("applied/alice.yaml")).unwrap();
    for needle in [
        "limits.cpu: \"8\"",
        "requests.memory: \"16384Mi\"",
        "requests.storage: \"200Gi\"",
        "count/databaseclusters.everest.percona.com: \"4\"",
    ] {
        assert!(applied.contains(needle), "{needle} missing: {applied}");
    }
    // An existing namespace that Everest does not manage is refused before anything is applied.
    std::fs::write(app.sandbox.state().join("namespaces/other"), "unmanaged\n").unwrap();
    let before = app.sandbox.started("kubectl-apply");
    let body =
        json!({"namespace": "other", "resources": {"cpu_cores": 1, "ram_mb": 512, "disk_gb": 5}});
    let status = run_failed(&app, "/namespaces/resources", body).await;
    assert_eq!(status["error"]["kind"], "not_managed");
    assert!(
        status["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("not managed by Everest"),
        "{status}"
    );
    assert_eq!(app.sandbox.started("kubectl-apply"), before);
    expect_422(
        &app,
        "/namespaces/resources",
        json!({"namespace": "alice", "resources": {"cpu_cores": 2}}),
        "resources.ram_mb",
    )
    .await;
    expect_422(&app, "/namespaces/resources", json!({"namespace": "kube-system", "resources": {"cpu_cores": 1, "ram_mb": 512, "disk_gb": 5}}), "namespace").await;
    expect_422(
        &app,
        "/namespaces/resources",
        json!({"namespace": "alice"}),
        "resources",
    )
    .await;
    app.stop().await;
}

both_backends!(operators_are_added_with_all_three_flags_explicit);
async fn operators_are_added_with_all_three_flags_explicit(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    run_ok(&app, "/bootstrap/users", json!({"username": "alice"})).await;
    run_ok(
        &app,
        "/namespaces/operators",
        json!({"namespace": "alice", "operators": {"mongodb": true}}),
    )
    .await;
    let calls = app.sandbox.calls();
    let update = calls
        .lines()
        .find(|l| l.starts_with("START") && l.contains("namespaces-update"))
        .unwrap();
    assert!(update.ends_with("namespaces update alice --operator.mongodb=true --operator.postgresql=false --operator.mysql=false"), "{update}");
    let ns = std::fs::read_to_string(app.sandbox.state().join("namespaces/alice")).unwrap();
    assert!(
        ns.contains("mongodb=true") && ns.contains("postgresql=true"),
        "{ns}"
    );
    let status = run_failed(
        &app,
        "/namespaces/operators",
        json!({"namespace": "nowhere", "operators": {"mysql": true}}),
    )
    .await;
    assert_eq!(
        status["error"]["detail"],
        "'nowhere': namespace is not managed by Everest"
    );
    expect_422(
        &app,
        "/namespaces/operators",
        json!({"namespace": "alice", "operators": {}}),
        "operators",
    )
    .await;
    expect_422(
        &app,
        "/namespaces/operators",
        json!({"namespace": "alice", "operators": {"mongodb": false}}),
        "operators",
    )
    .await;
    app.stop().await;
}

both_backends!(suspend_removes_exactly_the_users_lines_and_resume_puts_them_back);
async fn suspend_removes_exactly_the_users_lines_and_resume_puts_them_back(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    std::fs::create_dir_all(app.sandbox.state().join("rbac")).unwrap();
    let original = "# Everest RBAC\ng, admin, role:admin\n\n# team leads\np,   role:lead, namespaces, read, *\ng, carol, role:lead\n";
    std::fs::write(app.sandbox.state().join("rbac/policy.csv"), original).unwrap();
    std::fs::write(app.sandbox.state().join("rbac/enabled"), "true").unwrap();
    run_ok(&app, "/bootstrap/users", json!({"username": "alice"})).await;
    run_ok(
        &app,
        "/bootstrap/users",
        json!({"username": "bob_1", "namespace": "bob"}),
    )
    .await;
    let with_both = policy(&app);
    assert!(
        with_both.starts_with(original),
        "existing text kept byte for byte: {with_both}"
    );

    let result = run_ok(&app, "/accounts/suspend", json!({"username": "alice"})).await;
    let removed: Vec<String> =
        serde_json::from_value(result["steps"][0]["removed_lines"].clone()).unwrap();
    assert_eq!(removed.len(), 9, "{removed:?}");
    assert!(removed.contains(&"g, alice, role:alice".to_string()));
    let suspended = policy(&app);
    assert!(!suspended.contains("alice"), "{suspended}");
    assert!(suspended.starts_with(original));
    let bob_lines: Vec<&str> = with_both.lines().filter(|l| l.contains("bob")).collect();
    assert_eq!(
        bob_lines,
        suspended
            .lines()
            .filter(|l| l.contains("bob"))
            .collect::<Vec<_>>(),
        "other tenants untouched"
    );
    assert_eq!(
        std::fs::read_to_string(app.sandbox.state().join("rbac/enabled")).unwrap(),
        "true",
        "enabled never flipped"
    );
    // Labels and annotations of the ConfigMap survive the write.
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(app.sandbox.state().join("rbac/last-replace.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        written["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );

    let result = run_ok(&app, "/accounts/resume", json!({"username": "alice"})).await;
    assert_eq!(
        result["inputs"]["restore_lines"].as_array().unwrap().len(),
        9
    );
    let resumed = policy(&app);
    for line in &removed {
        assert!(resumed.lines().any(|l| l == line), "{line} not restored");
    }
    assert_eq!(
        resumed.lines().count(),
        with_both.lines().count(),
        "nothing duplicated"
    );
    // Suspending again after the resume is possible; resuming a never-suspended user is not.
    let r = app
        .post("/accounts/resume", &json!({"username": "bob_1"}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_suspended");
    expect_422(
        &app,
        "/accounts/suspend",
        json!({"username": "admin"}),
        "username",
    )
    .await;
    app.stop().await;
}

both_backends!(suspension_needs_the_configmap_mode);
async fn suspension_needs_the_configmap_mode(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| c.rbac_mode = "skip".into()).await;
    for path in ["/accounts/suspend", "/accounts/resume"] {
        let r = app.post(path, &json!({"username": "alice"})).await;
        assert_eq!(r.status(), StatusCode::CONFLICT, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "rbac_unavailable");
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .contains("RBAC_MODE=configmap")
        );
    }
    assert_eq!(job_count(&app).await, 0);
    app.stop().await;
}

both_backends!(rbac_conflicts_are_retried_and_invalid_or_unreadable_policies_never_written);
async fn rbac_conflicts_are_retried_and_invalid_or_unreadable_policies_never_written(
    backend: Backend,
) {
    let app = TestApp::start_on(backend).await;
    std::fs::create_dir_all(app.sandbox.state().join("ctl")).unwrap();
    std::fs::write(app.sandbox.state().join("ctl/rbac-concurrent-writer"), "2").unwrap();
    let result = run_ok(&app, "/bootstrap/users", json!({"username": "alice"})).await;
    assert_eq!(
        app.sandbox.started("kubectl-replace"),
        3,
        "two conflicts, then a write"
    );
    assert!(
        result["steps"][3]["stdout"]
            .as_str()
            .unwrap()
            .contains("reading it again")
    );
    assert!(policy(&app).contains("g, alice, role:alice"));

    // A policy that is already broken: the candidate fails validation and nothing is written.
    let broken = format!("{}this is a bad policy\n", policy(&app));
    std::fs::write(app.sandbox.state().join("rbac/policy.csv"), &broken).unwrap();
    let replaces = app.sandbox.started("kubectl-replace");
    let id = submit(
        &app,
        "/bootstrap/users",
        json!({"username": "bob_1", "namespace": "bob"}),
    )
    .await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["error"]["kind"], "invalid_policy", "{status}");
    assert!(
        status["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("invalid policy line 'this is a bad policy'"),
        "{status}"
    );
    assert_eq!(app.sandbox.started("kubectl-replace"), replaces);
    assert_eq!(policy(&app), broken);

    // An unreadable ConfigMap: the step fails and nothing is written.
    std::fs::write(app.sandbox.state().join("ctl/rbac-configmap-missing"), "").unwrap();
    let id = submit(&app, "/accounts/suspend", json!({"username": "alice"})).await;
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "failed");
    assert!(
        status["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("configmaps \"everest-rbac\" not found"),
        "{status}"
    );
    assert_eq!(app.sandbox.started("kubectl-replace"), replaces);
    app.stop().await;
}

both_backends!(a_large_policy_is_read_whole_even_with_a_small_output_cap);
async fn a_large_policy_is_read_whole_even_with_a_small_output_cap(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| c.max_output_chars = 200).await;
    for i in 0..4 {
        run_ok(
            &app,
            "/bootstrap/users",
            json!({"username": format!("user_{i}"), "namespace": format!("team-{i}")}),
        )
        .await;
    }
    assert_eq!(
        policy(&app)
            .lines()
            .filter(|l| l.starts_with("g, user_"))
            .count(),
        4
    );
    app.stop().await;
}

both_backends!(delete_removes_namespace_rbac_and_account);
async fn delete_removes_namespace_rbac_and_account(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    run_ok(&app, "/bootstrap/users", json!({"username": "alice"})).await;
    let result = run_ok(&app, "/accounts/delete", json!({"username": "alice"})).await;
    let names: Vec<_> = result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["remove_namespace", "revoke_rbac", "delete_account"]);
    assert!(!app.sandbox.state().join("namespaces/alice").exists());
    assert!(!app.sandbox.state().join("users/alice").exists());
    assert!(!policy(&app).contains("alice"));
    assert!(
        !app.sandbox.calls().contains("kubectl-delete"),
        "never falls back to kubectl delete namespace"
    );

    // Deleting again: the namespace is gone, which a first attempt reports.
    let status = run_failed(&app, "/accounts/delete", json!({"username": "alice"})).await;
    assert_eq!(
        status["error"]["detail"],
        "'alice': namespace does not exist"
    );
    // Without removing the namespace: the account is gone, which a first attempt reports too.
    let status = run_failed(
        &app,
        "/accounts/delete",
        json!({"username": "alice", "remove_namespace": false}),
    )
    .await;
    assert_eq!(status["error"]["detail"], "account not found");
    expect_422(
        &app,
        "/accounts/delete",
        json!({"username": "alice", "remove_namespace": false, "force": true}),
        "remove_namespace",
    )
    .await;
    app.stop().await;
}

both_backends!(delete_passes_keep_and_force_only_when_asked_and_reports_running_databases);
async fn delete_passes_keep_and_force_only_when_asked_and_reports_running_databases(
    backend: Backend,
) {
    let app = TestApp::start_on(backend).await;
    run_ok(&app, "/bootstrap/users", json!({"username": "alice"})).await;
    let ns_file = app.sandbox.state().join("namespaces/alice");
    let content = std::fs::read_to_string(&ns_file).unwrap();
    std::fs::write(&ns_file, format!("{content}databases=2\n")).unwrap();
    let status = run_failed(&app, "/accounts/delete", json!({"username": "alice"})).await;
    assert!(
        status["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("HINT: use --force"),
        "{status}"
    );
    assert!(
        app.sandbox.state().join("users/alice").exists(),
        "nothing after the failed step ran"
    );
    run_ok(
        &app,
        "/accounts/delete",
        json!({"username": "alice", "keep_namespace": true, "force": true}),
    )
    .await;
    let calls = app.sandbox.calls();
    let removes: Vec<_> = calls
        .lines()
        .filter(|l| l.starts_with("START") && l.contains("namespaces-remove"))
        .collect();
    assert!(
        removes[0].ends_with("namespaces remove alice"),
        "{}",
        removes[0]
    );
    assert!(
        removes[1].ends_with("namespaces remove alice --keep-namespace --force"),
        "{}",
        removes[1]
    );
    app.stop().await;
}

both_backends!(a_rerun_after_an_interruption_counts_missing_as_done);
async fn a_rerun_after_an_interruption_counts_missing_as_done(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| {
        c.retry_base_seconds = 1.0;
        c.retry_max_seconds = 1.0;
    })
    .await;
    run_ok(&app, "/bootstrap/users", json!({"username": "alice"})).await;
    // The first attempt is cut off by a transient error after the work may have been done:
    // emulate that by removing the namespace while the retry waits.
    app.sandbox.ctl(
        "namespaces-remove",
        "fail",
        "1 1 read tcp 10.0.0.2:443: connection reset by peer",
    );
    let id = submit(&app, "/accounts/delete", json!({"username": "alice"})).await;
    let state = app.sandbox.state();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !app
        .sandbox
        .calls()
        .lines()
        .any(|l| l.starts_with("END") && l.contains("namespaces-remove"))
    {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::remove_file(state.join("namespaces/alice")).unwrap();
    let status = app.wait_final(&id).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let result = app.result(&id).await;
    assert!(
        result["steps"][0]["note"]
            .as_str()
            .unwrap()
            .contains("earlier interrupted attempt"),
        "{result}"
    );
    app.stop().await;
}

both_backends!(managed_namespaces_are_listed);
async fn managed_namespaces_are_listed(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    run_ok(
        &app,
        "/bootstrap/users",
        json!({"username": "zed_1", "namespace": "zed"}),
    )
    .await;
    run_ok(
        &app,
        "/bootstrap/users",
        json!({"username": "amy_1", "namespace": "amy"}),
    )
    .await;
    std::fs::write(app.sandbox.state().join("namespaces/other"), "unmanaged\n").unwrap();
    let (status, v) = app.get_json("/namespaces").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let names: Vec<_> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["amy", "zed"]);
    assert!(v["data"][0]["created_at"].as_str().unwrap().ends_with('Z'));
    app.sandbox.ctl("kubectl-get", "fail", "1 1 The connection to the server localhost:8080 was refused - did you specify the right host or port?");
    let (status, v) = app.get_json("/namespaces").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{v}");
    let r = app.client.get(app.url("/namespaces")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let _ = KEY;
    app.stop().await;
}

both_backends!(dry_runs_of_lifecycle_jobs_queue_nothing);
async fn dry_runs_of_lifecycle_jobs_queue_nothing(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let r = app
        .client
        .post(app.url("/accounts/delete?dry_run=true"))
        .header("X-Admin-Key", KEY)
        .json(&json!({"username": "alice", "force": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let steps = v["steps"].as_array().unwrap();
    assert!(
        steps[0]["command"]
            .as_str()
            .unwrap()
            .ends_with("namespaces remove alice --force")
    );
    assert!(
        steps[1]["command"]
            .as_str()
            .unwrap()
            .contains("kubectl get configmap everest-rbac -n everest-system -o json")
    );
    assert!(
        steps[2]["command"]
            .as_str()
            .unwrap()
            .ends_with("accounts delete -u alice")
    );
    let r = app
        .client
        .post(app.url("/accounts/password?dry_run=true"))
        .header("X-Admin-Key", KEY)
        .json(&json!({"username": "alice", "new_password": "Secret-pass9"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(!v.to_string().contains("Secret-pass9"));
    assert_eq!(job_count(&app).await, 0);
    app.stop().await;
}
