//! Several service processes on one PostgreSQL database, and the checks that the replica and
//! fault tests share: what the fake CLIs' call log and the jobs' histories must show.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::service::Service;
use super::{KEY, Sandbox};

/// Starts replica `run` of the service on the database at `url`, sharing `sandbox` (its fakes
/// and their state: the "cluster" every replica changes). Each replica takes its own folder
/// under the sandbox's `tmp/` (see `app::private_folder`).
pub fn start(
    sandbox: &Sandbox,
    url: &str,
    run: u32,
    configure: impl Fn(&mut std::process::Command),
) -> Service {
    Service::start_with(sandbox, run, |c| {
        c.env("DATABASE_URL", url)
            .env("DATABASE_POOL_SIZE", "4")
            .env("PRIVATE_TMP_DIR", sandbox.path().join("tmp"));
        configure(c);
    })
}

/// `POST /bootstrap/users` on `base`; the job id of a 202, else `None` (the replica may be
/// gone: the caller tries another).
pub async fn submit(client: &reqwest::Client, base: &str, body: &Value) -> Option<String> {
    let r = client
        .post(format!("{base}/bootstrap/users"))
        .header("X-Admin-Key", KEY)
        .json(body)
        .send()
        .await
        .ok()?;
    if r.status() != 202 {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    v["job_id"].as_str().map(String::from)
}

/// `GET /jobs/{id}/history` on `base`.
pub async fn history(client: &reqwest::Client, base: &str, id: &str) -> Value {
    let r = client
        .get(format!("{base}/jobs/{id}/history"))
        .header("X-Admin-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "history of {id}");
    r.json().await.unwrap()
}

/// Polls until every job in `ids` is final (bounded), spreading the reads over `bases`;
/// returns the final status bodies.
pub async fn wait_all_final(
    client: &reqwest::Client,
    bases: &[String],
    ids: &[String],
    bound: Duration,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + bound;
    let mut done = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        loop {
            let base = &bases[i % bases.len()];
            let read = client
                .get(format!("{base}/jobs/{id}?wait=5"))
                .header("X-Admin-Key", KEY)
                .send()
                .await;
            if let Ok(r) = read
                && r.status() == 200
            {
                let v: Value = r.json().await.unwrap();
                if matches!(
                    v["status"].as_str(),
                    Some("succeeded" | "failed" | "canceled")
                ) {
                    done.push(v);
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {id} did not finish within {bound:?} ({} of {} finished)",
                done.len(),
                ids.len()
            );
        }
    }
    done
}

/// One run of a fake CLI operation: start and end in ns since the epoch (end `None` when the
/// process was killed).
#[derive(Debug, Clone)]
pub struct Call {
    pub pid: u32,
    pub start: u128,
    pub end: Option<u128>,
    pub args: String,
}

/// The runs of `op` in the fakes' call log, each START matched with the next END of its pid.
pub fn calls(sandbox: &Sandbox, op: &str) -> Vec<Call> {
    let mut open: HashMap<u32, usize> = HashMap::new();
    let mut runs: Vec<Call> = Vec::new();
    for line in sandbox.calls().lines() {
        let mut parts = line.splitn(5, ' ');
        let (Some(kind), Some(ns), Some(pid), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if name != op {
            continue;
        }
        let (Ok(ns), Ok(pid)) = (ns.parse::<u128>(), pid.parse::<u32>()) else {
            continue;
        };
        match kind {
            "START" => {
                open.insert(pid, runs.len());
                runs.push(Call {
                    pid,
                    start: ns,
                    end: None,
                    args: parts.next().unwrap_or_default().to_string(),
                });
            }
            "END" => {
                if let Some(i) = open.remove(&pid) {
                    runs[i].end = Some(ns);
                }
            }
            _ => {}
        }
    }
    runs
}

/// Panics if two runs of `runs` overlap in time (a run without an end, killed, is left out:
/// its end is unknown).
pub fn assert_no_overlap(op: &str, runs: &[Call]) {
    let mut ended: Vec<&Call> = runs.iter().filter(|c| c.end.is_some()).collect();
    ended.sort_by_key(|c| c.start);
    for pair in ended.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            a.end.unwrap() <= b.start,
            "two `{op}` runs overlap: {a:?} and {b:?}"
        );
    }
}

/// What the histories of finished jobs must show whatever happened to the replicas:
/// - no step attempt starts after a succeeded attempt of the same step (a completed step is
///   never re-run), and each step succeeded at most once;
/// - no attempt is left without an outcome;
/// - attempts of one job never overlap in time (no two workers ran it at once).
///
/// Returns the number of interrupted attempts seen.
pub fn assert_histories_consistent(histories: &[Value]) -> usize {
    let mut interrupted = 0;
    for h in histories {
        let id = h["job_id"].as_str().unwrap_or("?");
        let attempts = h["attempts"].as_array().expect("attempts");
        let mut succeeded: HashMap<&str, usize> = HashMap::new();
        for (i, a) in attempts.iter().enumerate() {
            let step = a["step"].as_str().unwrap();
            let outcome = a["outcome"].as_str().unwrap();
            assert_ne!(
                outcome, "running",
                "job {id}: attempt {i} has no outcome: {a}"
            );
            if outcome == "interrupted" {
                interrupted += 1;
            }
            if let Some(first) = succeeded.get(step) {
                panic!(
                    "job {id}: step {step} ran again (attempt {i}) after it succeeded (attempt {first})"
                );
            }
            if outcome == "succeeded" {
                succeeded.insert(step, i);
            }
        }
        let mut spans: Vec<(String, String, &str)> = attempts
            .iter()
            .filter_map(|a| {
                Some((
                    a["started_at"].as_str()?.to_string(),
                    a["finished_at"].as_str()?.to_string(),
                    a["worker"].as_str()?,
                ))
            })
            .collect();
        // RFC 3339 UTC texts with milliseconds compare as times.
        spans.sort();
        for pair in spans.windows(2) {
            let ((_, end_a, wa), (start_b, _, wb)) = (&pair[0], &pair[1]);
            // An interrupted attempt of a dead replica is closed when its lease is taken over,
            // which is after the new owner's claim but before its first attempt starts.
            assert!(
                end_a <= start_b,
                "job {id}: attempts of {wa} and {wb} overlap: {:?} / {:?}",
                pair[0],
                pair[1]
            );
        }
    }
    interrupted
}

/// The distinct worker ids (`<host>:<pid>:<random>`) that ran attempts in `histories`.
pub fn workers(histories: &[Value]) -> std::collections::BTreeSet<String> {
    histories
        .iter()
        .flat_map(|h| h["attempts"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["worker"].as_str().map(String::from))
        .collect()
}
