//! Several replicas of the real binary on one PostgreSQL database (see `common::pg`; skipped,
//! saying so, where PostgreSQL cannot run): work spread over all of them, every job run once
//! and by one replica at a time, serialized commands serialized across replicas, and a
//! long-poll on one replica woken by another's worker.

mod common;

use std::time::{Duration, Instant};

use common::replicas::{
    assert_histories_consistent, assert_no_overlap, calls, history, start, submit, wait_all_final,
    workers,
};
use common::service::{kill_orphans, wait_for};
use common::{KEY, Sandbox, pg};
use serde_json::{Value, json};

const BOOTSTRAPS: usize = 1000;
/// Submissions in flight at once.
const IN_FLIGHT: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_run_1000_bootstraps_once_each_and_never_overlap_accounts_create() {
    let Some(db) = pg::database("three_replicas_1000").await else {
        return;
    };
    let sandbox = Sandbox::new();
    // A little time inside each command widens the window in which two would overlap.
    sandbox.ctl("accounts-create", "delay", "0.005");
    let replicas: Vec<_> = (0..3)
        .map(|n| {
            start(&sandbox, &db.url, n, |c| {
                c.env("WORKER_CONCURRENCY", "4");
            })
        })
        .collect();
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let client = reqwest::Client::new();
    let started = Instant::now();

    // Round-robin over the replicas, IN_FLIGHT at a time.
    let mut ids = Vec::with_capacity(BOOTSTRAPS);
    for chunk in (0..BOOTSTRAPS).collect::<Vec<_>>().chunks(IN_FLIGHT) {
        let mut batch = tokio::task::JoinSet::new();
        for &i in chunk {
            let client = client.clone();
            let base = bases[i % bases.len()].clone();
            batch.spawn(async move {
                let body = json!({"username": format!("r_{i}"), "namespace": format!("r-{i}")});
                let id = submit(&client, &base, &body)
                    .await
                    .unwrap_or_else(|| panic!("bootstrap {i} was not accepted by {base}"));
                (i, id)
            });
        }
        let mut done = batch.join_all().await;
        done.sort();
        ids.extend(done.into_iter().map(|(_, id)| id));
    }
    let submitted = started.elapsed();
    let finals = wait_all_final(&client, &bases, &ids, Duration::from_secs(600)).await;
    let ran = started.elapsed();
    for v in &finals {
        assert_eq!(v["status"], "succeeded", "{v}");
    }

    // Each account was created exactly once, and no two creations overlapped in time, though
    // three replicas ran them.
    let creates = calls(&sandbox, "accounts-create");
    assert_eq!(
        creates.len(),
        BOOTSTRAPS,
        "one `accounts create` per bootstrap"
    );
    for i in 0..BOOTSTRAPS {
        let name = format!("r_{i}");
        let n = creates
            .iter()
            .filter(|c| c.args.split_whitespace().any(|a| a == name))
            .count();
        assert_eq!(n, 1, "`accounts create` of {name} ran {n} times");
    }
    assert_no_overlap("accounts-create", &creates);

    let mut histories = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        histories.push(history(&client, &bases[i % bases.len()], id).await);
    }
    assert_eq!(
        assert_histories_consistent(&histories),
        0,
        "nothing was interrupted"
    );
    // Each job was claimed once, and the work was spread over the three replicas.
    for h in &histories {
        let claims = h["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "claimed")
            .count();
        assert_eq!(claims, 1, "{}", h["job_id"]);
    }
    let ran_by = workers(&histories);
    let pids: std::collections::BTreeSet<u32> = replicas.iter().map(|r| r.pid()).collect();
    for pid in &pids {
        assert!(
            ran_by
                .iter()
                .any(|w| w.split(':').nth(1) == Some(&pid.to_string())),
            "replica {pid} ran no job; workers: {ran_by:?}"
        );
    }
    eprintln!(
        "{BOOTSTRAPS} bootstraps on 3 replicas: submitted in {:.1} s, all finished in {:.1} s",
        submitted.as_secs_f64(),
        ran.as_secs_f64()
    );
    drop(replicas);
    kill_orphans(&sandbox);
}

#[tokio::test]
async fn a_long_poll_on_one_replica_returns_when_another_replica_finishes_the_job() {
    let Some(db) = pg::database("long_poll_across_replicas").await else {
        return;
    };
    let sandbox = Sandbox::new();
    let client = reqwest::Client::new();
    // Only B runs at first, so B's worker claims the job.
    let b = start(&sandbox, &db.url, 1, |_| {});
    sandbox.ctl("accounts-create", "delay", "1.5");
    let id = submit(
        &client,
        &b.base,
        &json!({"username": "lp_user", "namespace": "lp-ns"}),
    )
    .await
    .expect("accepted");
    wait_for(
        "accounts create to start on B",
        Duration::from_secs(20),
        || sandbox.started("accounts-create") == 1,
    )
    .await;
    let a = start(&sandbox, &db.url, 2, |_| {});
    let poll = |base: String, id: String, wait: u32| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("{base}/jobs/{id}?wait={wait}"))
                .header("X-Admin-Key", KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let before = poll(a.base.clone(), id.clone(), 0).await;
    assert_eq!(before["status"], "running", "{before}");
    assert_eq!(before["current_step"], "create_account", "{before}");
    // A long-poll on A answers when B's worker moves the job on: the step changes.
    let t = Instant::now();
    let moved = poll(a.base.clone(), id.clone(), 30).await;
    let waited = t.elapsed();
    assert!(
        moved["status"] != "running" || moved["current_step"] != "create_account",
        "the long-poll answered without a change: {moved}"
    );
    assert!(
        waited < Duration::from_secs(25),
        "the long-poll ran out its wait ({waited:?}) instead of being woken"
    );
    // And keeps answering as the job goes on, until it is final.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = moved;
    while last["status"] == "running" || last["status"] == "queued" {
        assert!(Instant::now() < deadline, "the job did not finish: {last}");
        last = poll(a.base.clone(), id.clone(), 30).await;
    }
    assert_eq!(last["status"], "succeeded", "{last}");
    // The job was run by B alone: every attempt names B's process.
    let h = history(&client, &a.base, &id).await;
    let b_pid = b.pid().to_string();
    for w in workers(std::slice::from_ref(&h)) {
        assert_eq!(w.split(':').nth(1), Some(b_pid.as_str()), "{w}");
    }
    drop((a, b));
    kill_orphans(&sandbox);
}
