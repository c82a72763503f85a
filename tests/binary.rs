//! The real binary: crash recovery after kill -9, configuration errors, one process per
//! database file, and logs without secrets.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::service::{Service, command, free_port, kill_orphans, wait_final, wait_for};
use common::{KEY, Sandbox};
use serde_json::{Value, json};

#[tokio::test]
async fn kill_9_in_the_middle_of_a_step_then_restart_resumes_the_job() {
    let sandbox = Sandbox::new();
    let mut service = Service::start(&sandbox, 1);
    let client = reqwest::Client::new();
    let password = "Chosen-Pass_42";
    sandbox.ctl("namespaces-add", "delay", "30");
    let r = client
        .post(format!("{}/bootstrap/users", service.base))
        .header("X-Admin-Key", KEY)
        .json(&json!({"username": "alice", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("namespaces add to start", Duration::from_secs(20), || {
        sandbox.started("namespaces-add") == 1
    })
    .await;
    service.kill9();
    // The orphaned CLI keeps sleeping; the restart must not wait for it or for the lease.
    sandbox.clear_ctl("namespaces-add", "delay");
    let first_logs = service.logs();

    let service = Service::start(&sandbox, 2);
    let status = wait_final(&client, &service.base, &id, Duration::from_secs(30)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    // Completed steps did not run again; the interrupted one ran once more.
    assert_eq!(sandbox.started("accounts-create"), 1);
    assert_eq!(sandbox.started("namespaces-add"), 2);
    let db = sandbox.db();
    let outcomes = common::db_scalar(&db, &format!(
        "SELECT COUNT(*) FROM step_attempts WHERE job_id='{id}' AND step='add_namespace' AND outcome='interrupted'")).await;
    assert_eq!(outcomes, 1, "the interrupted attempt is in the history");
    assert_eq!(
        common::db_scalar(
            &db,
            &format!("SELECT COUNT(*) FROM job_events WHERE job_id='{id}' AND type='recovered'")
        )
        .await,
        1
    );
    assert_eq!(status["steps"][1]["attempts"], 2);

    // Nothing secret in the logs of either run.
    for logs in [first_logs, service.logs()] {
        assert!(!logs.contains(password), "password in logs");
        assert!(!logs.contains(KEY), "admin key in logs");
        assert!(
            logs.lines()
                .all(|l| serde_json::from_str::<Value>(l).is_ok()),
            "every log line is JSON"
        );
    }
    assert!(
        service
            .logs()
            .contains("recovered job left running by a previous process")
    );
    let metrics = client
        .get(format!("{}/metrics", service.base))
        .header("X-Admin-Key", KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let recoveries = metrics
        .lines()
        .find(|l| l.starts_with("lease_recoveries_total"))
        .unwrap_or_default();
    assert_eq!(recoveries, "lease_recoveries_total 1", "{metrics}");
    kill_orphans(&sandbox);
}

#[test]
fn invalid_configuration_stops_the_process_with_a_message_naming_the_key() {
    let sandbox = Sandbox::new();
    let run = |cmd: &mut Command| {
        let out = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(command(&sandbox).env_remove("ADMIN_API_KEYS"));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no admin API key") && err.contains("ADMIN_API_KEY"),
        "{err}"
    );
    let (code, err) = run(command(&sandbox).env("PORT", "not-a-port"));
    assert_eq!(code, Some(2));
    assert!(err.contains("PORT"), "{err}");
    let (code, err) = run(command(&sandbox).env("WORKER_CONCURRENCY", "0"));
    assert_eq!(code, Some(2));
    assert!(err.contains("WORKER_CONCURRENCY"), "{err}");
    // A value another setting makes unused is still checked, by `serve` and `check-config`
    // (a `serve` that accepted it would keep running: bounded wait, then killed).
    for args in [&[][..], &["check-config"][..]] {
        let mut child = command(&sandbox)
            .env("EVEREST_RBAC_APPLY_CMD", "apply --file {file}")
            .env("RBAC_MODE", "bogus")
            .env("PORT", "0")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("{args:?} accepted RBAC_MODE=bogus and kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("RBAC_MODE") && err.contains("bogus"), "{err}");
    }
    let (code, err) = run(command(&sandbox).arg("--config").arg("/nonexistent.toml"));
    assert_eq!(code, Some(2));
    assert!(err.contains("/nonexistent.toml"), "{err}");
    // A TOML file is read, and the environment wins over it.
    let toml = sandbox.path().join("config.toml");
    std::fs::write(&toml, "worker_concurrency = 7\nlog_format = 'text'\n").unwrap();
    let out = command(&sandbox)
        .env("LOG_FORMAT", "json")
        .arg("--config")
        .arg(&toml)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("worker_concurrency: 7") && printed.contains("log_format: Json"),
        "{printed}"
    );
    assert!(!printed.contains(KEY), "check-config shows a key");
}

#[test]
fn a_second_process_on_the_same_database_refuses_to_start() {
    let sandbox = Sandbox::new();
    let _first = Service::start(&sandbox, 1);
    let mut second = command(&sandbox)
        .env("PORT", free_port().to_string())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "second process kept running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("another everestctl-api process is already using"),
        "{err}"
    );
}

#[test]
fn the_database_and_its_folder_are_created_on_first_start() {
    let sandbox = Sandbox::new();
    assert!(!sandbox.db().exists());
    let out = command(&sandbox).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sandbox.db().exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(sandbox.db())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the database holds secrets");
}
