//! The PostgreSQL schema and the statements replicas rely on, on a real PostgreSQL 15 (see
//! `common::pg`; skipped, saying so, where it cannot run): migrations (also three at once), the
//! claim (its plan, its order, expired leases taken over and live ones never, disjoint claims by
//! concurrent claimers) and the take of a resource lock.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::pg;
use everestctl_api::store::postgres::{CLAIM_SQL, LOCK_TAKE_SQL, migrate};
use serde_json::Value;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

/// The tables of `migrations/postgres`, in the order of the C collation.
const TABLES: [&str; 9] = [
    "_sqlx_migrations",
    "job_events",
    "job_secrets",
    "job_steps",
    "jobs",
    "leader",
    "resource_locks",
    "service_secrets",
    "step_attempts",
];

/// A migrated fresh database, or `None` when PostgreSQL tests are skipped.
async fn migrated(test: &str) -> Option<pg::Database> {
    let db = pg::database(test).await?;
    migrate(&db.url).await.expect("migrate");
    Some(db)
}

async fn tables(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
          WHERE table_schema = 'public' ORDER BY table_name",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

/// Inserts `count` jobs in `status`, due `run_in_ms` from now (negative: already due).
async fn insert_jobs(
    conn: &mut PgConnection,
    prefix: &str,
    status: &str,
    count: i64,
    run_in_ms: i64,
) {
    sqlx::query(
        "INSERT INTO jobs (id, kind, status, inputs, submitted_by, request_id,
                           created_at, updated_at, run_at)
         SELECT $1 || lpad(g::text, 6, '0'), 'bootstrap', $2, '{\"username\": \"u\"}', 'ops', 'r',
                now_ms(), now_ms(), now_ms() + $3 - g
           FROM generate_series(1, $4::bigint) AS g",
    )
    .bind(prefix)
    .bind(status)
    .bind(run_in_ms)
    .bind(count)
    .execute(conn)
    .await
    .unwrap();
}

/// Inserts `count` running jobs of `owner` whose lease ends `lease_in_ms` from now (negative:
/// expired), one millisecond apart (the last one first).
async fn insert_running(
    conn: &mut PgConnection,
    prefix: &str,
    owner: &str,
    count: i64,
    lease_in_ms: i64,
) {
    sqlx::query(
        "INSERT INTO jobs (id, kind, status, inputs, submitted_by, request_id, created_at,
                           updated_at, run_at, started_at, attempt, lease_owner, lease_expires_at)
         SELECT $1 || lpad(g::text, 6, '0'), 'bootstrap', 'running', '{}', 'ops', 'r',
                now_ms(), now_ms(), now_ms() - 60000, now_ms() - 60000, 1, $2, now_ms() + $3 - g
           FROM generate_series(1, $4::bigint) AS g",
    )
    .bind(prefix)
    .bind(owner)
    .bind(lease_in_ms)
    .bind(count)
    .execute(conn)
    .await
    .unwrap();
}

/// Runs the claim `count` times (in the caller's transaction, if any): the `(id, attempt,
/// previous_owner)` of the jobs claimed, in claim order.
async fn claim(
    conn: &mut PgConnection,
    worker: &str,
    lease_ms: i64,
    count: usize,
) -> Vec<(String, i64, Option<String>)> {
    let mut claimed = Vec::new();
    for _ in 0..count {
        let one: Option<(String, i64, Option<String>)> = sqlx::query_as(CLAIM_SQL)
            .bind(worker)
            .bind(lease_ms)
            .fetch_optional(&mut *conn)
            .await
            .unwrap();
        match one {
            Some(one) => claimed.push(one),
            None => break,
        }
    }
    claimed
}

fn ids(claimed: &[(String, i64, Option<String>)]) -> BTreeSet<String> {
    claimed.iter().map(|(id, _, _)| id.clone()).collect()
}

#[tokio::test]
async fn migration_applies_on_a_fresh_database() {
    let Some(db) = pg::database("migration_applies_on_a_fresh_database").await else {
        return;
    };
    let mut conn = db.connect().await;
    assert!(tables(&mut conn).await.is_empty(), "not a fresh database");
    migrate(&db.url).await.expect("migrate");
    assert_eq!(tables(&mut conn).await, TABLES);
    // A second start finds nothing to do.
    migrate(&db.url).await.expect("migrate again");
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(applied, [(1, true), (2, true)]);

    // The constraints hold: states are checked, JSON is jsonb, idempotency keys are unique per
    // admin key name only.
    insert_jobs(&mut conn, "q", "queued", 1, 0).await;
    let bad = sqlx::query(
        "INSERT INTO jobs (id, kind, status, inputs, submitted_by, request_id, created_at,
                           updated_at, run_at) VALUES ('x', 'k', 'paused', '{}', 'ops', 'r', 0, 0, 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap_err();
    assert_eq!(code(&bad), "23514", "{bad}"); // check_violation
    let username: String = sqlx::query_scalar("SELECT inputs->>'username' FROM jobs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(username, "u");
    let keyed = "INSERT INTO jobs (id, kind, status, inputs, submitted_by, request_id, created_at,
                                   updated_at, run_at, idempotency_key)
                 VALUES ($1, 'k', 'queued', '{}', $2, 'r', 0, 0, 0, $3)";
    for (id, by, key) in [("k1", "ops", Some("key")), ("k2", "ci", Some("key"))] {
        sqlx::query(keyed)
            .bind(id)
            .bind(by)
            .bind(key)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for id in ["n1", "n2"] {
        sqlx::query(keyed)
            .bind(id)
            .bind("ops")
            .bind(None::<&str>)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let duplicate = sqlx::query(keyed)
        .bind("k3")
        .bind("ops")
        .bind("key")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(code(&duplicate), "23505", "{duplicate}"); // unique_violation
}

fn code(e: &sqlx::Error) -> String {
    e.as_database_error()
        .and_then(|d| d.code())
        .unwrap_or_default()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn three_concurrent_migrations_leave_one_schema() {
    let Some(db) = pg::database("three_concurrent_migrations_leave_one_schema").await else {
        return;
    };
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { migrate(&url).await })
        })
        .collect();
    for run in runs {
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("a migration hangs")
            .unwrap()
            .expect("a concurrent migration failed");
    }
    let mut conn = db.connect().await;
    assert_eq!(tables(&mut conn).await, TABLES);
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        applied,
        [(1, true), (2, true)],
        "each migration applied exactly once"
    );
}

/// Every `(Node Type, Relation Name, Index Name)` of a JSON plan.
fn plan_nodes(plan: &Value, nodes: &mut Vec<(String, String, String)>) {
    let field = |name: &str| plan[name].as_str().unwrap_or_default().to_string();
    nodes.push((
        field("Node Type"),
        field("Relation Name"),
        field("Index Name"),
    ));
    for child in plan["Plans"].as_array().into_iter().flatten() {
        plan_nodes(child, nodes);
    }
}

#[tokio::test]
async fn claim_reads_the_partial_indexes_of_queued_and_running_jobs() {
    let Some(db) = migrated("claim_reads_the_partial_indexes_of_queued_and_running_jobs").await
    else {
        return;
    };
    let mut conn = db.connect().await;
    // A realistic table: mostly history, a few queued and running jobs, with statistics.
    insert_jobs(&mut conn, "done", "succeeded", 20_000, -60_000).await;
    insert_jobs(&mut conn, "queued", "queued", 50, -1_000).await;
    insert_running(&mut conn, "live", "alive", 50, 60_000).await;
    insert_running(&mut conn, "expired", "dead", 2, -1_000).await;
    sqlx::query("ANALYZE jobs")
        .execute(&mut conn)
        .await
        .unwrap();
    let (plan,): (Value,) = sqlx::query_as(&format!("EXPLAIN (FORMAT JSON) {CLAIM_SQL}"))
        .bind("w")
        .bind(30_000_i64)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let mut nodes = Vec::new();
    plan_nodes(&plan[0]["Plan"], &mut nodes);
    let on_jobs: Vec<_> = nodes.iter().filter(|(_, rel, _)| rel == "jobs").collect();
    assert!(
        !on_jobs.iter().any(|(node, _, _)| node == "Seq Scan"),
        "the claim scans the jobs table: {nodes:?}"
    );
    for index in ["jobs_due", "jobs_leased"] {
        assert!(
            on_jobs
                .iter()
                .any(|(node, _, i)| node.starts_with("Index") && i == index),
            "the claim does not read {index}: {nodes:?}"
        );
    }
    // Each candidate is locked as it is read, and the read stops at the first one.
    for node in ["Limit", "LockRows"] {
        let n = nodes.iter().filter(|(n, _, _)| n == node).count();
        assert!(n >= 2, "{node}: {nodes:?}");
    }
}

#[tokio::test]
async fn the_claim_takes_the_job_due_first_and_never_a_live_lease() {
    let Some(db) = migrated("the_claim_takes_the_job_due_first_and_never_a_live_lease").await
    else {
        return;
    };
    let mut conn = db.connect().await;
    insert_jobs(&mut conn, "q-early", "queued", 1, -3_000).await;
    insert_running(&mut conn, "expired", "dead", 1, -2_000).await;
    insert_jobs(&mut conn, "q-late", "queued", 1, -1_000).await;
    insert_jobs(&mut conn, "q-later", "queued", 1, 3_600_000).await;
    insert_running(&mut conn, "live", "alive", 3, 3_600_000).await;
    insert_jobs(&mut conn, "done", "succeeded", 3, -10_000).await;

    let claimed = claim(&mut conn, "w", 30_000, 10).await;
    let order: Vec<&str> = claimed.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(order, ["q-early000001", "expired000001", "q-late000001"]);
    // The expired lease was taken over: a new claim, naming the owner it took over from.
    assert_eq!(claimed[0], ("q-early000001".into(), 1, None));
    assert_eq!(claimed[1], ("expired000001".into(), 2, Some("dead".into())));
    let live: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT id, lease_owner, attempt FROM jobs WHERE id LIKE 'live%' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        live.iter()
            .all(|(_, owner, attempt)| owner == "alive" && *attempt == 1),
        "a live lease was taken: {live:?}"
    );
}

#[tokio::test]
async fn concurrent_claimers_get_disjoint_jobs() {
    let Some(db) = migrated("concurrent_claimers_get_disjoint_jobs").await else {
        return;
    };
    let mut setup = db.connect().await;
    insert_jobs(&mut setup, "due", "queued", 10, -1_000).await;
    insert_jobs(&mut setup, "later", "queued", 3, 3_600_000).await;
    insert_jobs(&mut setup, "done", "succeeded", 5, -1_000).await;
    insert_running(&mut setup, "due-expired", "dead", 2, -1_000).await;
    insert_running(&mut setup, "live", "alive", 3, 3_600_000).await;

    // Both claims run while the other's transaction is open: the second must skip the rows the
    // first locked, not wait for them (nor take them).
    let (mut a, mut b) = (db.connect().await, db.connect().await);
    let mut tx_a = a.begin().await.unwrap();
    let claimed_a = claim(&mut tx_a, "worker-a", 30_000, 4).await;
    let mut tx_b = b.begin().await.unwrap();
    let claimed_b = tokio::time::timeout(
        Duration::from_secs(10),
        claim(&mut tx_b, "worker-b", 30_000, 4),
    )
    .await
    .expect("the second claimer waited for the first");
    tx_b.commit().await.unwrap();
    tx_a.commit().await.unwrap();

    let (ids_a, ids_b) = (ids(&claimed_a), ids(&claimed_b));
    assert_eq!((ids_a.len(), ids_b.len()), (4, 4), "{ids_a:?} {ids_b:?}");
    assert!(ids_a.is_disjoint(&ids_b), "{ids_a:?} {ids_b:?}");
    let rest = claim(&mut setup, "worker-c", 30_000, 100).await;
    let ids_c = ids(&rest);
    assert_eq!(
        ids_c.len(),
        4,
        "only the due queued jobs and the expired leases are left: {ids_c:?}"
    );
    assert!(ids_c.is_disjoint(&ids_a) && ids_c.is_disjoint(&ids_b));
    let all: BTreeSet<String> = ids_a.iter().chain(&ids_b).chain(&ids_c).cloned().collect();
    assert_eq!(all.len(), 12);
    assert!(all.iter().all(|id| id.starts_with("due")), "{all:?}");
    for (id, attempt, previous) in claimed_a.iter().chain(&claimed_b).chain(&rest) {
        let expected = if id.starts_with("due-expired") {
            (2, Some("dead"))
        } else {
            (1, None)
        };
        assert_eq!((*attempt, previous.as_deref()), expected, "{id}");
    }
    assert!(claim(&mut setup, "worker-c", 30_000, 100).await.is_empty());

    // The claim recorded each owner, and a lease from the database clock.
    let rows = sqlx::query(
        "SELECT id, lease_owner, lease_expires_at - now_ms() AS lease_left, started_at IS NOT NULL AS started
           FROM jobs WHERE status = 'running' AND id LIKE 'due%'",
    )
    .fetch_all(&mut setup)
    .await
    .unwrap();
    assert_eq!(rows.len(), 12);
    for row in rows {
        let (id, owner): (String, String) = (row.get("id"), row.get("lease_owner"));
        let expected = if ids_a.contains(&id) {
            "worker-a"
        } else if ids_b.contains(&id) {
            "worker-b"
        } else {
            "worker-c"
        };
        assert_eq!(owner, expected, "{id}");
        let left: i64 = row.get("lease_left");
        assert!(
            (0..=30_000).contains(&left),
            "{id}: lease ends in {left} ms"
        );
        assert!(row.get::<bool, _>("started"));
    }
}

/// Tries to take `name` for job `job` of `owner`; returns whether it was taken and the
/// database time of the attempt (one transaction: `now_ms()` is the instant the take compared
/// the expiry with).
async fn take(
    conn: &mut PgConnection,
    name: &str,
    job: &str,
    owner: &str,
    ttl_ms: i64,
) -> (bool, i64) {
    let mut tx = conn.begin().await.unwrap();
    let taken = sqlx::query(LOCK_TAKE_SQL)
        .bind(name)
        .bind(job)
        .bind(owner)
        .bind(ttl_ms)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    let now: i64 = sqlx::query_scalar("SELECT now_ms()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (taken == 1, now)
}

/// The `(job_id, owner, expires_at)` of lock `name`.
async fn holder(conn: &mut PgConnection, name: &str) -> (String, String, i64) {
    sqlx::query_as("SELECT job_id, owner, expires_at FROM resource_locks WHERE name = $1")
        .bind(name)
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_lock_is_refused_while_live_and_taken_once_expired() {
    let Some(db) = migrated("a_lock_is_refused_while_live_and_taken_once_expired").await else {
        return;
    };
    let mut conn = db.connect().await;

    // A live lock is refused to any other job, whoever asks; its own job takes it again (a
    // worker that took the job over, from its previous owner).
    let name = "everest-accounts";
    assert!(take(&mut conn, name, "job-a", "worker-1", 60_000).await.0);
    assert!(!take(&mut conn, name, "job-b", "worker-1", 60_000).await.0);
    assert!(!take(&mut conn, name, "job-b", "worker-2", 60_000).await.0);
    assert_eq!(holder(&mut conn, name).await.0, "job-a");
    assert!(take(&mut conn, name, "job-a", "worker-2", 60_000).await.0);
    assert_eq!(
        holder(&mut conn, name).await.1,
        "worker-2",
        "the new owner holds it"
    );

    // A short lock: refused exactly while it is live, taken once it expired.
    let name = "namespace:team-a";
    assert!(take(&mut conn, name, "job-a", "worker-1", 300).await.0);
    let (_, _, expires_at) = holder(&mut conn, name).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match take(&mut conn, name, "job-b", "worker-2", 60_000).await {
            (true, now) => {
                assert!(now >= expires_at, "taken at {now}, live until {expires_at}");
                break;
            }
            (false, now) => assert!(
                now < expires_at,
                "refused at {now}, expired at {expires_at}"
            ),
        }
        assert!(
            Instant::now() < deadline,
            "the expired lock was never taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (job, owner, expires_at) = holder(&mut conn, name).await;
    assert_eq!((job.as_str(), owner.as_str()), ("job-b", "worker-2"));
    // Now live for its new holder: the previous one cannot take it back.
    assert!(!take(&mut conn, name, "job-a", "worker-1", 60_000).await.0);
    assert_eq!(holder(&mut conn, name).await.2, expires_at);
}

#[test]
fn without_postgresql_the_tests_skip_unless_required() {
    let missing = pg::runnable(Path::new("/nonexistent/postgresql/bin"), true).unwrap_err();
    assert!(
        missing.contains("/nonexistent/postgresql/bin/postgres"),
        "{missing}"
    );
    let bin = tempfile::tempdir().unwrap();
    std::fs::write(bin.path().join("postgres"), "").unwrap();
    assert!(
        pg::runnable(bin.path(), false)
            .unwrap_err()
            .contains("not root")
    );
    assert_eq!(pg::runnable(bin.path(), true), Ok(()));
    // Not required: a skip, said on stderr.
    let line = pg::skip_message("some_test", &missing);
    assert!(line.starts_with("SKIPPED some_test: "), "{line}");
    assert!(
        line.contains(&missing) && line.contains("EVERESTCTL_TEST_PG=require"),
        "{line}"
    );
}

#[test]
#[should_panic(expected = "PostgreSQL is required")]
fn with_postgresql_required_a_missing_postgresql_fails() {
    pg::skip_or_fail("a_test", "postgres not found", true);
}
