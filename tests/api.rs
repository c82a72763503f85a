//! The HTTP contract: bootstrap flow and result shape, validation, auth, errors, idempotency,
//! dry runs, request ids and the pass-through read; each test on both backends.

mod common;

use common::{Backend, CI_KEY, KEY, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_backends!(bootstrap_runs_every_step_and_returns_the_generated_password_once);
async fn bootstrap_runs_every_step_and_returns_the_generated_password_once(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let r = app
        .post("/bootstrap/users", &json!({"username": "alice"}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    let id = body["job_id"].as_str().unwrap();
    assert_eq!(location, format!("/jobs/{id}"));
    assert_eq!(body["status"], "queued");
    assert_eq!(body["kind"], "bootstrap_user");
    assert_eq!(body["result_url"], format!("/jobs/{id}/result"));
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);

    let status = app.wait_final(id).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["submitted_by"], "ops");
    let names: Vec<_> = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "create_account",
            "add_namespace",
            "apply_resource_quota",
            "apply_rbac_policy"
        ]
    );
    assert!(status["finished_at"].as_str().unwrap().ends_with('Z'));

    let result = app.result(id).await;
    assert_eq!(result["overall_status"], "succeeded");
    assert_eq!(result["inputs"]["namespace"], "alice");
    assert_eq!(
        result["inputs"]["operators"],
        json!({"mongodb": false, "postgresql": true, "mysql": false})
    );
    assert_eq!(
        result["inputs"]["resources"],
        json!({"cpu_cores": 2, "ram_mb": 2048, "disk_gb": 20, "max_databases": null})
    );
    let steps = result["steps"].as_array().unwrap();
    assert!(
        steps[0]["command"]
            .as_str()
            .unwrap()
            .ends_with("accounts create -u alice -p ********")
    );
    assert!(steps[1]["command"].as_str().unwrap().ends_with(
        "namespaces add alice --skip-wizard --operator.mongodb=false --operator.postgresql=true --operator.mysql=false"));
    assert!(
        steps[2]["manifest_preview"]
            .as_str()
            .unwrap()
            .contains("kind: ResourceQuota")
    );
    assert_eq!(steps[3]["rbac_applied"], true);
    let policy = std::fs::read_to_string(app.sandbox.state().join("rbac/policy.csv")).unwrap();
    assert!(policy.starts_with("g, admin, role:admin\n"), "{policy}");
    assert!(
        policy.contains("p, role:alice, database-clusters, *, alice/*\n"),
        "{policy}"
    );
    assert!(policy.ends_with("g, alice, role:alice\n"), "{policy}");
    let password = result["credentials"]["password"].as_str().unwrap();
    assert!(password.len() >= 24);
    assert_eq!(result["credentials"]["username"], "alice");
    // The fake everestctl received exactly that password.
    let stored = std::fs::read_to_string(app.sandbox.state().join("users/alice")).unwrap();
    assert_eq!(stored.trim(), password);
    // The namespace got the quota from the manifest.
    let applied = std::fs::read_to_string(app.sandbox.state().join("applied/alice.yaml")).unwrap();
    assert!(applied.contains("requests.memory: \"2048Mi\""), "{applied}");
    // The status body never shows it.
    let (_, status) = app.get_json(&format!("/jobs/{id}")).await;
    assert!(!status.to_string().contains(password));
    app.stop().await;
}

both_backends!(every_validation_rule_gives_422_and_queues_nothing);
async fn every_validation_rule_gives_422_and_queues_nothing(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| {
        c.namespace_denylist = Some("forbidden".into());
    })
    .await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "username"),
        (json!({"username": ""}), "username"),
        (json!({"username": "ab"}), "username"),
        (json!({"username": "bad-name!"}), "username"),
        (json!({"username": "admin"}), "username"),
        (json!({"username": "x".repeat(65)}), "username"),
        (json!({"username": "Alice_B"}), "namespace"),
        (
            json!({"username": "alice", "namespace": "Bad_NS"}),
            "namespace",
        ),
        (
            json!({"username": "alice", "namespace": "kube-system"}),
            "namespace",
        ),
        (
            json!({"username": "alice", "namespace": "kube-foo"}),
            "namespace",
        ),
        (
            json!({"username": "alice", "namespace": "openshift-x"}),
            "namespace",
        ),
        (
            json!({"username": "alice", "namespace": "everest-system"}),
            "namespace",
        ),
        (
            json!({"username": "alice", "namespace": "default"}),
            "namespace",
        ),
        (json!({"username": "forbidden"}), "namespace"),
        (json!({"username": "alice", "namespace": ""}), "namespace"),
        (
            json!({"username": "alice", "password": "short"}),
            "password",
        ),
        (
            json!({"username": "alice", "password": "has space 1"}),
            "password",
        ),
        (json!({"username": "alice", "password": ""}), "password"),
        (
            json!({"username": "alice", "password": "a".repeat(129)}),
            "password",
        ),
        (
            json!({"username": "alice", "operators": {"redis": true}}),
            "operators.redis",
        ),
        (
            json!({"username": "alice", "operators": {"mysql": "yes"}}),
            "operators.mysql",
        ),
        (
            json!({"username": "alice", "resources": {"cpu_cores": 0}}),
            "resources.cpu_cores",
        ),
        (
            json!({"username": "alice", "resources": {"cpu_cores": 2000}}),
            "resources.cpu_cores",
        ),
        (
            json!({"username": "alice", "resources": {"ram_mb": 64}}),
            "resources.ram_mb",
        ),
        (
            json!({"username": "alice", "resources": {"disk_gb": 0}}),
            "resources.disk_gb",
        ),
        (
            json!({"username": "alice", "resources": {"max_databases": 10001}}),
            "resources.max_databases",
        ),
        (
            json!({"username": "alice", "resources": {"cpu_cores": -1}}),
            "resources.cpu_cores",
        ),
        (
            json!({"username": "alice", "take_ownership": "no"}),
            "take_ownership",
        ),
        (json!({"username": "alice", "extra": 1}), "extra"),
        (json!({"username": 42}), "username"),
        (json!(["alice"]), "body"),
    ];
    for (body, field) in cases {
        let r = app.post("/bootstrap/users", &body).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "validation_failed", "{body}");
        let fields: Vec<_> = v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{body}: {v}");
        assert!(!v["detail"].as_str().unwrap().is_empty());
    }
    assert_eq!(job_ids(&app).await.len(), 0);
    assert_eq!(app.sandbox.calls(), "");
    app.stop().await;
}

both_backends!(malformed_oversized_and_wrongly_typed_bodies);
async fn malformed_oversized_and_wrongly_typed_bodies(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let post = |body: Vec<u8>, ctype: Option<&str>| {
        let mut req = app
            .client
            .post(app.url("/bootstrap/users"))
            .header("X-Admin-Key", KEY)
            .body(body);
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        req.send()
    };
    let r = post(b"{\"username\": ".to_vec(), Some("application/json"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_request");
    let r = post(
        b"{\"username\":\"alice\"} trailing".to_vec(),
        Some("application/json"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post(b"{\"username\":\"alice\"}".to_vec(), Some("text/plain"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_media_type"
    );
    let r = post(b"{\"username\":\"alice\"}".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = format!(
        "{{\"username\":\"alice\",\"namespace\":\"{}\"}}",
        "a".repeat(1024 * 1024 + 10)
    );
    let r = post(big.into_bytes(), Some("application/json"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "payload_too_large"
    );
    let r = post(
        b"{\"username\":\"alice\"}".to_vec(),
        Some("application/json; charset=utf-8"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app
        .client
        .post(app.url("/bootstrap/users?dry_run=maybe"))
        .header("X-Admin-Key", KEY)
        .json(&json!({"username": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .client
        .post(app.url("/bootstrap/users?bogus=1"))
        .header("X-Admin-Key", KEY)
        .json(&json!({"username": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(job_ids(&app).await.len(), 1);
    app.stop().await;
}

both_backends!(auth_is_required_except_for_health_checks);
async fn auth_is_required_except_for_health_checks(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let body = json!({"username": "alice"});
    let r = app
        .client
        .post(app.url("/bootstrap/users"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "unauthorized");
    for (name, value) in [
        ("X-Admin-Key", "wrong"),
        ("Authorization", "Bearer wrong"),
        ("Authorization", KEY),
        ("X-Admin-Key", ""),
    ] {
        let r = app
            .client
            .get(app.url("/accounts/list"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}: {value}");
    }
    let r = app
        .client
        .get(app.url("/jobs/00000000-0000-7000-8000-000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Bearer works, and the key's name is what the job records.
    let r = app
        .client
        .post(app.url("/bootstrap/users"))
        .bearer_auth(CI_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, v) = app.get_json(&format!("/jobs/{id}")).await;
    assert_eq!(v["submitted_by"], "ci");
    assert!(!v.to_string().contains(CI_KEY));
    for path in ["/healthz", "/readyz"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers().contains_key("x-request-id"));
    }
    assert_eq!(job_ids(&app).await.len(), 1);
    app.stop().await;
}

both_backends!(not_found_and_not_finished);
async fn not_found_and_not_finished(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    for path in [
        "/nope",
        "/jobs/not-a-uuid",
        "/jobs/00000000-0000-7000-8000-000000000000",
        "/jobs/00000000-0000-7000-8000-000000000000/result",
    ] {
        let (status, v) = app.get_json(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(v["error"], "not_found", "{path}");
    }
    let r = app
        .client
        .delete(app.url("/bootstrap/users"))
        .header("X-Admin-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Keep the first step busy so the result is asked for before the job ends.
    app.sandbox.ctl("accounts-create", "delay", "3");
    let id = app.bootstrap(json!({"username": "alice"})).await;
    let (status, v) = app.get_json(&format!("/jobs/{id}/result")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"], "not_finished");
    assert!(
        matches!(v["status"].as_str(), Some("queued" | "running")),
        "{v}"
    );
    app.sandbox.clear_ctl("accounts-create", "delay");
    assert_eq!(app.wait_final(&id).await["status"], "succeeded");
    app.stop().await;
}

both_backends!(idempotency_key_replays_or_conflicts);
async fn idempotency_key_replays_or_conflicts(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let send = |key: &'static str, body: Value| {
        app.client
            .post(app.url("/bootstrap/users"))
            .header("X-Admin-Key", KEY)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first = send("key-1", json!({"username": "alice", "namespace": "team-a"}))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let id = first.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Same body, keys in another order: the original job.
    let again = send("key-1", json!({"namespace": "team-a", "username": "alice"}))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["job_id"], id.as_str());
    let conflict = send("key-1", json!({"username": "bob"})).await.unwrap();
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
    assert_eq!(
        conflict.json::<Value>().await.unwrap()["error"],
        "idempotency_conflict"
    );
    let bad = app
        .client
        .post(app.url("/bootstrap/users"))
        .header("X-Admin-Key", KEY)
        .header("Idempotency-Key", "x".repeat(256))
        .json(&json!({"username": "carol"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(job_ids(&app).await.len(), 1);
    app.wait_final(&id).await;
    assert_eq!(app.sandbox.started("accounts-create"), 1);
    app.stop().await;
}

both_backends!(dry_run_shows_the_plan_and_queues_nothing);
async fn dry_run_shows_the_plan_and_queues_nothing(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let body = json!({"username": "alice", "password": "Sup3r-secret!", "operators": {"mysql": true, "mongodb": true},
                      "take_ownership": true, "resources": {"cpu_cores": 4, "ram_mb": 8192, "disk_gb": 100, "max_databases": 5}});
    let r = app
        .client
        .post(app.url("/bootstrap/users?dry_run=true"))
        .header("X-Admin-Key", KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert!(!v.to_string().contains("Sup3r-secret!"));
    assert_eq!(v["dry_run"], true);
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert!(
        steps[0]["command"]
            .as_str()
            .unwrap()
            .ends_with("accounts create -u alice -p ********")
    );
    assert!(steps[1]["command"].as_str().unwrap().ends_with(
        "namespaces add alice --skip-wizard --operator.mongodb=true --operator.postgresql=false --operator.mysql=true --take-ownership"));
    let manifest = steps[2]["manifest_preview"].as_str().unwrap();
    assert!(
        manifest.contains("count/databaseclusters.everest.percona.com: \"5\""),
        "{manifest}"
    );
    assert!(
        manifest.contains("requests.storage: \"100Gi\""),
        "{manifest}"
    );
    assert!(
        steps[3]["policy_preview"]
            .as_str()
            .unwrap()
            .contains("g, alice, role:alice")
    );
    assert_eq!(job_ids(&app).await.len(), 0);
    assert_eq!(app.sandbox.calls(), "");
    app.stop().await;
}

both_backends!(request_ids_are_kept_when_valid_and_stored_on_jobs);
async fn request_ids_are_kept_when_valid_and_stored_on_jobs(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let r = app
        .client
        .post(app.url("/bootstrap/users"))
        .header("X-Admin-Key", KEY)
        .header("X-Request-ID", "trace-abc-123")
        .json(&json!({"username": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-abc-123");
    let id = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, v) = app.get_json(&format!("/jobs/{id}")).await;
    assert_eq!(v["request_id"], "trace-abc-123");
    for bad in ["x".repeat(129), "has space".to_string()] {
        let r = app
            .client
            .get(app.url("/healthz"))
            .header("X-Request-ID", &bad)
            .send()
            .await
            .unwrap();
        let echoed = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(echoed, bad);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok());
    }
    app.stop().await;
}

both_backends!(accounts_list_is_parsed_sorted_and_maps_cli_errors);
async fn accounts_list_is_parsed_sorted_and_maps_cli_errors(backend: Backend) {
    let app = TestApp::start_on_with(backend, |c| c.subprocess_timeout = 1).await;
    std::fs::create_dir_all(app.sandbox.state().join("users")).unwrap();
    for user in ["zed", "bob_dev"] {
        std::fs::write(app.sandbox.state().join("users").join(user), "pw123456\n").unwrap();
    }
    let (status, v) = app.get_json("/accounts/list").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["source"], "everestctl accounts list");
    let users: Vec<_> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["admin", "bob_dev", "zed"]);
    assert_eq!(
        v["data"][0],
        json!({"user": "admin", "capabilities": ["login"], "enabled": true})
    );

    app.sandbox.ctl(
        "accounts-list",
        "fail",
        "1 1 secrets \"everest-accounts\" not found",
    );
    let (status, v) = app.get_json("/accounts/list").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(v["error"], "cli_failed");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("secrets \"everest-accounts\" not found"),
        "{v}"
    );

    app.sandbox.ctl("accounts-list", "hang", "");
    let (status, v) = app.get_json("/accounts/list").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(v["error"], "cli_timeout");
    app.sandbox.clear_ctl("accounts-list", "hang");
    app.stop().await;

    let app = TestApp::start_on_with(backend, |c| {
        c.everestctl_bin = "/nonexistent/everestctl".into()
    })
    .await;
    let (status, v) = app.get_json("/accounts/list").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"], "cli_not_found");
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = r.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("everestctl"), "{v}");
    app.stop().await;
}

/// `GET /jobs` through the API: the ids of every job, to show that nothing was queued.
async fn job_ids(app: &TestApp) -> Vec<Value> {
    let (status, v) = app.get_json("/jobs?limit=500").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].clone())
        .collect()
}

async fn post_raw(app: &TestApp, path: &str, body: &str) -> (StatusCode, Value) {
    let r = app
        .client
        .post(app.url(path))
        .header("X-Admin-Key", KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

both_backends!(struct_fields_given_as_arrays_are_refused_naming_the_field);
async fn struct_fields_given_as_arrays_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let cases = [
        (
            "/bootstrap/users",
            r#"{"username": "alice", "resources": [4, 8192, 50, 7]}"#,
            "resources",
        ),
        (
            "/bootstrap/users",
            r#"{"username": "alice", "operators": [true, true, false, false]}"#,
            "operators",
        ),
        (
            "/namespaces/resources",
            r#"{"namespace": "alice", "resources": [4, 8192, 50, 7]}"#,
            "resources",
        ),
        (
            "/namespaces/operators",
            r#"{"namespace": "alice", "operators": [true, false, false, false]}"#,
            "operators",
        ),
        ("/namespaces/resources", r#"["alice", {}]"#, "body"),
    ];
    for (path, body, field) in cases {
        let (status, v) = post_raw(&app, path, body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {v}"
        );
        assert_eq!(v["error"], "validation_failed");
        assert_eq!(v["fields"][0]["field"], field, "{path} {body}: {v}");
        assert!(
            v["detail"].as_str().unwrap().contains("a JSON object"),
            "{v}"
        );
    }
    // The object forms are still accepted.
    let (status, v) = post_raw(
        &app,
        "/bootstrap/users?dry_run=true",
        r#"{"username": "alice", "resources": {"cpu_cores": 4}, "operators": {"mysql": true}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(job_ids(&app).await, Vec::<Value>::new());
    app.stop().await;
}

both_backends!(malformed_json_is_400_even_after_a_wrongly_typed_value);
async fn malformed_json_is_400_even_after_a_wrongly_typed_value(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let routes = [
        "/bootstrap/users",
        "/accounts/password",
        "/accounts/suspend",
        "/accounts/resume",
        "/accounts/delete",
        "/namespaces/resources",
        "/namespaces/operators",
    ];
    for path in routes {
        for body in [
            r#"{"username":5 BROKEN"#,
            r#"{"username":5"#,
            r#"{"namespace":[1,2"#,
            r#"{"username":"alice",}"#,
            "[4, 8192",
        ] {
            let (status, v) = post_raw(&app, path, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {v}");
            assert_eq!(v["error"], "bad_request", "{path} {body}: {v}");
            assert!(v["detail"].as_str().unwrap().starts_with("malformed JSON"));
        }
        // Well-formed JSON with a wrong type stays a 422.
        let (status, v) = post_raw(&app, path, r#"{"username":5,"namespace":5}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {v}");
    }
    assert_eq!(job_ids(&app).await, Vec::<Value>::new());
    app.stop().await;
}

both_backends!(undecodable_paths_and_queries_get_the_json_envelope);
async fn undecodable_paths_and_queries_get_the_json_envelope(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let send = |method: reqwest::Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .header("X-Admin-Key", KEY)
            .send()
    };
    use reqwest::Method;
    let with_id = [
        (Method::GET, "/jobs/%ff"),
        (Method::GET, "/jobs/%ff/result"),
        (Method::GET, "/jobs/%c3%28/history"),
        (Method::POST, "/jobs/%ff/cancel"),
        (Method::POST, "/jobs/%fe%ff/retry"),
    ];
    for (method, path) in with_id {
        let r = send(method.clone(), path).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "not_found", "{method} {path}: {v}");
        assert!(v["detail"].is_string(), "{v}");
    }
    for path in [
        "/jobs?%ff=1",
        "/jobs?status=%ff",
        "/jobs/00000000-0000-7000-8000-000000000000?wait=%zz",
        "/jobs/00000000-0000-7000-8000-000000000000/history?x=1",
        "/accounts/list?%ff",
        "/namespaces?x=1",
    ] {
        let r = send(Method::GET, path).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "bad_request", "{path}: {v}");
    }
    let (status, v) = app.get_json("/accounts/list?x=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["detail"], "this route takes no query parameters (got \"x\")",
        "{v}"
    );
    app.stop().await;
}

both_backends!(rule_messages_read_after_the_field_name);
async fn rule_messages_read_after_the_field_name(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    for (path, body) in [
        ("/bootstrap/users", json!({"username": "ab"})),
        (
            "/bootstrap/users",
            json!({"username": "alice", "namespace": "kube-system"}),
        ),
        ("/bootstrap/users", json!({"username": "kube-x_"})),
        (
            "/accounts/password",
            json!({"username": "alice", "new_password": "x"}),
        ),
        ("/accounts/delete", json!({"username": "default"})),
    ] {
        let r = app.post(path, &body).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let v: Value = r.json().await.unwrap();
        for f in v["fields"].as_array().unwrap() {
            let (field, message) = (f["field"].as_str().unwrap(), f["message"].as_str().unwrap());
            assert!(
                !message.starts_with(field) && !message.contains("must be must"),
                "{body}: {field}: {message}"
            );
        }
    }
    for (query, start) in [
        ("username=a", "username must match "),
        ("status=done", "status must be one of "),
        ("kind=x", "kind must be one of "),
        ("namespace=Bad", "namespace must be a namespace name"),
        ("submitted_by=%20", "submitted_by must be an admin key name"),
        (
            "created_after=yesterday",
            "created_after must be an RFC 3339",
        ),
    ] {
        let (status, v) = app.get_json(&format!("/jobs?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        let detail = v["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(start) && !detail.contains("must be must"),
            "{query}: {detail}"
        );
    }
    app.stop().await;
}
