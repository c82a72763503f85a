//! A service process killed alone (its commands, each in its own process group, live on) must
//! stop what it left running before a step runs again: two `accounts create` runs never
//! overlap in time, which is what the `everest-accounts` lock promises.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::service::{Service, kill_orphans, wait_final, wait_for};
use common::{KEY, Sandbox, TestApp};
use serde_json::{Value, json};

/// One run of a fake CLI, from the `START`/`END` lines of `calls.log` (nanosecond timestamps).
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u128,
    /// `None` while it runs (or when it was SIGKILLed, which leaves no `END`).
    end: Option<u128>,
    exit: Option<i32>,
}

/// The runs of `op`, in the order they started.
fn runs(calls: &str, op: &str) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut open: HashMap<&str, usize> = HashMap::new();
    for line in calls.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(kind), Some(at), Some(pid)) = (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        if fields.get(3) != Some(&op) {
            continue;
        }
        let at: u128 = at.parse().expect("timestamp");
        match *kind {
            "START" => {
                open.insert(pid, runs.len());
                runs.push(Run {
                    start: at,
                    end: None,
                    exit: None,
                });
            }
            "END" => {
                if let Some(i) = open.remove(pid) {
                    runs[i].end = Some(at);
                    runs[i].exit = fields.get(4).and_then(|c| c.parse().ok());
                }
            }
            _ => {}
        }
    }
    runs
}

/// How many pairs of runs overlap in time (a run without `END` lasts forever).
fn overlaps(runs: &[Run]) -> usize {
    let mut n = 0;
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            let (first, second) = if a.start <= b.start { (a, b) } else { (b, a) };
            if first.end.is_none_or(|end| second.start < end) {
                n += 1;
            }
        }
    }
    n
}

fn running(sandbox: &Sandbox, op: &str) -> bool {
    runs(&sandbox.calls(), op).iter().any(|r| r.end.is_none())
}

async fn submit(client: &reqwest::Client, service: &Service, username: &str) -> String {
    let r = client
        .post(service.url("/bootstrap/users"))
        .header("X-Admin-Key", KEY)
        .json(&json!({"username": username}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    body["job_id"].as_str().unwrap().to_string()
}

#[test]
fn overlap_count_of_the_log_parser() {
    let log = "START 10 1 accounts-create\nSTART 15 2 accounts-create\nEND 20 1 accounts-create 0\n\
               END 30 2 accounts-create 0\nSTART 31 1 accounts-create\nSTART 40 3 namespaces-add\n";
    let r = runs(log, "accounts-create");
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].exit, Some(0));
    // 1 and 2 overlap; the run still open at the end overlaps nothing that started before it ended.
    assert_eq!(overlaps(&r), 1);
    assert_eq!(overlaps(&r[1..]), 0);
}

#[tokio::test]
async fn a_command_left_by_a_process_killed_alone_is_stopped_before_its_step_runs_again() {
    let sandbox = Sandbox::new();
    let client = reqwest::Client::new();
    sandbox.ctl("accounts-create", "delay", "3");
    let mut service = Service::start(&sandbox, 0);
    let id = submit(&client, &service, "alice").await;
    wait_for("accounts create to run", Duration::from_secs(20), || {
        running(&sandbox, "accounts-create")
    })
    .await;
    // SIGKILL to the service process alone: its command, in its own group, lives on.
    service.kill9();
    assert!(running(&sandbox, "accounts-create"));
    sandbox.ctl("accounts-create", "delay", "0.2");
    let service = Service::start(&sandbox, 1);
    let job = wait_final(&client, &service.base, &id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let runs = runs(&sandbox.calls(), "accounts-create");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(overlaps(&runs), 0, "{runs:?}");
    assert_eq!(runs[0].exit, Some(143), "the orphan was stopped by SIGTERM");
    assert!(sandbox.state().join("users/alice").exists());
    drop(service);
    kill_orphans(&sandbox);
}

#[tokio::test]
async fn ten_kill_9_rounds_of_the_service_alone_under_load_give_no_overlapping_runs() {
    let sandbox = Sandbox::new();
    let client = reqwest::Client::new();
    sandbox.ctl("accounts-create", "delay", "0.5");
    sandbox.ctl("namespaces-add", "delay", "0.05");
    let mut service = Service::start(&sandbox, 0);
    let mut jobs = Vec::new();
    for i in 0..4 {
        jobs.push(submit(&client, &service, &format!("load{i}")).await);
    }
    for round in 1..=10 {
        jobs.push(submit(&client, &service, &format!("round{round}")).await);
        wait_for("accounts create to run", Duration::from_secs(20), || {
            running(&sandbox, "accounts-create")
        })
        .await;
        // Into the middle of the run, then kill the service process alone.
        tokio::time::sleep(Duration::from_millis(100)).await;
        service.kill9();
        service = Service::start(&sandbox, round);
    }
    for id in &jobs {
        let job = wait_final(&client, &service.base, id, Duration::from_secs(60)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let runs = runs(&sandbox.calls(), "accounts-create");
    let overlapping = overlaps(&runs);
    let stopped = runs.iter().filter(|r| r.exit == Some(143)).count();
    eprintln!(
        "{} accounts create runs, {stopped} stopped after a kill, {overlapping} overlapping",
        runs.len()
    );
    assert_eq!(overlapping, 0, "{runs:?}");
    assert!(stopped >= 1, "the kills hit running commands: {runs:?}");
    drop(service);
    kill_orphans(&sandbox);
}

#[tokio::test]
async fn policy_files_go_to_a_private_folder_that_is_emptied_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    // What a crash left behind, in a folder that others may read.
    let private = sandbox.db().parent().unwrap().join("tmp");
    std::fs::create_dir_all(private.join("nested")).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        private.join("everest-policy-left.csv"),
        "g, x, role:admin\n",
    )
    .unwrap();
    let cmd = format!("{} --file {{file}}", sandbox.bin("rbac-apply"));
    let app = TestApp::start_in(sandbox, |c| c.everest_rbac_apply_cmd = Some(cmd)).await;
    let mode = std::fs::metadata(&private).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(std::fs::read_dir(&private).unwrap().count(), 0, "emptied");
    let id = app.bootstrap(json!({"username": "dave"})).await;
    let job = app.wait_final(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // The command was given a file in the private folder (deleted once the step ended).
    let calls = app.sandbox.calls();
    let apply = calls
        .lines()
        .find(|l| l.starts_with("START") && l.contains(" rbac-apply "))
        .expect("rbac-apply ran");
    let file = apply.split_whitespace().last().unwrap();
    assert!(
        file.starts_with(private.to_str().unwrap()) && file.contains("everest-policy-"),
        "{apply}"
    );
    assert!(!std::path::Path::new(file).exists());
    app.stop().await;
}
