//! History at scale, ignored by default because it loads a database of about 3 GB:
//!
//! ```sh
//! cargo test --release --test scale -- --ignored --nocapture
//! ```
//!
//! 1. Loads 1,000,000 finished jobs (4 steps, 4 attempts, 11 events and a purged secret each)
//!    with `WITH RECURSIVE` in one transaction; 100,000 of them finished more than 90 days ago.
//! 2. Starts the app (retention 100 years: nothing is pruned yet) and measures over HTTP the
//!    latency of every `GET /jobs` filter, of cursor paging and of `GET /jobs/{id}/history`.
//! 3. Restarts it with `JOB_RETENTION_DAYS=90`: the pruner deletes the 100,000 old jobs and gives
//!    the space back while a task submits 10 jobs a second (run by the workers meanwhile);
//!    reports the submit latencies, and those of the same load without pruning.
//!
//! It prints the figures (recorded in `BENCHMARKS.md`) and asserts only that the work was done.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat};
use common::bulk::USERS;
use common::{Sandbox, TestApp, db_scalar};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::json;

const JOBS: i64 = 1_000_000;
/// Jobs that finished before the retention period (the oldest ones).
const OLD: i64 = 100_000;
const DAY: i64 = 86_400_000;
/// Requests per measured scenario.
const SAMPLES: usize = 300;

/// `created_at` of generated job `i`: the old ones 100 to 91 days ago, the rest 89 to 1 days ago.
fn created_at(now: i64, i: i64) -> i64 {
    if i < OLD {
        now - 100 * DAY + i * (9 * DAY / OLD)
    } else {
        now - 89 * DAY + (i - OLD) * (88 * DAY / (JOBS - OLD))
    }
}

/// A UUIDv7-shaped id that sorts like `(created_at, i)`; the SQL below builds the same text.
fn job_id(now: i64, i: i64) -> String {
    let c = created_at(now, i);
    format!("{:08x}-{:04x}-7000-8000-{:012x}", c >> 16, c & 0xffff, i)
}

fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn load(db: &Path, now: i64) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let created = format!(
        "CASE WHEN i < {OLD} THEN {now} - 100 * {DAY} + i * ({} / {OLD})
              ELSE {now} - 89 * {DAY} + (i - {OLD}) * ({} / ({JOBS} - {OLD})) END",
        9 * DAY,
        88 * DAY
    );
    let statements = common::bulk::load_statements(JOBS, &created);
    for sql in &statements {
        let t = Instant::now();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
        let head: String = sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        println!("  {head:<40} {:>7.1} s", t.elapsed().as_secs_f64());
    }
    conn.close().await.unwrap();
}

struct Stats {
    p50: f64,
    p99: f64,
    max: f64,
}

fn stats(mut ms: Vec<f64>) -> Stats {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: *ms.last().unwrap(),
    }
}

fn print_row(name: &str, s: &Stats) {
    println!(
        "| {name:<44} | {:>7.2} | {:>7.2} | {:>7.2} |",
        s.p50, s.p99, s.max
    );
}

/// Times `SAMPLES` GETs of the paths `path(n)` makes (after a few warm-up requests).
async fn measure(app: &TestApp, name: &str, mut path: impl FnMut(usize) -> String) -> Stats {
    for n in 0..5 {
        app.get(&path(SAMPLES + n)).await;
    }
    let mut ms = Vec::with_capacity(SAMPLES);
    for n in 0..SAMPLES {
        let p = path(n);
        let t = Instant::now();
        let r = app.get(&p).await;
        let status = r.status();
        let body = r.bytes().await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            status,
            StatusCode::OK,
            "{p}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let s = stats(ms);
    print_row(name, &s);
    s
}

/// The path of the `n`th request of a scenario.
type PathFn<'a> = Box<dyn FnMut(usize) -> String + 'a>;

async fn read_latencies(app: &TestApp, now: i64) -> f64 {
    let mut rng = rand::rng();
    let users: Vec<i64> = (0..SAMPLES + 5)
        .map(|_| rng.random_range(0..USERS))
        .collect();
    let times: Vec<i64> = (0..SAMPLES + 5)
        .map(|_| rng.random_range(now - 100 * DAY..now))
        .collect();
    let ids: Vec<String> = (0..SAMPLES + 5)
        .map(|_| job_id(now, rng.random_range(0..JOBS)))
        .collect();
    println!("| scenario (ms)                                | p50     | p99     | max     |");
    println!("|----------------------------------------------|---------|---------|---------|");
    let mut worst: f64 = 0.0;
    let fixed = [
        ("no filter", "/jobs"),
        ("no filter, limit=500", "/jobs?limit=500"),
        ("status=succeeded", "/jobs?status=succeeded"),
        ("status=failed", "/jobs?status=failed"),
        ("status=canceled", "/jobs?status=canceled"),
        ("status=queued (none)", "/jobs?status=queued"),
        ("kind=bootstrap_user", "/jobs?kind=bootstrap_user"),
        ("submitted_by=ci", "/jobs?submitted_by=ci"),
        (
            "status=failed&submitted_by=ci",
            "/jobs?status=failed&submitted_by=ci",
        ),
    ];
    for (name, path) in fixed {
        worst = worst.max(measure(app, name, |_| path.to_string()).await.p99);
    }
    let mut per_request: Vec<(&str, PathFn)> = vec![
        (
            "username=<random of 5000>",
            Box::new(|n| format!("/jobs?username=user{}", users[n])),
        ),
        (
            "namespace=<random of 5000>",
            Box::new(|n| format!("/jobs?namespace=user{}", users[n])),
        ),
        (
            "username=<random>&status=failed",
            Box::new(|n| format!("/jobs?username=user{}&status=failed", users[n])),
        ),
        (
            "created_after=<random>",
            Box::new(|n| format!("/jobs?created_after={}", rfc3339(times[n]))),
        ),
        (
            "created_before=<random>",
            Box::new(|n| format!("/jobs?created_before={}", rfc3339(times[n]))),
        ),
        (
            "created_after&created_before (1 day)",
            Box::new(|n| {
                format!(
                    "/jobs?created_after={}&created_before={}",
                    rfc3339(times[n]),
                    rfc3339(times[n] + DAY)
                )
            }),
        ),
    ];
    for (name, path) in per_request.iter_mut() {
        worst = worst.max(measure(app, name, path).await.p99);
    }
    // Paging: every request continues from the previous page's cursor.
    for (name, start) in [
        ("cursor paging, no filter", "/jobs?limit=50"),
        (
            "cursor paging, status=failed",
            "/jobs?status=failed&limit=50",
        ),
    ] {
        let mut ms = Vec::with_capacity(SAMPLES);
        let mut path = start.to_string();
        for _ in 0..SAMPLES {
            let t = Instant::now();
            let (status, v) = app.get_json(&path).await;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, StatusCode::OK);
            let cursor = v["next_cursor"].as_str().expect("more pages");
            path = format!("{start}&cursor={cursor}");
        }
        let s = stats(ms);
        print_row(name, &s);
        worst = worst.max(s.p99);
    }
    worst = worst.max(
        measure(app, "GET /jobs/{id}/history (random job)", |n| {
            format!("/jobs/{}/history", ids[n])
        })
        .await
        .p99,
    );
    worst
}

/// Time between two submissions: 10 jobs a second, which the 4 workers keep up with.
const SUBMIT_EVERY: Duration = Duration::from_millis(100);

/// Submits a job every `SUBMIT_EVERY` until stopped, recording each submission's latency.
struct Submitter {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<f64>>,
}

impl Submitter {
    fn start(app: &TestApp, prefix: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (client, url, flag) = (
            app.client.clone(),
            app.url("/bootstrap/users"),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            let mut ms = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let body = json!({"username": format!("{prefix}{}", ms.len())});
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("X-Admin-Key", common::KEY)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(r.status(), StatusCode::ACCEPTED);
                tokio::time::sleep(SUBMIT_EVERY).await;
            }
            ms
        });
        Submitter { stop, task }
    }

    async fn finish(self, what: &str) -> Stats {
        self.stop.store(true, Ordering::Relaxed);
        let ms = self.task.await.unwrap();
        let n = ms.len();
        let s = stats(ms);
        println!(
            "{n} submissions {what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            s.p50, s.p99, s.max
        );
        s
    }
}

async fn prune_under_load(app: &TestApp, db: &Path, cutoff: i64) {
    let submitter = Submitter::start(app, "load");
    let started = Instant::now();
    let old = format!(
        "SELECT COUNT(*) FROM jobs INDEXED BY jobs_prunable WHERE status IN ('succeeded', 'failed', 'canceled') AND finished_at < {cutoff}"
    );
    let deadline = started + Duration::from_secs(900);
    while db_scalar(db, &old).await > 0 {
        assert!(Instant::now() < deadline, "pruning did not end");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let pruned_after = started.elapsed();
    while db_scalar(db, "SELECT freelist_count FROM pragma_freelist_count").await > 0 {
        assert!(Instant::now() < deadline, "reclaiming did not end");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reclaimed_after = started.elapsed();
    println!(
        "pruned {OLD} jobs in {:.1} s ({:.0} jobs/s); free pages reclaimed after {:.1} s",
        pruned_after.as_secs_f64(),
        OLD as f64 / pruned_after.as_secs_f64(),
        reclaimed_after.as_secs_f64()
    );
    submitter.finish("while pruning").await;
    assert_eq!(
        db_scalar(db, "SELECT COUNT(*) FROM jobs WHERE username LIKE 'user%'").await,
        JOBS - OLD
    );
}

fn file_mb(db: &Path) -> f64 {
    let mut size = 0;
    for suffix in ["", "-wal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        size += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    }
    size as f64 / 1_048_576.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "loads 1,000,000 jobs; run with --release -- --ignored --nocapture"]
async fn history_at_scale() {
    let sandbox = Sandbox::new();
    let db = sandbox.db();
    let store = everestctl_api::store::Store::open(&db).await.unwrap();
    store.close().await;
    let now = everestctl_api::store::now_ms();
    let load_average = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load_average().trim());
    println!("loading {JOBS} jobs:");
    let t = Instant::now();
    load(&db, now).await;
    println!(
        "loaded in {:.1} s; database {:.0} MB",
        t.elapsed().as_secs_f64(),
        file_mb(&db)
    );
    assert_eq!(db_scalar(&db, "SELECT COUNT(*) FROM jobs").await, JOBS);
    // Without this the kernel writes the loaded gigabytes back during the measurements, and
    // every fsync (each submission does one) waits behind that: seconds-long outliers that say
    // nothing about the service.
    std::fs::File::open(&db).unwrap().sync_all().unwrap();
    let sample = job_id(now, 123_456);
    let app = TestApp::start_in(sandbox, |c| c.job_retention_days = 36_500).await;
    let (status, v) = app.get_json(&format!("/jobs/{sample}/history")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["events"].as_array().map(Vec::len), Some(11));
    let worst = read_latencies(&app, now).await;
    println!("worst p99 of the reads: {worst:.2} ms (target < 50 ms)");
    let baseline = Submitter::start(&app, "base");
    tokio::time::sleep(Duration::from_secs(20)).await;
    baseline.finish("without pruning (baseline, 20 s)").await;
    let sandbox = app.stop().await;

    let size_before = file_mb(&db);
    let app = TestApp::start_in(sandbox, |c| c.job_retention_days = 90).await;
    prune_under_load(&app, &db, now - 90 * DAY).await;
    let sandbox = app.stop().await;
    println!(
        "database {size_before:.0} MB before pruning, {:.0} MB after",
        file_mb(&sandbox.db())
    );
    println!("load average after: {}", load_average().trim());
}
