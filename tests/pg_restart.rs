//! The PostgreSQL server restarted under load (see `common::pg`; skipped, saying so, where
//! PostgreSQL cannot run). Alone in its test binary: it stops the binary's whole cluster.

mod common;

use std::time::{Duration, Instant};

use common::replicas::{assert_histories_consistent, history, start, submit, wait_all_final};
use common::service::{Service, kill_orphans};
use common::{KEY, Sandbox, pg};
use serde_json::json;

async fn status(client: &reqwest::Client, url: String) -> Option<u16> {
    client
        .get(url)
        .header("X-Admin-Key", KEY)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_gives_503_then_the_replicas_reconnect_and_lose_nothing() {
    let Some(db) = pg::database("database_restart").await else {
        return;
    };
    let sandbox = Sandbox::new();
    sandbox.ctl("namespaces-add", "delay", "0.05");
    let client = reqwest::Client::new();
    let replicas: Vec<Service> = (0..2)
        .map(|n| {
            start(&sandbox, &db.url, n, |c| {
                c.env("LEASE_SECONDS", "3");
            })
        })
        .collect();
    let mut accepted = Vec::new();
    for i in 0..80 {
        let body = json!({"username": format!("d_{i}"), "namespace": format!("d-{i}")});
        accepted.push(
            submit(&client, &replicas[i % 2].base, &body)
                .await
                .expect("accepted"),
        );
    }

    pg::stop_cluster();
    // While the database is down: not ready, submissions refused with 503, reads 503 too; the
    // process itself stays alive (liveness).
    for r in &replicas {
        assert_eq!(status(&client, r.url("/readyz")).await, Some(503));
        assert_eq!(status(&client, r.url("/healthz")).await, Some(200));
        let refused = client
            .post(r.url("/bootstrap/users"))
            .header("X-Admin-Key", KEY)
            .json(&json!({"username": "while_down", "namespace": "while-down"}))
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 503);
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "not_ready", "{body}");
        assert_eq!(
            status(&client, r.url(&format!("/jobs/{}", accepted[0]))).await,
            Some(503)
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg::start_cluster();

    // Both replicas reconnect by themselves.
    let deadline = Instant::now() + Duration::from_secs(60);
    for r in &replicas {
        while status(&client, r.url("/readyz")).await != Some(200) {
            assert!(
                Instant::now() < deadline,
                "replica did not become ready again"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for i in 0..20 {
        let body = json!({"username": format!("after_{i}"), "namespace": format!("after-{i}")});
        accepted.push(
            submit(&client, &replicas[i % 2].base, &body)
                .await
                .expect("accepted"),
        );
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    for v in wait_all_final(&client, &bases, &accepted, Duration::from_secs(300)).await {
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    let mut histories = Vec::new();
    for id in &accepted {
        histories.push(history(&client, &bases[0], id).await);
    }
    let interrupted = assert_histories_consistent(&histories);
    // Nothing accepted while it was down, nothing lost: exactly the accepted jobs exist.
    let mut listed = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/jobs?limit=500", bases[0]);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = client
            .get(url)
            .header("X-Admin-Key", KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listed += page["items"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(listed, accepted.len());
    eprintln!(
        "{} jobs across a database restart, {interrupted} interrupted attempts, 0 lost",
        accepted.len()
    );
    drop(replicas);
    kill_orphans(&sandbox);
}
