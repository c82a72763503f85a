//! Faults of a replicated deployment on PostgreSQL (see `common::pg`; skipped, saying so, where
//! PostgreSQL cannot run): replicas killed with SIGKILL at random moments while the others
//! work, and the listener connections cut from the server side.

mod common;

use std::time::Duration;

use common::replicas::{assert_histories_consistent, history, start, submit, wait_all_final};
use common::service::{Service, kill_orphans};
use common::{Sandbox, pg};
use rand::Rng;
use serde_json::json;
use sqlx::Connection;

/// Accounts in the fakes' state, without the seeded `admin`.
fn accounts(sandbox: &Sandbox) -> usize {
    std::fs::read_dir(sandbox.state().join("users"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains('.')
        })
        .count()
        - 1
}

/// Submits `body` to the first replica of `replicas` (from `from`) that accepts it.
async fn submit_somewhere(
    client: &reqwest::Client,
    replicas: &[Service],
    from: usize,
    body: serde_json::Value,
) -> String {
    for k in 0..replicas.len() * 3 {
        let base = &replicas[(from + k) % replicas.len()].base;
        if let Some(id) = submit(client, base, &body).await {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no replica accepted {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_replicas_ten_times_under_load_loses_nothing_and_reruns_no_completed_step() {
    let Some(db) = pg::database("kill_9_replicas").await else {
        return;
    };
    let sandbox = Sandbox::new();
    sandbox.ctl("accounts-create", "delay", "0.01");
    sandbox.ctl("namespaces-add", "delay", "0.08");
    sandbox.ctl("kubectl-apply", "delay", "0.04");
    // Short leases: a dead replica's jobs come back by lease expiry only.
    let configure = |c: &mut std::process::Command| {
        c.env("LEASE_SECONDS", "3");
    };
    let mut replicas: Vec<Service> = (0..3)
        .map(|n| start(&sandbox, &db.url, n, configure))
        .collect();
    let client = reqwest::Client::new();
    let mut accepted = Vec::new();
    for i in 0..150 {
        let body = json!({"username": format!("k_{i}"), "namespace": format!("k-{i}")});
        accepted.push(submit_somewhere(&client, &replicas, i, body).await);
    }
    let mut rng = rand::rng();
    for round in 0..10u32 {
        for i in 0..10 {
            let n = 1000 * (round + 1) + i;
            let body = json!({"username": format!("late_{n}"), "namespace": format!("late-{n}")});
            accepted.push(submit_somewhere(&client, &replicas, n as usize, body).await);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
        let victim = rng.random_range(0..replicas.len());
        replicas[victim].kill9();
        replicas[victim] = start(&sandbox, &db.url, 10 + round, configure);
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let finals = wait_all_final(&client, &bases, &accepted, Duration::from_secs(400)).await;
    for v in &finals {
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    let mut histories = Vec::new();
    for id in &accepted {
        histories.push(history(&client, &bases[0], id).await);
    }
    let interrupted = assert_histories_consistent(&histories);
    let taken_over = histories
        .iter()
        .flat_map(|h| h["events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["type"] == "lease_expired")
        .count();
    assert!(
        interrupted >= 1 && taken_over >= 1,
        "the kills hit running steps: interrupted {interrupted}, lease takeovers {taken_over}"
    );
    // No replica recovers another's jobs early: every takeover is by lease expiry.
    let recovered = histories
        .iter()
        .flat_map(|h| h["events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["type"] == "recovered")
        .count();
    assert_eq!(recovered, 0);
    // Every account exists once in the fake cluster.
    assert_eq!(accounts(&sandbox), accepted.len());
    eprintln!(
        "{} jobs, 10 kills, {interrupted} interrupted attempts, {taken_over} lease takeovers, 0 lost",
        accepted.len()
    );
    drop(replicas);
    kill_orphans(&sandbox);
}

/// The server processes of `database` that are `LISTEN`ing.
async fn listeners(admin: &mut sqlx::PgConnection, database: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'listen%'",
    )
    .bind(database)
    .fetch_all(admin)
    .await
    .unwrap()
}

#[tokio::test]
async fn listeners_cut_by_the_server_reconnect_and_wake_ups_continue() {
    let Some(db) = pg::database("listener_cut").await else {
        return;
    };
    let sandbox = Sandbox::new();
    let client = reqwest::Client::new();
    let replicas: Vec<Service> = (0..2)
        .map(|n| start(&sandbox, &db.url, n, |_| {}))
        .collect();
    let mut admin = db.connect().await;
    let mut before = Vec::new();
    for _ in 0..200 {
        before = listeners(&mut admin, &db.name).await;
        if before.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(before.len(), 2, "one listener per replica");
    for pid in &before {
        let cut: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(cut);
    }
    // Each replica opens a new listener by itself.
    let mut after = Vec::new();
    for _ in 0..200 {
        after = listeners(&mut admin, &db.name).await;
        if after.len() == 2 && after.iter().all(|p| !before.contains(p)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        after.len() == 2 && after.iter().all(|p| !before.contains(p)),
        "listeners after the cut: {after:?} (before: {before:?})"
    );
    // And the replicas keep working and waking each other: jobs submitted to each finish.
    let mut ids = Vec::new();
    for i in 0..20 {
        let body = json!({"username": format!("l_{i}"), "namespace": format!("l-{i}")});
        ids.push(
            submit(&client, &replicas[i % 2].base, &body)
                .await
                .expect("accepted"),
        );
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    for v in wait_all_final(&client, &bases, &ids, Duration::from_secs(60)).await {
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    let _ = admin.close().await;
    drop(replicas);
    kill_orphans(&sandbox);
}
