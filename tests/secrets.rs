//! Secrets at rest and in the CLIs' reach: the CLIs' environment, passwords left in the database
//! files after the purge, the idempotency hash, and idempotency keys scoped per admin key.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::service::{Service, wait_final};
use common::{CI_KEY, KEY, Sandbox, TestApp};
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

#[tokio::test]
async fn the_clis_get_a_minimal_environment_without_the_services_settings() {
    let sandbox = Sandbox::new();
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
    let _ = CI_KEY;
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

#[tokio::test]
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
