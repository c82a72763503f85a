//! Fault injection against the real binary: signals, repeated kill -9 under load, floods, and a
//! database folder that fills up or turns read-only. Each test checks that nothing accepted is
//! lost, nothing is applied twice, and every job ends in a final status.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::service::{Service, kill_orphans, wait_final, wait_for};
use common::{KEY, Sandbox, db_scalar};
use serde_json::{Value, json};

async fn submit(client: &reqwest::Client, service: &Service, body: Value) -> reqwest::Response {
    client
        .post(service.url("/bootstrap/users"))
        .header("X-Admin-Key", KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn submit_ok(client: &reqwest::Client, service: &Service, body: Value) -> String {
    let r = submit(client, service, body).await;
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn sigterm_lets_a_running_step_finish_then_the_next_start_resumes_the_job() {
    let sandbox = Sandbox::new();
    let client = reqwest::Client::new();
    let mut service = Service::start_with(&sandbox, 1, |c| {
        c.env("SHUTDOWN_GRACE_SECONDS", "10");
    });
    sandbox.ctl("accounts-create", "delay", "1.5");
    let id = submit_ok(&client, &service, json!({"username": "alice"})).await;
    wait_for("accounts create to start", Duration::from_secs(20), || {
        sandbox.started("accounts-create") == 1
    })
    .await;
    service.signal("TERM");
    // While draining: not ready, reads served, submissions refused.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = client.get(service.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "shutting_down");
    let r = client
        .get(service.url(&format!("/jobs/{id}")))
        .header("X-Admin-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = submit(
        &client,
        &service,
        json!({"username": "bob_1", "namespace": "bob"}),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "shutting_down");
    assert_eq!(service.wait_exit(Duration::from_secs(20)), Some(0));

    let db = sandbox.db();
    // A clean exit closes every connection, the writer's last, which checkpoints and removes
    // the WAL (the poll above opened a reader).
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    assert!(
        !std::path::Path::new(&wal).exists(),
        "the WAL is left behind"
    );
    let ok = db_scalar(&db, &format!("SELECT COUNT(*) FROM step_attempts WHERE job_id='{id}' AND step='create_account' AND outcome='succeeded'")).await;
    assert_eq!(ok, 1, "the running step was allowed to finish");
    assert_eq!(
        db_scalar(
            &db,
            &format!("SELECT COUNT(*) FROM jobs WHERE id='{id}' AND status='queued'")
        )
        .await,
        1
    );
    assert_eq!(
        db_scalar(
            &db,
            &format!("SELECT COUNT(*) FROM job_events WHERE job_id='{id}' AND type='interrupted'")
        )
        .await,
        1
    );
    assert_eq!(
        db_scalar(&db, "SELECT COUNT(*) FROM jobs").await,
        1,
        "the refused submission was not stored"
    );

    let service = Service::start(&sandbox, 2);
    let t = Instant::now();
    let status = wait_final(&client, &service.base, &id, Duration::from_secs(20)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "resumed at once, not after the lease"
    );
    assert_eq!(sandbox.started("accounts-create"), 1);
}

#[tokio::test]
async fn sigterm_past_the_grace_stops_the_command_and_records_it_interrupted() {
    let sandbox = Sandbox::new();
    let client = reqwest::Client::new();
    let mut service = Service::start_with(&sandbox, 1, |c| {
        c.env("SHUTDOWN_GRACE_SECONDS", "1");
    });
    sandbox.ctl("namespaces-add", "delay", "60");
    let id = submit_ok(&client, &service, json!({"username": "alice"})).await;
    wait_for("namespaces add to start", Duration::from_secs(20), || {
        sandbox.started("namespaces-add") == 1
    })
    .await;
    let t = Instant::now();
    service.signal("TERM");
    assert_eq!(service.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let calls = sandbox.calls();
    assert!(
        calls
            .lines()
            .any(|l| l.starts_with("END") && l.contains("namespaces-add 143")),
        "command stopped: {calls}"
    );
    let db = sandbox.db();
    let interrupted = db_scalar(&db, &format!("SELECT COUNT(*) FROM step_attempts WHERE job_id='{id}' AND step='add_namespace' AND outcome='interrupted'")).await;
    assert_eq!(interrupted, 1);
    assert_eq!(
        db_scalar(&db, "SELECT COUNT(*) FROM resource_locks").await,
        0
    );

    sandbox.clear_ctl("namespaces-add", "delay");
    let service = Service::start(&sandbox, 2);
    let status = wait_final(&client, &service.base, &id, Duration::from_secs(10)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(sandbox.started("accounts-create"), 1);
    assert_eq!(sandbox.started("namespaces-add"), 2);
}

#[tokio::test]
async fn repeated_kill_9_under_load_loses_nothing_and_reruns_no_completed_step() {
    let sandbox = Sandbox::new();
    let client = reqwest::Client::new();
    sandbox.ctl("accounts-create", "delay", "0.01");
    sandbox.ctl("namespaces-add", "delay", "0.08");
    sandbox.ctl("kubectl-apply", "delay", "0.04");
    let mut accepted = Vec::new();
    let mut service = Service::start(&sandbox, 0);
    for i in 0..200 {
        accepted.push(
            submit_ok(
                &client,
                &service,
                json!({"username": format!("user_{i}"), "namespace": format!("ns-{i}")}),
            )
            .await,
        );
    }
    for round in 1..=5 {
        // Let it work a while, submitting more, then kill it without warning.
        for i in 0..10 {
            let n = 1000 * round + i;
            accepted.push(
                submit_ok(
                    &client,
                    &service,
                    json!({"username": format!("late_{n}"), "namespace": format!("late-{n}")}),
                )
                .await,
            );
        }
        tokio::time::sleep(Duration::from_millis(300 + 100 * round as u64)).await;
        service.kill9();
        service = Service::start(&sandbox, round);
    }
    for id in &accepted {
        let status = wait_final(&client, &service.base, id, Duration::from_secs(120)).await;
        assert_eq!(status["status"], "succeeded", "{status}");
    }
    let db = sandbox.db();
    assert_eq!(
        db_scalar(&db, "SELECT COUNT(*) FROM jobs").await,
        accepted.len() as i64
    );
    assert_eq!(
        db_scalar(&db, "SELECT COUNT(*) FROM jobs WHERE status <> 'succeeded'").await,
        0
    );
    // A completed step never ran again: no attempt starts after a succeeded attempt of its step.
    let reruns = db_scalar(&db, "SELECT COUNT(*) FROM step_attempts a JOIN step_attempts s
        ON s.job_id = a.job_id AND s.position = a.position AND s.outcome = 'succeeded' AND a.id > s.id").await;
    assert_eq!(reruns, 0);
    assert_eq!(db_scalar(&db, "SELECT COUNT(*) FROM (SELECT 1 FROM step_attempts WHERE outcome = 'succeeded' GROUP BY job_id, position HAVING COUNT(*) > 1)").await, 0);
    // The kills hit running steps, and the history shows each interruption.
    let interrupted = db_scalar(
        &db,
        "SELECT COUNT(*) FROM step_attempts WHERE outcome = 'interrupted'",
    )
    .await;
    let recovered = db_scalar(
        &db,
        "SELECT COUNT(*) FROM job_events WHERE type = 'recovered'",
    )
    .await;
    assert!(
        interrupted >= 1 && recovered >= 1,
        "interrupted {interrupted}, recovered {recovered}"
    );
    assert_eq!(
        db_scalar(
            &db,
            "SELECT COUNT(*) FROM step_attempts WHERE outcome IS NULL"
        )
        .await,
        0
    );
    // Every account exists exactly once in the fake cluster.
    let users = std::fs::read_dir(sandbox.state().join("users"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains('.')
        })
        .count();
    assert_eq!(users, accepted.len() + 1, "plus admin");
    eprintln!(
        "{} jobs, {interrupted} interrupted attempts, {recovered} recoveries",
        accepted.len()
    );
    drop(service);
    kill_orphans(&sandbox);
}

#[tokio::test]
async fn a_50_mb_flood_is_capped_and_memory_stays_bounded() {
    let sandbox = Sandbox::new();
    let client = reqwest::Client::new();
    let service = Service::start_with(&sandbox, 1, |c| {
        c.env("MAX_ATTEMPTS", "1");
    });
    sandbox.ctl("accounts-create", "flood", "50000000");
    let id = submit_ok(&client, &service, json!({"username": "alice"})).await;
    let status = wait_final(&client, &service.base, &id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let result: Value = client
        .get(service.url(&format!("/jobs/{id}/result")))
        .header("X-Admin-Key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stdout = result["steps"][0]["stdout"].as_str().unwrap();
    assert!(stdout.chars().count() <= 20_200, "{}", stdout.len());
    assert!(stdout.contains("omitted"));
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", service.pid())).unwrap();
    let hwm_kb: u64 = proc_status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(hwm_kb < 100 * 1024, "peak RSS {hwm_kb} kB");
    let r = client.get(service.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A small tmpfs for the database, unmounted when dropped; `None` where mounting is not allowed.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(sandbox: &Sandbox) -> Option<SmallDisk> {
        let path = sandbox.path().join("disk");
        std::fs::create_dir_all(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(&path)
            .status()
            .ok()?
            .success();
        ok.then_some(SmallDisk { path })
    }

    fn remount(&self, mode: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Fills the filesystem with a file until it is full.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", self.path.join("filler").display()))
            .output();
    }

    fn clear(&self) {
        std::fs::remove_file(self.path.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test]
async fn a_full_disk_gives_503_loses_nothing_and_recovers_and_a_read_only_one_is_refused_at_start()
{
    let sandbox = Sandbox::new();
    let Some(disk) = SmallDisk::mount(&sandbox) else {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    let db = disk.path.join("db/jobs.db");
    let database_url = format!("sqlite://{}", db.display());
    let client = reqwest::Client::new();
    let mut service = Service::start_with(&sandbox, 1, |c| {
        c.env("DATABASE_URL", &database_url)
            .env("LEASE_SECONDS", "3");
    });
    let mut accepted = Vec::new();
    for i in 0..3 {
        accepted.push(
            submit_ok(
                &client,
                &service,
                json!({"username": format!("before_{i}"), "namespace": format!("before-{i}")}),
            )
            .await,
        );
    }

    disk.fill();
    let mut refused = 0;
    for i in 0..40 {
        let r = submit(
            &client,
            &service,
            json!({"username": format!("during_{i}"), "namespace": format!("during-{i}")}),
        )
        .await;
        match r.status().as_u16() {
            202 => accepted.push(
                r.json::<Value>().await.unwrap()["job_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            503 => {
                refused += 1;
                assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_ready");
            }
            other => panic!("unexpected status {other} with a full disk"),
        }
    }
    assert!(refused > 0, "no submission was refused with a full disk");
    disk.clear();
    // The service recovers by itself once there is space again.
    let mut recovered = false;
    for i in 0..100 {
        let r = submit(
            &client,
            &service,
            json!({"username": format!("after_{i}"), "namespace": format!("after-{i}")}),
        )
        .await;
        if r.status() == 202 {
            accepted.push(
                r.json::<Value>().await.unwrap()["job_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "submissions did not recover after the disk was cleared"
    );
    for id in &accepted {
        let status = wait_final(&client, &service.base, id, Duration::from_secs(60)).await;
        assert_eq!(status["status"], "succeeded", "{status}");
    }

    // A database folder that is read-only at start: a clear refusal, nothing changed.
    service.signal("TERM");
    assert_eq!(service.wait_exit(Duration::from_secs(20)), Some(0));
    disk.remount("ro");
    let out = common::service::command(&sandbox)
        .env("DATABASE_URL", &database_url)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Read-only file system") || err.contains("readonly"),
        "{err}"
    );
    disk.remount("rw");
    assert_eq!(
        db_scalar(&db, "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'").await,
        accepted.len() as i64
    );
    kill_orphans(&sandbox);
}
