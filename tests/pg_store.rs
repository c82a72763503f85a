//! The PostgreSQL store through the public `Store` API, on a real PostgreSQL 15 (see
//! `common::pg`; skipped, saying so, where it cannot run): submissions and idempotency across
//! two handles (two replicas), the reads and their snapshots, the job list against a model and
//! its plans, cancel and retry, the audit event, and maintenance by one leader at a time.
//! Raw SQL on the test database only sets up what the API cannot reach without a worker
//! (running, failed, old jobs); every assertion reads through the store.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::pg::{self, Database};
use everestctl_api::domain::{JobStatus, StepStatus};
use everestctl_api::store::postgres::{PgOptions, PgStore};
use everestctl_api::store::{
    CancelOutcome, Cursor, JobFilter, JobRecord, Lease, NewJob, RetryOutcome, Store, Submitted,
};
use sqlx::postgres::{PgConnection, PgListener};

const DAY_MS: i64 = 86_400_000;

fn options() -> PgOptions {
    PgOptions { pool_size: 5 }
}

async fn open(db: &Database) -> Store {
    Store::open_postgres(&db.url, options())
        .await
        .expect("open the PostgreSQL store")
}

/// A UUID-shaped id that sorts like `n`.
fn id(n: u32) -> String {
    format!("00000000-0000-7000-8000-{n:012}")
}

fn new_job(id: &str, username: &str, by: &str) -> NewJob {
    NewJob {
        id: id.into(),
        kind: "bootstrap_user".into(),
        inputs: format!("{{\"username\": \"{username}\"}}"),
        username: Some(username.into()),
        namespace: Some(username.replace('_', "-")),
        steps: vec!["create_account".into(), "add_namespace".into()],
        submitted_by: by.into(),
        request_id: format!("req-{id}"),
        idempotency: None,
        secret: Some(("pw123456".into(), true)),
    }
}

fn keyed(id: &str, key: &str, hash: &str) -> NewJob {
    NewJob {
        idempotency: Some((key.into(), hash.into())),
        ..new_job(id, "alice", "ops")
    }
}

/// Runs `sql` with `$1` = `id` on the test database; returns the rows changed.
async fn set(conn: &mut PgConnection, sql: &str, id: &str) -> u64 {
    sqlx::query(sql)
        .bind(id)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows_affected()
}

async fn scalar(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

/// Makes job `id` running under `owner`, claim 1, as a worker's claim would.
async fn make_running(conn: &mut PgConnection, id: &str, owner: &str) {
    let sql = format!(
        "UPDATE jobs SET status = 'running', attempt = 1, lease_owner = '{owner}',
                lease_expires_at = now_ms() + 60000, started_at = now_ms() WHERE id = $1"
    );
    assert_eq!(set(conn, &sql, id).await, 1);
}

async fn read_job(store: &Store, id: &str) -> JobRecord {
    store.job(id).await.unwrap().expect("the job exists")
}

/// `(type, detail)` of the job's events, oldest first.
async fn events(store: &Store, id: &str) -> Vec<(String, Option<String>)> {
    let history = store.history(id).await.unwrap().expect("the job exists");
    history
        .events
        .into_iter()
        .map(|e| (e.kind, e.detail))
        .collect()
}

fn event(kind: &str, detail: &str) -> (String, Option<String>) {
    (kind.into(), Some(detail.into()))
}

// ---- submitting ----

#[tokio::test]
async fn a_submission_stores_the_job_its_steps_secret_and_event() {
    let Some(db) = pg::database("a_submission_stores_everything").await else {
        return;
    };
    let store = open(&db).await;
    let mut listener = PgListener::connect(&db.url).await.unwrap();
    listener.listen("everest_job_queued").await.unwrap();
    let j = new_job(&id(1), "bob_b", "ops");
    assert_eq!(store.submit(&j).await.unwrap(), Submitted::Created(id(1)));
    // Every replica's worker is woken at commit.
    let woken = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
    assert_eq!(
        woken.expect("a wake-up").unwrap().channel(),
        "everest_job_queued"
    );
    // A replay stores nothing and wakes nobody.
    let first = keyed(&id(10), "k", "h");
    store.submit(&first).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a wake-up")
        .unwrap();
    let replay = keyed(&id(11), "k", "h");
    assert_eq!(
        store.submit(&replay).await.unwrap(),
        Submitted::Replayed(id(10))
    );
    let quiet = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    assert!(store.job(&id(11)).await.unwrap().is_none());

    let (job, steps) = store.job_with_steps(&id(1)).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(
        (job.kind.as_str(), job.submitted_by.as_str()),
        ("bootstrap_user", "ops")
    );
    assert_eq!(job.username.as_deref(), Some("bob_b"));
    assert_eq!(job.namespace.as_deref(), Some("bob-b"));
    assert_eq!(job.request_id, format!("req-{}", id(1)));
    let inputs: serde_json::Value = serde_json::from_str(&job.inputs).unwrap();
    assert_eq!(inputs, serde_json::json!({"username": "bob_b"}));
    assert_eq!((job.created_at, job.updated_at), (job.run_at, job.run_at));
    let now = everestctl_api::store::now_ms();
    assert!(
        (job.created_at - now).abs() < 60_000,
        "the database's clock"
    );
    assert_eq!((job.attempt, job.cancel_requested), (0, false));
    assert!(job.started_at.is_none() && job.finished_at.is_none() && job.error.is_none());
    let names: Vec<_> = steps
        .iter()
        .map(|s| (s.position, s.name.as_str()))
        .collect();
    assert_eq!(names, [(0, "create_account"), (1, "add_namespace")]);
    assert!(
        steps
            .iter()
            .all(|s| s.status == StepStatus::Pending && s.attempts == 0)
    );
    assert_eq!(store.steps(&id(1)).await.unwrap().len(), 2);

    let secret = store.secret(&id(1)).await.unwrap().unwrap();
    assert_eq!(secret.password.as_deref(), Some("pw123456"));
    assert!(secret.generated && secret.expires_at.is_none());
    let submitted = format!("submitted by ops (request req-{})", id(1));
    assert_eq!(
        events(&store, &id(1)).await,
        [event("submitted", &submitted)]
    );

    // Without a secret, none is stored.
    let bare = NewJob {
        secret: None,
        ..new_job(&id(2), "carol", "ops")
    };
    store.submit(&bare).await.unwrap();
    assert!(store.secret(&id(2)).await.unwrap().is_none());
    assert!(store.job(&id(3)).await.unwrap().is_none());
    assert!(store.job_with_steps(&id(3)).await.unwrap().is_none());
    assert!(store.history(&id(3)).await.unwrap().is_none());
    store.close().await;
}

#[tokio::test]
async fn an_idempotency_key_gives_one_job_across_replicas() {
    let Some(db) = pg::database("an_idempotency_key_gives_one_job").await else {
        return;
    };
    let replicas = [open(&db).await, open(&db).await];
    let mut n = 0;
    for round in 0..5 {
        let key = format!("key-{round}");
        let mut tries = tokio::task::JoinSet::new();
        for t in 0..16 {
            n += 1;
            let (store, job) = (replicas[t % 2].clone(), keyed(&id(n), &key, "hash"));
            tries.spawn(async move { store.submit(&job).await.unwrap() });
        }
        let outcomes = tries.join_all().await;
        let created: Vec<_> = outcomes
            .iter()
            .filter_map(|o| match o {
                Submitted::Created(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(created.len(), 1, "round {round}: {outcomes:?}");
        let original = &created[0];
        for o in &outcomes {
            assert!(
                *o == Submitted::Created(original.clone())
                    || *o == Submitted::Replayed(original.clone()),
                "round {round}: {outcomes:?}"
            );
        }
        // Another request with the same key conflicts, on either replica.
        n += 1;
        let other = keyed(&id(n), &key, "other hash");
        for store in &replicas {
            assert_eq!(
                store.submit(&other).await.unwrap(),
                Submitted::Conflict(original.clone())
            );
        }
    }
    let all = replicas[0]
        .list_jobs(&JobFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(all.jobs.len(), 5, "one job per key");

    // Keys are scoped per admin key name.
    let ci = NewJob {
        submitted_by: "ci".into(),
        ..keyed(&id(1000), "key-0", "hash")
    };
    assert_eq!(
        replicas[1].submit(&ci).await.unwrap(),
        Submitted::Created(id(1000))
    );
    // A key stored before request hashes were keyed cannot be checked.
    let mut conn = db.connect().await;
    set(
        &mut conn,
        "UPDATE jobs SET request_hash = NULL WHERE id = $1",
        &id(1000),
    )
    .await;
    assert_eq!(
        replicas[0].submit(&ci).await.unwrap(),
        Submitted::Unverifiable(id(1000))
    );
    for store in &replicas {
        store.close().await;
    }
}

// ---- reads ----

#[tokio::test]
async fn attempts_secrets_and_suspensions_read_back() {
    let Some(db) = pg::database("attempts_secrets_and_suspensions").await else {
        return;
    };
    let store = open(&db).await;
    let mut conn = db.connect().await;
    store.submit(&new_job(&id(1), "dave", "ops")).await.unwrap();
    // Two attempts of step 0, one of step 1.
    for (position, step, attempt, outcome) in [
        (0, "create_account", 1, Some("failed")),
        (0, "create_account", 2, Some("succeeded")),
        (1, "add_namespace", 1, None),
    ] {
        sqlx::query(
            "INSERT INTO step_attempts (job_id, position, step, attempt, job_attempt, worker,
                                        outcome, started_at)
             VALUES ($1, $2, $3, $4, 1, 'host:1:w', $5, now_ms())",
        )
        .bind(id(1))
        .bind(position)
        .bind(step)
        .bind(attempt)
        .bind(outcome)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let last = store.last_attempts(&id(1)).await.unwrap();
    let last: Vec<_> = last.iter().map(|a| (a.position, a.attempt)).collect();
    assert_eq!(last, [(0, 2), (1, 1)]);
    let all = store.history(&id(1)).await.unwrap().unwrap().attempts;
    let all: Vec<_> = all.iter().map(|a| (a.position, a.attempt)).collect();
    assert_eq!(all, [(0, 1), (0, 2), (1, 1)], "oldest first");

    // A password whose time is up is not shown, even before the purge erased it.
    set(
        &mut conn,
        "UPDATE job_secrets SET expires_at = now_ms() + 60000 WHERE job_id = $1",
        &id(1),
    )
    .await;
    assert!(
        store
            .secret(&id(1))
            .await
            .unwrap()
            .unwrap()
            .password
            .is_some()
    );
    set(
        &mut conn,
        "UPDATE job_secrets SET expires_at = now_ms() - 1 WHERE job_id = $1",
        &id(1),
    )
    .await;
    let secret = store.secret(&id(1)).await.unwrap().unwrap();
    assert!(secret.password.is_none() && secret.expires_at.is_some());

    // The latest succeeded suspension of a user.
    assert!(store.latest_suspension("erin").await.unwrap().is_none());
    for (n, created, lines) in [(2, 1_000, "[\"a\"]"), (3, 2_000, "[\"b\", \"c\"]")] {
        let suspend = NewJob {
            kind: "suspend_user".into(),
            steps: vec!["revoke_rbac".into()],
            ..new_job(&id(n), "erin", "ops")
        };
        store.submit(&suspend).await.unwrap();
        let sql =
            format!("UPDATE jobs SET status = 'succeeded', created_at = {created} WHERE id = $1;");
        set(&mut conn, &sql, &id(n)).await;
        let sql = format!(
            "UPDATE job_steps SET status = 'succeeded',
                    output = '{{\"removed_lines\": {lines}}}' WHERE job_id = $1"
        );
        set(&mut conn, &sql, &id(n)).await;
    }
    let latest = store.latest_suspension("erin").await.unwrap();
    assert_eq!(latest, Some((id(3), vec!["b".into(), "c".into()])));
    set(
        &mut conn,
        "UPDATE jobs SET status = 'failed' WHERE id = $1",
        &id(3),
    )
    .await;
    let latest = store.latest_suspension("erin").await.unwrap();
    assert_eq!(latest, Some((id(2), vec!["a".into()])));
    store.close().await;
}

#[tokio::test]
async fn a_job_and_its_steps_and_a_history_are_each_one_snapshot() {
    let Some(db) = pg::database("reads_are_one_snapshot").await else {
        return;
    };
    let store = open(&db).await;
    store
        .submit(&new_job(&id(1), "frank", "ops"))
        .await
        .unwrap();
    // A writer that changes the job and its steps, and adds an event, in each transaction:
    // in every snapshot the job's claim counter equals the steps' attempts, and the number of
    // events is the counter + 1 (the `submitted` event).
    let url = db.url.clone();
    let writer = tokio::spawn(async move {
        let mut conn = <PgConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        let tick = format!(
            "BEGIN;
             UPDATE jobs SET attempt = attempt + 1 WHERE id = '{id}';
             UPDATE job_steps SET attempts = attempts + 1 WHERE job_id = '{id}';
             INSERT INTO job_events (job_id, at, type) VALUES ('{id}', now_ms(), 'tick');
             COMMIT;",
            id = id(1)
        );
        for _ in 0..300 {
            // A `&str` runs as one simple query: several statements.
            sqlx::Executor::execute(&mut conn, tick.as_str())
                .await
                .unwrap();
        }
    });
    let mut reads = 0;
    while !writer.is_finished() {
        let (job, steps) = store.job_with_steps(&id(1)).await.unwrap().unwrap();
        for s in &steps {
            assert_eq!(s.attempts, job.attempt, "job and steps of one moment");
        }
        let history = store.history(&id(1)).await.unwrap().unwrap();
        assert_eq!(
            history.events.len() as i64,
            history.job.attempt + 1,
            "job and events of one moment"
        );
        reads += 1;
    }
    writer.await.unwrap();
    assert!(reads > 0);
    assert_eq!(read_job(&store, &id(1)).await.attempt, 300);
    store.close().await;
}

// ---- the job list ----

struct Seeded {
    id: String,
    status: JobStatus,
    kind: &'static str,
    username: &'static str,
    by: &'static str,
    created_at: i64,
}

fn matches(f: &JobFilter, j: &Seeded) -> bool {
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    f.status.is_none_or(|w| w == j.status)
        && eq(&f.kind, j.kind)
        && eq(&f.username, j.username)
        && eq(&f.namespace, &j.username.replace('_', "-"))
        && eq(&f.submitted_by, j.by)
        && f.created_after.is_none_or(|t| j.created_at >= t)
        && f.created_before.is_none_or(|t| j.created_at < t)
}

/// Every page of `f`, following the cursors; bounded.
async fn walk(s: &Store, f: &JobFilter, limit: u32) -> Vec<String> {
    let (mut ids, mut cursor) = (Vec::new(), None::<Cursor>);
    for _ in 0..200 {
        let page = s.list_jobs(f, cursor.as_ref(), limit).await.unwrap();
        assert!(page.jobs.len() <= limit as usize);
        ids.extend(page.jobs.iter().map(|j| j.id.clone()));
        match page.next {
            Some(next) => {
                assert_eq!(
                    page.jobs.len(),
                    limit as usize,
                    "only full pages have a next"
                );
                let last = page.jobs.last().unwrap();
                assert_eq!((next.created_at, &next.id), (last.created_at, &last.id));
                cursor = Some(next);
            }
            None => return ids,
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn every_filter_and_page_size_agrees_with_a_model() {
    let Some(db) = pg::database("list_agrees_with_a_model").await else {
        return;
    };
    let store = open(&db).await;
    let mut conn = db.connect().await;
    let mut seeded = Vec::new();
    for n in 0..36u32 {
        let username = ["alice", "bob_b", "carol", "dave"][n as usize % 4];
        let by = if n % 3 == 0 { "ci" } else { "ops" };
        store.submit(&new_job(&id(n), username, by)).await.unwrap();
        let status = JobStatus::ALL[n as usize % JobStatus::ALL.len()];
        let kind = if n % 7 == 0 {
            "set_password"
        } else {
            "bootstrap_user"
        };
        let created_at = 1_000 + i64::from(n / 3) * 10; // three jobs per millisecond
        let sql = format!(
            "UPDATE jobs SET status = '{status}', kind = '{kind}', created_at = {created_at}
              WHERE id = $1"
        );
        set(&mut conn, &sql, &id(n)).await;
        seeded.push(Seeded {
            id: id(n),
            status,
            kind,
            username,
            by,
            created_at,
        });
    }
    let text = |v: &str| Some(v.to_string());
    let filters = [
        JobFilter::default(),
        JobFilter {
            status: Some(JobStatus::Failed),
            ..Default::default()
        },
        JobFilter {
            kind: text("set_password"),
            ..Default::default()
        },
        JobFilter {
            username: text("bob_b"),
            ..Default::default()
        },
        JobFilter {
            namespace: text("bob-b"),
            ..Default::default()
        },
        JobFilter {
            submitted_by: text("ci"),
            ..Default::default()
        },
        JobFilter {
            created_after: Some(1_020),
            ..Default::default()
        },
        JobFilter {
            created_before: Some(1_050),
            ..Default::default()
        },
        JobFilter {
            created_after: Some(1_010),
            created_before: Some(1_090),
            username: text("alice"),
            ..Default::default()
        },
        JobFilter {
            status: Some(JobStatus::Succeeded),
            submitted_by: text("ops"),
            ..Default::default()
        },
        JobFilter {
            username: text("nobody"),
            ..Default::default()
        },
    ];
    for f in &filters {
        let mut want: Vec<&Seeded> = seeded.iter().filter(|j| matches(f, j)).collect();
        want.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let want: Vec<String> = want.iter().map(|j| j.id.clone()).collect();
        for limit in [1, 2, 3, 5, 100] {
            assert_eq!(walk(&store, f, limit).await, want, "{f:?}, limit {limit}");
        }
    }
    // A cursor past the upper bound, and one before it.
    let f = JobFilter {
        created_before: Some(1_030),
        ..Default::default()
    };
    for cursor in [(1_100, id(35)), (1_020, id(7)), (1_020, id(6))] {
        let after = Cursor {
            created_at: cursor.0,
            id: cursor.1.clone(),
        };
        let page = store.list_jobs(&f, Some(&after), 100).await.unwrap();
        let mut want: Vec<&Seeded> = seeded
            .iter()
            .filter(|j| j.created_at < 1_030 && (j.created_at, &j.id) < (cursor.0, &cursor.1))
            .collect();
        want.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let got: Vec<_> = page.jobs.iter().map(|j| j.id.as_str()).collect();
        let want: Vec<_> = want.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(got, want, "after {cursor:?}");
        assert!(page.next.is_none());
    }
    store.close().await;
}

/// Asserts that `plan` reads an index backwards (`index`, when given), sorts nothing, scans no
/// table and reads at most `rows` rows.
fn assert_index_range(what: &str, plan: &[String], index: Option<&str>, rows: usize) {
    let text = plan.join("\n");
    let scan = format!("Index Scan Backward using {}", index.unwrap_or(""));
    assert!(
        text.contains(&scan),
        "{what} should read {index:?}:\n{text}"
    );
    assert!(!text.contains("Sort"), "{what} sorts:\n{text}");
    assert!(
        !text.contains("Seq Scan"),
        "{what} scans the table:\n{text}"
    );
    let scan = plan
        .iter()
        .find(|l| l.contains("Index Scan"))
        .expect("an index scan");
    let read: usize = scan
        .split("actual rows=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("rows read in {scan}"));
    let removed: usize = text
        .split("Rows Removed by Filter: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map_or(0, |r| r.parse().unwrap());
    assert!(
        read + removed <= rows,
        "{what} read {read} + {removed} rows:\n{text}"
    );
}

#[tokio::test]
async fn a_filtered_page_is_a_range_read_of_its_index() {
    let Some(db) = pg::database("a_filtered_page_reads_its_index").await else {
        return;
    };
    let store = PgStore::open(&db.url, options()).await.unwrap();
    let mut conn = db.connect().await;
    // 20,000 jobs of 200 users, mostly succeeded, 2% failed, in creation order as they would
    // be inserted; then fresh statistics.
    sqlx::raw_sql(
        "INSERT INTO jobs (id, kind, status, inputs, username, namespace, submitted_by,
                           request_id, created_at, updated_at, run_at)
         SELECT lpad(g::text, 12, '0'), 'bootstrap_user',
                CASE g % 50 WHEN 0 THEN 'failed' WHEN 1 THEN 'canceled' WHEN 2 THEN 'queued'
                            WHEN 3 THEN 'running' ELSE 'succeeded' END,
                '{}', 'user' || (g % 200), 'ns' || (g % 200), 'ops', 'r', 1000 + g / 3,
                1000 + g / 3, 1000 + g / 3
           FROM generate_series(1, 20000) AS g;
         ANALYZE jobs;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let filter = |status: Option<JobStatus>, username: Option<&str>| JobFilter {
        status,
        username: username.map(String::from),
        ..Default::default()
    };
    let failed = filter(Some(JobStatus::Failed), None);
    let user = filter(None, Some("user7"));
    let both = filter(Some(JobStatus::Succeeded), Some("user7"));
    let succeeded = filter(Some(JobStatus::Succeeded), None);
    let cursor = Cursor {
        created_at: 5_000,
        id: "000000012000".into(),
    };
    let cases = [
        ("status", &failed, None, Some("jobs_status_created")),
        (
            "status after a cursor",
            &failed,
            Some(&cursor),
            Some("jobs_status_created"),
        ),
        ("username", &user, None, Some("jobs_username_created")),
        (
            "username after a cursor",
            &user,
            Some(&cursor),
            Some("jobs_username_created"),
        ),
        (
            "status and username",
            &both,
            None,
            Some("jobs_username_created"),
        ),
        // A status that most jobs have: reading the newest jobs and skipping the few others
        // is as cheap, and the planner may do either.
        ("a frequent status", &succeeded, Some(&cursor), None),
    ];
    for (what, filter, after, index) in cases {
        let plan = store.explain_list_jobs(filter, after, 20).await.unwrap();
        assert_index_range(what, &plan, index, 30);
        if after.is_some() {
            // The cursor bounds the range; it is not a filter on the rows read.
            let text = plan.join("\n");
            assert!(
                text.contains("Index Cond") && text.contains("ROW(created_at, id) <"),
                "{what}:\n{text}"
            );
        }
        // And the page is right.
        let page = store.list_jobs(filter, after, 20).await.unwrap();
        assert_eq!(page.jobs.len(), 20);
        assert!(page.next.is_some());
    }
    store.close().await;
}

// ---- cancel and retry ----

#[tokio::test]
async fn a_queued_job_is_canceled_at_once_and_a_running_one_is_flagged() {
    let Some(db) = pg::database("cancel_queued_and_running").await else {
        return;
    };
    let store = open(&db).await;
    let mut listener = PgListener::connect(&db.url).await.unwrap();
    listener.listen("everest_job_changed").await.unwrap();
    let mut changes = store.subscribe();
    store.submit(&new_job(&id(1), "gina", "ops")).await.unwrap();
    assert_eq!(
        store.request_cancel(&id(1), "ops").await.unwrap(),
        CancelOutcome::Canceled
    );
    assert_eq!(changes.recv().await.unwrap(), id(1));
    let changed = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
    assert_eq!(changed.expect("a notification").unwrap().payload(), id(1));

    let (job, steps) = store.job_with_steps(&id(1)).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Canceled);
    assert!(job.cancel_requested && job.finished_at.is_some() && job.lease_owner.is_none());
    assert_eq!(
        job.summary.as_deref(),
        Some("Canceled before it ran to the end.")
    );
    assert!(steps.iter().all(|s| s.status == StepStatus::Canceled));
    let history = store.history(&id(1)).await.unwrap().unwrap();
    let kinds: Vec<_> = history
        .events
        .iter()
        .map(|e| (e.kind.as_str(), e.detail.as_deref(), e.attempt))
        .collect();
    let submitted = format!("submitted by ops (request req-{})", id(1));
    assert_eq!(
        kinds,
        [
            ("submitted", Some(submitted.as_str()), None),
            ("cancel_requested", Some("by ops"), Some(0)),
            ("canceled", Some("canceled while queued"), Some(0)),
            (
                "finished",
                Some("canceled: Canceled before it ran to the end."),
                Some(0)
            ),
        ]
    );
    assert_eq!(
        store.request_cancel(&id(1), "ops").await.unwrap(),
        CancelOutcome::AlreadyFinished(JobStatus::Canceled)
    );
    assert_eq!(
        store.request_cancel(&id(9), "ops").await.unwrap(),
        CancelOutcome::NotFound
    );

    // A running job is flagged for its worker.
    let mut conn = db.connect().await;
    store.submit(&new_job(&id(2), "hank", "ops")).await.unwrap();
    make_running(&mut conn, &id(2), "host:1:w").await;
    let lease = Lease {
        job_id: id(2),
        owner: "host:1:w".into(),
        attempt: 1,
    };
    assert!(!store.cancel_requested(&lease).await.unwrap());
    assert_eq!(
        store.request_cancel(&id(2), "ci").await.unwrap(),
        CancelOutcome::Requested
    );
    assert!(store.cancel_requested(&lease).await.unwrap());
    let running = read_job(&store, &id(2)).await;
    assert_eq!(running.status, JobStatus::Running);
    assert!(running.cancel_requested && running.finished_at.is_none());
    let last = store
        .history(&id(2))
        .await
        .unwrap()
        .unwrap()
        .events
        .pop()
        .unwrap();
    assert_eq!(
        (last.kind.as_str(), last.detail.as_deref(), last.attempt),
        ("cancel_requested", Some("by ci"), Some(1))
    );
    store.close().await;
}

#[tokio::test]
async fn two_replicas_cancelling_one_queued_job_cancel_it_once() {
    let Some(db) = pg::database("two_replicas_cancel_once").await else {
        return;
    };
    let replicas = [open(&db).await, open(&db).await];
    for n in 0..10 {
        replicas[0]
            .submit(&new_job(&id(n), "ivy", "ops"))
            .await
            .unwrap();
        let mut cancels = tokio::task::JoinSet::new();
        for t in 0..4 {
            let store = replicas[t % 2].clone();
            cancels.spawn(async move { store.request_cancel(&id(n), "ops").await.unwrap() });
        }
        let mut outcomes = cancels.join_all().await;
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            outcomes,
            [
                CancelOutcome::AlreadyFinished(JobStatus::Canceled),
                CancelOutcome::AlreadyFinished(JobStatus::Canceled),
                CancelOutcome::AlreadyFinished(JobStatus::Canceled),
                CancelOutcome::Canceled,
            ]
        );
        let finished = events(&replicas[1], &id(n))
            .await
            .into_iter()
            .filter(|(kind, _)| kind == "finished")
            .count();
        assert_eq!(finished, 1);
    }
    for store in &replicas {
        store.close().await;
    }
}

#[tokio::test]
async fn a_retry_requeues_failed_and_canceled_jobs_only() {
    let Some(db) = pg::database("retry_outcomes").await else {
        return;
    };
    let store = open(&db).await;
    let mut conn = db.connect().await;
    assert_eq!(
        store.retry(&id(9), "ops").await.unwrap(),
        RetryOutcome::NotFound
    );
    // Queued, running, succeeded: not retryable.
    for (n, status) in [(1, "queued"), (2, "running"), (3, "succeeded")] {
        store.submit(&new_job(&id(n), "jack", "ops")).await.unwrap();
        let sql = format!("UPDATE jobs SET status = '{status}' WHERE id = $1");
        set(&mut conn, &sql, &id(n)).await;
        assert_eq!(
            store.retry(&id(n), "ops").await.unwrap(),
            RetryOutcome::NotRetryable(JobStatus::parse(status).unwrap())
        );
    }
    // A job that failed at its second step, after a first that succeeded.
    let three = NewJob {
        steps: vec![
            "create_account".into(),
            "add_namespace".into(),
            "apply_rbac".into(),
        ],
        ..new_job(&id(4), "kate", "ops")
    };
    store.submit(&three).await.unwrap();
    sqlx::raw_sql(&format!(
        "UPDATE jobs SET status = 'failed', attempt = 2, finished_at = now_ms(), summary = 'x',
                error = '{{\"step\": \"add_namespace\"}}', cancel_requested = true
          WHERE id = '{id}';
         UPDATE job_steps SET status = 'succeeded', failures = 1, attempts = 2, finished_at = 5
          WHERE job_id = '{id}' AND position = 0;
         UPDATE job_steps SET status = 'failed', failures = 3, attempts = 3, finished_at = 6
          WHERE job_id = '{id}' AND position = 1;
         UPDATE job_steps SET status = 'skipped', finished_at = 6
          WHERE job_id = '{id}' AND position = 2;
         UPDATE job_secrets SET expires_at = now_ms() + 60000 WHERE job_id = '{id}';",
        id = id(4)
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let mut changes = store.subscribe();
    let before = read_job(&store, &id(4)).await.finished_at.unwrap();
    assert_eq!(
        store.retry(&id(4), "ops").await.unwrap(),
        RetryOutcome::Requeued
    );
    assert_eq!(changes.recv().await.unwrap(), id(4));
    let (job, steps) = store.job_with_steps(&id(4)).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert!(job.finished_at.is_none() && job.error.is_none() && !job.cancel_requested);
    assert_eq!(
        job.summary.as_deref(),
        Some("Queued again by a retry request.")
    );
    assert!(job.run_at >= before && job.updated_at == job.run_at);
    assert_eq!(job.attempt, 2, "the claim counter goes on");
    let steps: Vec<_> = steps
        .iter()
        .map(|s| (s.status, s.failures, s.attempts, s.finished_at))
        .collect();
    assert_eq!(
        steps,
        [
            (StepStatus::Succeeded, 1, 2, Some(5)),
            (StepStatus::Pending, 0, 3, None),
            (StepStatus::Pending, 0, 0, None),
        ]
    );
    let secret = store.secret(&id(4)).await.unwrap().unwrap();
    assert!(secret.expires_at.is_none() && secret.password.is_some());
    let last = store
        .history(&id(4))
        .await
        .unwrap()
        .unwrap()
        .events
        .pop()
        .unwrap();
    assert_eq!(
        (last.kind.as_str(), last.detail.as_deref(), last.attempt),
        ("retry_requested", Some("by ops; was failed"), Some(2))
    );
    assert_eq!(
        store.retry(&id(4), "ops").await.unwrap(),
        RetryOutcome::NotRetryable(JobStatus::Queued)
    );

    // A canceled job, retried from two replicas at once: requeued once.
    let other = open(&db).await;
    store.submit(&new_job(&id(5), "liam", "ops")).await.unwrap();
    store.request_cancel(&id(5), "ops").await.unwrap();
    let five = id(5);
    let (a, b) = tokio::join!(store.retry(&five, "ops"), other.retry(&five, "ci"));
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        [
            RetryOutcome::NotRetryable(JobStatus::Queued),
            RetryOutcome::Requeued
        ]
    );
    let (job, steps) = store.job_with_steps(&id(5)).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert!(steps.iter().all(|s| s.status == StepStatus::Pending));
    let retried: Vec<_> = events(&store, &id(5))
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "retry_requested")
        .collect();
    assert_eq!(retried.len(), 1);
    assert!(retried[0].1.as_deref().unwrap().ends_with("; was canceled"));
    other.close().await;
    store.close().await;
}

#[tokio::test]
async fn a_credentials_read_is_an_event_of_the_job() {
    let Some(db) = pg::database("credentials_read_event").await else {
        return;
    };
    let store = open(&db).await;
    store.submit(&new_job(&id(1), "mia", "ops")).await.unwrap();
    store
        .record_credentials_read(&id(1), "ops", "req-9")
        .await
        .unwrap();
    let last = store
        .history(&id(1))
        .await
        .unwrap()
        .unwrap()
        .events
        .pop()
        .unwrap();
    assert_eq!(
        (last.kind.as_str(), last.detail.as_deref()),
        ("credentials_read", Some("by ops; request req-9"))
    );
    assert!(last.attempt.is_none() && last.worker.is_none());
    assert!((last.at - everestctl_api::store::now_ms()).abs() < 60_000);
    store.close().await;
}

// ---- maintenance ----

/// Submits jobs `range` and makes them finished long ago, with passwords still kept.
async fn old_finished(store: &Store, conn: &mut PgConnection, range: std::ops::Range<u32>) {
    let ago = 100 * DAY_MS;
    for n in range {
        store.submit(&new_job(&id(n), "noah", "ops")).await.unwrap();
        let sql = format!(
            "UPDATE jobs SET status = 'succeeded', created_at = now_ms() - {ago},
                    finished_at = now_ms() - {ago} + {n} WHERE id = $1"
        );
        set(conn, &sql, &id(n)).await;
    }
}

/// Makes the secret of job `n` expired.
async fn expire_secret(conn: &mut PgConnection, n: u32) {
    let sql = "UPDATE job_secrets SET expires_at = now_ms() - 1 WHERE job_id = $1";
    assert_eq!(set(conn, sql, &id(n)).await, 1);
}

async fn leader(conn: &mut PgConnection) -> (i64, String) {
    sqlx::query_as("SELECT term, owner FROM leader")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_replica_at_a_time_prunes_and_purges() {
    let Some(db) = pg::database("one_replica_prunes_and_purges").await else {
        return;
    };
    let (a, b) = (open(&db).await, open(&db).await);
    let mut conn = db.connect().await;
    let cutoff = everestctl_api::store::now_ms() - 90 * DAY_MS;
    old_finished(&a, &mut conn, 0..6).await;
    // Old but queued, and old but running (with a bogus finished_at): never pruned.
    for (n, running) in [(100, false), (101, true)] {
        a.submit(&new_job(&id(n), "olga", "ops")).await.unwrap();
        let sql = format!(
            "UPDATE jobs SET created_at = 0, finished_at = 0, run_at = now_ms() + {DAY_MS}
              WHERE id = $1"
        );
        set(&mut conn, &sql, &id(n)).await;
        if running {
            make_running(&mut conn, &id(n), "host:1:w").await;
        }
    }
    // Recent jobs with expired passwords.
    for n in [200, 201] {
        a.submit(&new_job(&id(n), "pia", "ops")).await.unwrap();
        expire_secret(&mut conn, n).await;
    }

    // `a` is the first to call: it leads, and `b` changes nothing.
    assert_eq!(a.prune_finished_before(cutoff, 2).await.unwrap(), 2);
    let (term, first) = leader(&mut conn).await;
    assert_eq!(term, 1);
    assert_eq!(b.prune_finished_before(cutoff, 100).await.unwrap(), 0);
    assert_eq!(b.purge_expired_secrets().await.unwrap(), 0);
    assert_eq!(a.purge_expired_secrets().await.unwrap(), 2);
    assert_eq!(a.purge_expired_secrets().await.unwrap(), 0);
    for n in [200, 201] {
        let secret = a.secret(&id(n)).await.unwrap().unwrap();
        assert!(secret.password.is_none(), "erased");
        assert!(a.job(&id(n)).await.unwrap().is_some(), "recent jobs stay");
    }
    assert_eq!(a.prune_finished_before(cutoff, 100).await.unwrap(), 4);
    assert_eq!(a.prune_finished_before(cutoff, 100).await.unwrap(), 0);
    assert_eq!(
        leader(&mut conn).await,
        (1, first.clone()),
        "renewed, same term"
    );
    for n in 0..6 {
        assert!(b.job(&id(n)).await.unwrap().is_none(), "pruned");
        assert!(b.history(&id(n)).await.unwrap().is_none());
    }
    let owned = scalar(
        &mut conn,
        "SELECT (SELECT count(*) FROM job_steps) + (SELECT count(*) FROM job_events)
              + (SELECT count(*) FROM job_secrets)",
    )
    .await;
    assert_eq!(
        owned,
        4 * (2 + 1 + 1),
        "what pruned jobs owned went with them"
    );

    // The leader dies (dropped, not closed: it never gives the lease up); until its lease runs
    // out, nobody else prunes.
    old_finished(&a, &mut conn, 10..13).await;
    expire_secret(&mut conn, 100).await;
    drop(a);
    assert_eq!(b.prune_finished_before(cutoff, 100).await.unwrap(), 0);
    assert_eq!(b.purge_expired_secrets().await.unwrap(), 0);
    // Its lease runs out (on the database's clock): the next call takes over, in a new term.
    sqlx::query("UPDATE leader SET expires_at = now_ms() - 1")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(b.prune_finished_before(cutoff, 100).await.unwrap(), 3);
    let (term, second) = leader(&mut conn).await;
    assert_eq!(term, 2);
    assert_ne!(second, first);
    assert_eq!(b.purge_expired_secrets().await.unwrap(), 1);
    for n in [100, 101] {
        assert!(
            b.job(&id(n)).await.unwrap().is_some(),
            "queued and running jobs stay"
        );
    }
    // A leader that stops gives the lease up, so that the next replica need not wait for it.
    b.close().await;
    assert_eq!(scalar(&mut conn, "SELECT count(*) FROM leader").await, 0);
}

#[tokio::test]
async fn concurrent_maintenance_calls_have_one_leader() {
    let Some(db) = pg::database("concurrent_maintenance_one_leader").await else {
        return;
    };
    let replicas = [open(&db).await, open(&db).await];
    let mut conn = db.connect().await;
    old_finished(&replicas[0], &mut conn, 0..60).await;
    let cutoff = everestctl_api::store::now_ms() - 90 * DAY_MS;
    let mut calls = tokio::task::JoinSet::new();
    for t in 0..12 {
        let store = replicas[t % 2].clone();
        calls.spawn(async move {
            let mut deleted = 0;
            for _ in 0..10 {
                deleted += store.prune_finished_before(cutoff, 5).await.unwrap();
            }
            (t % 2, deleted)
        });
    }
    let results = calls.join_all().await;
    let leaders: BTreeSet<usize> = results
        .iter()
        .filter(|(_, d)| *d > 0)
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(leaders.len(), 1, "{results:?}");
    let total: u64 = results.iter().map(|(_, d)| d).sum();
    assert_eq!(total, 60, "each job deleted once: {results:?}");
    assert_eq!(scalar(&mut conn, "SELECT count(*) FROM jobs").await, 0);
    for store in &replicas {
        store.close().await;
    }
}

#[tokio::test]
async fn a_replica_does_not_wait_for_a_hung_maintenance_transaction() {
    let Some(db) = pg::database("maintenance_does_not_wait_for_a_hung_one").await else {
        return;
    };
    let store = open(&db).await;
    let mut conn = db.connect().await;
    old_finished(&store, &mut conn, 0..3).await;
    let cutoff = everestctl_api::store::now_ms() - 90 * DAY_MS;
    assert_eq!(store.prune_finished_before(cutoff, 1).await.unwrap(), 1);
    // Another session holds the leader row, as a paused replica's open transaction would.
    sqlx::raw_sql("BEGIN; SELECT * FROM leader FOR UPDATE;")
        .execute(&mut conn)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(store.prune_finished_before(cutoff, 1).await.unwrap(), 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
    assert_eq!(store.prune_finished_before(cutoff, 5).await.unwrap(), 2);
    store.close().await;
}
