//! The overview's counts: what the store reads on either backend, and the dashboard's reads
//! and pages at 1,000,000 stored jobs (ignored by default; the figures are in
//! docs/dashboard.md).

mod common;
mod ui_support;

use std::time::Duration;

use common::{Backend, KEY, Sandbox, TestApp};
use everestctl_api::domain::JobStatus;
use everestctl_api::store::postgres::PgOptions;
use everestctl_api::store::{NewJob, Store};
use reqwest::StatusCode;
use ui_support::Browser;

/// What the overview reads from the store, on either backend: counts by status and kind in one
/// snapshot, and the queued job created first.
async fn overview_counts(backend: Backend) {
    let sandbox = Sandbox::on(backend).await;
    let store = match backend {
        Backend::Sqlite => Store::open(&sandbox.db()).await.unwrap(),
        Backend::Postgres => {
            Store::open_postgres(&sandbox.database_url(), PgOptions { pool_size: 2 })
                .await
                .unwrap()
        }
    };
    assert_eq!(store.job_counts().await.unwrap().total(), 0);
    assert_eq!(store.oldest_queued().await.unwrap(), None);
    let jobs = [
        ("01930000-0000-7000-8000-000000000001", "bootstrap_user"),
        ("01930000-0000-7000-8000-000000000002", "bootstrap_user"),
        ("01930000-0000-7000-8000-000000000003", "suspend_user"),
    ];
    for (id, kind) in jobs {
        let job = NewJob {
            id: id.into(),
            kind: kind.into(),
            inputs: "{}".into(),
            username: Some("alice".into()),
            namespace: None,
            steps: vec!["revoke_rbac".into()],
            submitted_by: "ops".into(),
            request_id: "r".into(),
            idempotency: None,
            secret: None,
        };
        store.submit(&job).await.unwrap();
    }
    let first = jobs[0].0;
    sandbox
        .database()
        .execute(&format!(
            "UPDATE jobs SET status = 'failed', finished_at = created_at, created_at = created_at - 1000 \
             WHERE id = '{}'",
            jobs[1].0
        ))
        .await;
    let counts = store.job_counts().await.unwrap();
    assert_eq!(counts.status(JobStatus::Queued), 2);
    assert_eq!(counts.status(JobStatus::Failed), 1);
    assert_eq!(counts.status(JobStatus::Running), 0);
    assert_eq!(counts.total(), 3);
    assert_eq!(
        counts.by_kind,
        [
            ("bootstrap_user".to_string(), 2),
            ("suspend_user".to_string(), 1)
        ]
    );
    let (oldest, _) = store.oldest_queued().await.unwrap().unwrap();
    assert_eq!(oldest, first);
    store.close().await;
}

both_backends!(overview_counts);

/// The dashboard's reads and pages with 1,000,000 stored jobs (SQLite; ignored by default, about
/// 1 GB of temporary disk and a few minutes):
///
/// ```sh
/// cargo test --release --test ui_scale -- --ignored --nocapture pages_at_a_million
/// ```
///
/// Prints the time of the overview's counts (read directly from the store, then through the
/// page with its 10 s reuse) and of each page; asserts only that every page answers.
#[tokio::test]
#[ignore]
async fn pages_at_a_million_jobs() {
    const JOBS: i64 = 1_000_000;
    const DAY: i64 = 86_400_000;
    let app = TestApp::start().await;
    let sandbox = app.stop().await;
    let now = chrono::Utc::now().timestamp_millis();
    let load = std::time::Instant::now();
    let created = format!("{now} - 90 * {DAY} + i * (89 * {DAY} / {JOBS})");
    for sql in [
        "PRAGMA synchronous = OFF".to_string(),
        format!(
            "INSERT INTO jobs (id, kind, status, inputs, username, namespace, summary, error,
                submitted_by, request_id, created_at, started_at, finished_at, updated_at, attempt, run_at)
             WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {JOBS} - 1),
                  t(i, c) AS (SELECT i, {created} FROM seq)
             SELECT printf('%08x-%04x-7000-8000-%012x', c >> 16, c & 65535, i),
                    CASE i % 20 WHEN 0 THEN 'suspend_user' WHEN 1 THEN 'set_password' ELSE 'bootstrap_user' END,
                    CASE WHEN i % 100000 = 5 THEN 'queued' WHEN i % 20 = 7 THEN 'failed'
                         WHEN i % 50 = 3 THEN 'canceled' ELSE 'succeeded' END,
                    '{{}}', 'user' || (i % 5000), 'user' || (i % 5000), 'done',
                    CASE WHEN i % 20 = 7 THEN '{{\"step\":\"add_namespace\",\"kind\":\"cli_failed\",\"detail\":\"boom\"}}' END,
                    CASE WHEN i % 3 = 0 THEN 'ci' ELSE 'ops' END, 'req-' || i,
                    c, c + 50, c + 2000, c + 2000, 1,
                    CASE WHEN i % 100000 = 5 THEN 32503680000000 ELSE c END
             FROM t"
        ),
    ] {
        sandbox.database().execute(&sql).await;
    }
    println!(
        "loaded {JOBS} jobs in {:.1} s",
        load.elapsed().as_secs_f64()
    );

    let store = Store::open(&sandbox.db()).await.unwrap();
    let mut counts = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let c = store.job_counts().await.unwrap();
        counts.push(t.elapsed());
        assert_eq!(c.total(), JOBS);
    }
    let t = std::time::Instant::now();
    store.oldest_queued().await.unwrap().unwrap();
    let oldest = t.elapsed();
    store.close().await;
    // The file's instance lock goes with the last handle.
    drop(store);
    println!(
        "Store::job_counts: {:?} (5 runs); Store::oldest_queued: {oldest:?}",
        counts
    );

    let app = TestApp::start_in(sandbox, |_| {}).await;
    let b = Browser::signed_in(&app, KEY).await;
    let middle = format!("{:08x}", (now - 45 * DAY) >> 16);
    let cursor = hex::encode(format!(
        "{}:{middle}-0000-7000-8000-000000000000",
        now - 45 * DAY
    ));
    let after = chrono::DateTime::from_timestamp_millis(now - 2 * DAY)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let some_job = {
        let page = b.get("/ui/jobs?limit=1").await.text().await.unwrap();
        let at = page.find("href=\"/ui/jobs/").unwrap() + "href=\"".len();
        page[at..].split('"').next().unwrap().to_string()
    };
    // Once the counts' reuse has run out, the next overview counts again.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let t = std::time::Instant::now();
    assert_eq!(b.get("/ui").await.status(), StatusCode::OK);
    println!("/ui counting: {:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
    println!("{:<58} {:>9} {:>9}", "page", "median ms", "max ms");
    for path in [
        "/ui".to_string(),
        "/ui/jobs".to_string(),
        "/ui/jobs?status=failed".to_string(),
        "/ui/jobs?status=queued".to_string(),
        "/ui/jobs?kind=suspend_user".to_string(),
        "/ui/jobs?username=user42".to_string(),
        "/ui/jobs?submitted_by=ci&status=canceled".to_string(),
        format!("/ui/jobs?created_after={after}"),
        format!("/ui/jobs?cursor={cursor}"),
        "/ui/jobs?limit=500".to_string(),
        some_job,
    ] {
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = std::time::Instant::now();
            let r = b.get(&path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            r.text().await.unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let first = times[0];
        times.sort_by(f64::total_cmp);
        println!(
            "{path:<58} {:>9.1} {:>9.1}  (first {first:.1})",
            times[10], times[19]
        );
    }
    app.stop().await;
}

/// The overview's counts with 1,000,000 jobs on PostgreSQL (ignored by default; needs what
/// `common::pg` needs):
///
/// ```sh
/// cargo test --release --test ui_scale -- --ignored --nocapture counts_at_a_million
/// ```
#[tokio::test]
#[ignore]
async fn counts_at_a_million_jobs_on_postgres() {
    const JOBS: i64 = 1_000_000;
    let Some(db) = common::pg::database("counts_at_a_million_jobs_on_postgres").await else {
        return;
    };
    let store = Store::open_postgres(&db.url, PgOptions { pool_size: 2 })
        .await
        .unwrap();
    let mut conn = db.connect().await;
    let load = std::time::Instant::now();
    sqlx::query(&format!(
        "INSERT INTO jobs (id, kind, status, inputs, username, namespace, summary, submitted_by,
                           request_id, created_at, updated_at, run_at)
         SELECT lpad(to_hex(i), 12, '0'),
                CASE i % 20 WHEN 0 THEN 'suspend_user' WHEN 1 THEN 'set_password' ELSE 'bootstrap_user' END,
                CASE WHEN i % 100000 = 5 THEN 'queued' WHEN i % 20 = 7 THEN 'failed'
                     WHEN i % 50 = 3 THEN 'canceled' ELSE 'succeeded' END,
                '{{}}', 'user' || (i % 5000), 'user' || (i % 5000), 'done',
                CASE WHEN i % 3 = 0 THEN 'ci' ELSE 'ops' END, 'req', i, i, i
         FROM generate_series(0, {JOBS} - 1) AS i"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("VACUUM ANALYZE jobs")
        .execute(&mut conn)
        .await
        .unwrap();
    println!(
        "loaded {JOBS} jobs in {:.1} s",
        load.elapsed().as_secs_f64()
    );
    let mut counts = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        assert_eq!(store.job_counts().await.unwrap().total(), JOBS);
        counts.push(t.elapsed());
    }
    let t = std::time::Instant::now();
    store.oldest_queued().await.unwrap().unwrap();
    println!(
        "Store::job_counts: {counts:?}; Store::oldest_queued: {:?}",
        t.elapsed()
    );
    store.close().await;
}
