//! Secrets at rest and in the CLIs' reach: the CLIs' environment, passwords left in the database
//! files after the purge, the idempotency hash, and idempotency keys scoped per admin key. On
//! both backends, but for the bytes of SQLite's files and the upgrade of an SQLite database.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::service::{Service, wait_final};
use common::{Backend, CI_KEY, KEY, Sandbox, TestApp};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

/// The `NAME=value` lines a fake wrote for its `<op>.env` control.
fn environ(sandbox: &Sandbox, op: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(sandbox.state().join(format!("{op}.environ")))
        .unwrap_or_else(|e| panic!("{op} did not record its environment: {e}"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

both_backends!(the_clis_get_a_minimal_environment_without_the_services_settings);
async fn the_clis_get_a_minimal_environment_without_the_services_settings(backend: Backend) {
    let sandbox = Sandbox::on(backend).await;
    for op in ["accounts-create", "kubectl-apply", "accounts-list"] {
        sandbox.ctl(op, "env", "");
    }
    let service = Service::start_with(&sandbox, 1, |cmd| {
        cmd.env("ADMIN_API_KEY", "single-admin-key-0123456789")
            .env("CLI_ENV_PASSTHROUGH", "AWS_PROFILE")
            .env("AWS_PROFILE", "tenant-admin")
            .env("AWS_SECRET_ACCESS_KEY", "not-listed-so-not-passed")
            .env("LC_TIME", "C.UTF-8")
            .env("HTTPS_PROXY", "http://proxy.invalid:3128");
    });
    let client = reqwest::Client::new();
    let r = client
        .post(service.url("/bootstrap/users"))
        .header("X-Admin-Key", KEY)
        .json(&json!({"username": "alice", "password": "Chosen-Pass_42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = wait_final(&client, &service.base, &id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // A pass-through read runs a CLI too.
    let r = client
        .get(service.url("/accounts/list"))
        .header("X-Admin-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    for op in ["accounts-create", "kubectl-apply", "accounts-list"] {
        let env = environ(&sandbox, op);
        for setting in [
            "ADMIN_API_KEYS",
            "ADMIN_API_KEY",
            "DATABASE_URL",
            "PORT",
            "BIND_ADDR",
        ] {
            assert!(!env.contains_key(setting), "{op} got {setting}: {env:?}");
        }
        let all: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        assert!(!all.contains(KEY), "{op} saw the admin key");
        assert!(
            !all.contains(&sandbox.database_url()),
            "{op} saw the database"
        );
        assert!(!all.contains("single-admin-key"), "{op} saw the admin key");
        assert!(!env.contains_key("AWS_SECRET_ACCESS_KEY"), "{op}: {env:?}");
        assert!(!env.contains_key("CLI_ENV_PASSTHROUGH"), "{op}: {env:?}");
        assert_eq!(env["AWS_PROFILE"], "tenant-admin", "{op}");
        assert_eq!(env["HOME"], sandbox.path().display().to_string(), "{op}");
        assert!(env["PATH"].starts_with(&sandbox.path().display().to_string()));
        assert_eq!(env["LC_TIME"], "C.UTF-8", "{op}");
        assert_eq!(env["HTTPS_PROXY"], "http://proxy.invalid:3128", "{op}");
        assert_eq!(env["NO_COLOR"], "1", "{op}");
    }
}

#[test]
fn a_service_setting_in_the_allow_list_is_refused_at_start() {
    let sandbox = Sandbox::new();
    let out = common::service::command(&sandbox)
        .arg("check-config")
        .env("CLI_ENV_PASSTHROUGH", "AWS_PROFILE,ADMIN_API_KEYS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CLI_ENV_PASSTHROUGH")
            && stderr.contains("ADMIN_API_KEYS is a setting of this service"),
        "{stderr}"
    );
    assert!(!stderr.contains(KEY), "{stderr}");
}

/// Whether any file of `dir` contains one of `needles`, byte for byte.
fn files_contain(dir: &std::path::Path, needles: &[&str]) -> Option<String> {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return Some(format!("{} holds {needle:?}", path.display()));
            }
        }
    }
    None
}

// The bytes of SQLite's files; PostgreSQL keeps dead row versions until a vacuum, and its
// erasure is checked through the database by `generated_credentials_expire` (jobs.rs).
sqlite_only!(erased_passwords_leave_every_database_file);
async fn erased_passwords_leave_every_database_file() {
    let app = TestApp::start_with(|raw| raw.credentials_ttl_seconds = 1).await;
    // The longest password allowed: SQLite writes the shorter row over the end of the old one,
    // so an erased short value is overwritten by chance; most of a long one is not.
    let chosen = format!("Chosen-Pass_{}", "x1".repeat(58));
    assert_eq!(chosen.len(), 128);
    let chosen_job = app
        .bootstrap(json!({"username": "alice", "password": chosen}))
        .await;
    let generated_job = app.bootstrap(json!({"username": "bob"})).await;
    for id in [&chosen_job, &generated_job] {
        assert_eq!(app.wait_final(id).await["status"], "succeeded");
    }
    // The fake everestctl keeps the password it was given.
    let generated = std::fs::read_to_string(app.sandbox.state().join("users/bob")).unwrap();
    let generated = generated.trim();
    assert!(generated.len() >= 16, "{generated}");

    let dir = app.sandbox.db().parent().unwrap().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Some(found) = files_contain(&dir, &[&chosen, &chosen[..20], generated]) {
        assert!(
            Instant::now() < deadline,
            "after the credentials TTL and the purge, {found}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let result = app.result(&generated_job).await;
    assert!(result["password"].is_null(), "{result}");
    app.stop().await;
}

/// `POST /bootstrap/users` with an admin key and an `Idempotency-Key`.
async fn submit(app: &TestApp, admin_key: &str, idempotency_key: &str, body: &Value) -> Response {
    app.client
        .post(app.url("/bootstrap/users"))
        .header("X-Admin-Key", admin_key)
        .header("Idempotency-Key", idempotency_key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn job_id(r: Response) -> String {
    r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The unkeyed hash the service stored before: SHA-256 of the route, a zero byte and the body
/// as JSON with sorted keys.
fn unkeyed_hash(route: &str, body: &Value) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(body.to_string().as_bytes());
    hex::encode(h.finalize())
}

both_backends!(a_reused_idempotency_key_replays_or_conflicts_and_its_hash_is_keyed);
async fn a_reused_idempotency_key_replays_or_conflicts_and_its_hash_is_keyed(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let body = json!({"username": "alice", "password": "Chosen-Pass_42"});
    let first = submit(&app, KEY, "key-1", &body).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let id = job_id(first).await;

    let again = submit(&app, KEY, "key-1", &body).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(job_id(again).await, id);

    // Only the password differs: still refused.
    let other = json!({"username": "alice", "password": "Other-Pass_42"});
    let conflict = submit(&app, KEY, "key-1", &other).await;
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
    let conflict: Value = conflict.json().await.unwrap();
    assert_eq!(conflict["error"], "idempotency_conflict", "{conflict}");
    assert_eq!(conflict["job_id"], id.as_str());
    app.wait_final(&id).await;

    // A hash is stored, but not one that a password guess can be checked against.
    assert_eq!(app.count("jobs", "length(request_hash) = 64").await, 1);
    let sandbox = app.stop().await;
    let stored = sandbox.database().stored_text().await;
    for b in [&body, &other] {
        let plain = unkeyed_hash("POST /bootstrap/users", b);
        assert!(!stored.contains(&plain), "the unkeyed hash is stored");
        if backend == Backend::Sqlite {
            let dir = sandbox.db().parent().unwrap().to_path_buf();
            assert_eq!(files_contain(&dir, &[&plain]), None);
        }
    }

    // The key of the hash is kept with the database: a replay still works after a restart.
    let app = TestApp::start_in(sandbox, |_| {}).await;
    let again = submit(&app, KEY, "key-1", &body).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(job_id(again).await, id);
    app.stop().await;
}

both_backends!(idempotency_keys_belong_to_the_admin_key_that_used_them);
async fn idempotency_keys_belong_to_the_admin_key_that_used_them(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let ops = submit(&app, KEY, "shared", &json!({"username": "alice"})).await;
    assert_eq!(ops.status(), StatusCode::ACCEPTED);
    let ops_job = job_id(ops).await;
    // Another key name, the same Idempotency-Key, even another body: a job of its own.
    let ci = submit(&app, CI_KEY, "shared", &json!({"username": "bob"})).await;
    assert_eq!(ci.status(), StatusCode::ACCEPTED);
    let ci_job = job_id(ci).await;
    assert_ne!(ops_job, ci_job);

    for (key, job, user) in [(KEY, &ops_job, "alice"), (CI_KEY, &ci_job, "bob")] {
        let again = submit(&app, key, "shared", &json!({"username": user})).await;
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(&job_id(again).await, job);
    }
    let status = app.wait_final(&ci_job).await;
    assert_eq!(status["submitted_by"], "ci", "{status}");
    app.wait_final(&ops_job).await;
    app.stop().await;
}

/// A database as the service left it before migration 0004, with one job submitted with an
/// `Idempotency-Key` and its unkeyed hash.
async fn pre_upgrade_database(db: &std::path::Path, key: &str, hash: &str) {
    use sqlx::ConnectOptions;
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .connect()
        .await
        .unwrap();
    let mut migrator = sqlx::migrate::Migrator::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite"),
    )
    .await
    .unwrap();
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= 3)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    migrator.run_direct(&mut conn).await.unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, kind, status, inputs, username, idempotency_key, request_hash,
                           submitted_by, request_id, created_at, updated_at, run_at, finished_at)
         VALUES ('old-job', 'bootstrap_user', 'succeeded', '{}', 'alice', ?, ?, 'ops', 'r1',
                 ?3, ?3, ?3, ?3)",
    )
    .bind(key)
    .bind(hash)
    // Recent, or the retention pruner would delete it at start.
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::Connection::close(conn).await.unwrap();
}

// Unkeyed hashes were stored by SQLite databases before migration 0004 only; the PostgreSQL
// schema was born keyed.
sqlite_only!(a_key_used_before_the_upgrade_is_refused_as_unverifiable_and_its_hash_erased);
async fn a_key_used_before_the_upgrade_is_refused_as_unverifiable_and_its_hash_erased() {
    let sandbox = Sandbox::new();
    let body = json!({"username": "alice", "password": "Chosen-Pass_42"});
    let old_hash = unkeyed_hash("POST /bootstrap/users", &body);
    pre_upgrade_database(&sandbox.db(), "old-key", &old_hash).await;
    let dir = sandbox.db().parent().unwrap().to_path_buf();
    assert!(
        files_contain(&dir, &[&old_hash]).is_some(),
        "the test needs the old hash"
    );

    let app = TestApp::start_in(sandbox, |_| {}).await;
    let left = files_contain(&dir, &[&old_hash]);
    assert_eq!(left, None, "the unkeyed hash survived the upgrade");
    // Even the very request of that job cannot be verified any more.
    let r = submit(&app, KEY, "old-key", &body).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["error"], "idempotency_conflict", "{r}");
    assert_eq!(r["job_id"], "old-job");
    let detail = r["detail"].as_str().unwrap();
    assert!(detail.contains("before an upgrade"), "{detail}");
    // Keys were global then; now another key name may use it.
    let r = submit(&app, CI_KEY, "old-key", &body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    app.wait_final(&job_id(r).await).await;
    app.stop().await;
}
