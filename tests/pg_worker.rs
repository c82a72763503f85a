//! The worker's side of the PostgreSQL store, through the public `Store`, with two handles on
//! one database standing for two replicas (see `common::pg`; skipped, saying so, where
//! PostgreSQL cannot run): claims never shared and live leases never taken, expired ones taken
//! over with their bookkeeping, fencing of the previous owner, resource locks exclusive across
//! handles, all-or-none attempt starts, the next attempt in the same transaction, a released
//! lock handed to a waiter of its own replica unless another replica asked for it, and
//! notifications that cross handles, also after the listener's connection was terminated.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::pg;
use everestctl_api::domain::{AttemptOutcome, JobStatus, StepStatus};
use everestctl_api::store::postgres::{LISTENER_APPLICATION_NAME, PgOptions};
use everestctl_api::store::{
    AttemptEnd, AttemptEnding, AttemptStart, Claimed, Finished, JobEnd, Lease, RecordedCommand,
    Started, StepEnd, Store, Then,
};
use sqlx::postgres::PgConnection;

const LEASE: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(600);
const ACCOUNTS: &str = "everest-accounts";
const RBAC: &str = "everest-rbac";
const NAMESPACE: &str = "namespace:team-a";
/// How long a notification from the other handle may take.
const DELIVERY: Duration = Duration::from_secs(5);

async fn open(db: &pg::Database) -> Store {
    Store::open_postgres(&db.url, PgOptions { pool_size: 5 })
        .await
        .expect("open the PostgreSQL store")
}

/// Setup only: stores a queued job due now with its pending steps (and its secret), as a
/// submit does; the submit itself is not what this file tests.
async fn insert_job(
    conn: &mut PgConnection,
    id: &str,
    steps: &[&str],
    secret: Option<(&str, bool)>,
) {
    sqlx::query(
        "INSERT INTO jobs (id, kind, status, inputs, username, submitted_by, request_id,
                           created_at, updated_at, run_at)
         VALUES ($1, 'bootstrap_user', 'queued', '{\"username\": \"alice\"}', 'alice', 'ops',
                 'r1', now_ms(), now_ms(), now_ms())",
    )
    .bind(id)
    .execute(&mut *conn)
    .await
    .unwrap();
    for (position, name) in steps.iter().enumerate() {
        sqlx::query(
            "INSERT INTO job_steps (job_id, position, name, status) VALUES ($1, $2, $3, 'pending')",
        )
        .bind(id)
        .bind(position as i64)
        .bind(name)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    if let Some((password, generated)) = secret {
        sqlx::query("INSERT INTO job_secrets (job_id, password, generated) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(password)
            .bind(generated)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

fn start(position: i64, step: &str) -> AttemptStart {
    AttemptStart {
        position,
        step: step.into(),
        command: format!("run {step}"),
        stdin_preview: None,
        summary: format!("doing {step}"),
    }
}

fn ok_attempt() -> AttemptEnd {
    AttemptEnd {
        outcome: AttemptOutcome::Succeeded,
        error_kind: None,
        exit_code: Some(0),
        stdout: "ok".into(),
        stderr: String::new(),
        duration_ms: 5,
    }
}

fn succeeded(id: i64, job: JobEnd) -> AttemptEnding {
    AttemptEnding {
        id,
        attempt: ok_attempt(),
        step: StepEnd::Succeeded { output: None },
        job,
    }
}

fn locks(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Claims through `store` until a job comes (bounded).
async fn claim_when_due(store: &Store, worker: &str) -> Claimed {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(claimed) = store.claim(worker, LEASE).await.unwrap() {
            return claimed;
        }
        assert!(Instant::now() < deadline, "{worker} never claimed a job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn begin(store: &Store, lease: &Lease, start: AttemptStart, names: &[&str]) -> Started {
    store
        .begin_attempt(lease, start, &locks(names), LEASE)
        .await
        .unwrap()
}

/// The events of a job: `(type, attempt, worker, detail)`, oldest first.
async fn events(
    conn: &mut PgConnection,
    id: &str,
) -> Vec<(String, Option<i64>, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT type, attempt, worker, detail FROM job_events WHERE job_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(conn)
    .await
    .unwrap()
}

/// The `at` of the job's events of type `kind`, oldest first.
async fn event_times(conn: &mut PgConnection, id: &str, kind: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT at FROM job_events WHERE job_id = $1 AND type = $2 ORDER BY id")
        .bind(id)
        .bind(kind)
        .fetch_all(conn)
        .await
        .unwrap()
}

/// `(name, job_id)` of every resource lock, by name.
async fn held_locks(conn: &mut PgConnection) -> Vec<(String, String)> {
    sqlx::query_as("SELECT name, job_id FROM resource_locks ORDER BY name")
        .fetch_all(conn)
        .await
        .unwrap()
}

/// Everything stored about a job, as text, to compare before and after; without the columns
/// named in `skip`.
async fn snapshot(conn: &mut PgConnection, id: &str, skip: &[&str]) -> String {
    let mut all = String::new();
    for table in [
        "jobs",
        "job_steps",
        "step_attempts",
        "job_events",
        "job_secrets",
        "resource_locks",
    ] {
        let key = if table == "jobs" { "id" } else { "job_id" };
        let rows: Option<String> = sqlx::query_scalar(&format!(
            "SELECT jsonb_agg(to_jsonb(t) - $2::text[] ORDER BY t::text)::text
               FROM {table} t WHERE {key} = $1"
        ))
        .bind(id)
        .bind(skip)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        all.push_str(&format!("{table}: {}\n", rows.unwrap_or_default()));
    }
    all
}

/// Waits until `count` listeners listen on this database; returns their backend pids.
async fn listeners(conn: &mut PgConnection, count: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = $1
                AND query LIKE 'LISTEN%'",
        )
        .bind(LISTENER_APPLICATION_NAME)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        if pids.len() == count {
            // Its first wake-ups (sent right after `LISTEN`) are behind us.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return pids;
        }
        assert!(
            Instant::now() < deadline,
            "{} listeners instead of {count}",
            pids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until `changes` names `id`.
async fn sees_change(changes: &mut tokio::sync::broadcast::Receiver<String>, id: &str) {
    tokio::time::timeout(DELIVERY, async {
        loop {
            match changes.recv().await {
                Ok(changed) if changed == id => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the change of {id} never arrived"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_across_handles_never_return_the_same_job() {
    let Some(db) = pg::database("concurrent_claims_across_handles_never_return_the_same_job").await
    else {
        return;
    };
    let (a, b) = (open(&db).await, open(&db).await);
    let mut conn = db.connect().await;
    const JOBS: usize = 60;
    for i in 0..JOBS {
        insert_job(&mut conn, &format!("job-{i:03}"), &["create_account"], None).await;
    }
    let claimers: Vec<_> = (0..6)
        .map(|n| {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                // Bounded: a claim that took live leases would go on forever.
                for _ in 0..=JOBS {
                    match store.claim(&format!("worker-{n}"), LEASE).await.unwrap() {
                        Some(c) => claimed.push(c.lease),
                        None => break,
                    }
                }
                claimed
            })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for claimer in claimers {
        for lease in claimer.await.unwrap() {
            assert_eq!(lease.attempt, 1, "{lease:?}");
            assert!(ids.insert(lease.job_id.clone()), "claimed twice: {lease:?}");
        }
    }
    assert_eq!(ids.len(), JOBS);
    let claims: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_events WHERE type = 'claimed'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(claims, JOBS as i64);
    assert_eq!(a.queue_counts().await.unwrap(), (0, JOBS as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_and_the_old_lease_writes_nothing() {
    let Some(db) =
        pg::database("an_expired_lease_is_taken_over_and_the_old_lease_writes_nothing").await
    else {
        return;
    };
    let (a, b) = (open(&db).await, open(&db).await);
    let mut conn = db.connect().await;
    let steps = ["create_account", "add_namespace"];
    insert_job(&mut conn, "job-1", &steps, Some(("pw-123456", true))).await;

    let short = Duration::from_millis(300);
    let first = a
        .claim("worker-a", short)
        .await
        .unwrap()
        .expect("a due job");
    assert_eq!(first.lease.attempt, 1);
    assert!(!first.taken_over && first.left_running.is_empty());
    assert_eq!(first.password.as_deref(), Some("pw-123456"));
    assert_eq!(first.job.status, JobStatus::Running);
    assert_eq!(first.steps.len(), 2);
    // A live lease is never taken; its owner renews it.
    assert!(b.claim("worker-b", LEASE).await.unwrap().is_none());
    assert!(a.renew(&first.lease, short).await.unwrap());
    // The lock outlives the lease: only the lease's expiry frees the job.
    let Started::Attempt(attempt) = begin(&a, &first.lease, start(0, steps[0]), &[ACCOUNTS]).await
    else {
        panic!("the attempt did not start");
    };
    assert!(
        a.record_command(&first.lease, attempt, 4242, 99)
            .await
            .unwrap()
    );
    let expires_at: i64 =
        sqlx::query_scalar("SELECT lease_expires_at FROM jobs WHERE id = 'job-1'")
            .fetch_one(&mut conn)
            .await
            .unwrap();

    let second = claim_when_due(&b, "worker-b").await;
    let claimed_at = *event_times(&mut conn, "job-1", "claimed")
        .await
        .last()
        .unwrap();
    assert!(
        claimed_at >= expires_at,
        "taken over at {claimed_at}, before the lease expired at {expires_at}"
    );
    assert_eq!(second.lease.attempt, 2);
    assert!(second.taken_over);
    assert_eq!(
        second.left_running,
        [RecordedCommand {
            job_id: "job-1".into(),
            worker: "worker-a".into(),
            pid: 4242,
            start_time: 99,
        }]
    );
    assert_eq!(second.password.as_deref(), Some("pw-123456"));
    assert_eq!(second.job.lease_owner.as_deref(), Some("worker-b"));
    // The interrupted attempt's step is pending again.
    assert_eq!(second.steps[0].status, StepStatus::Pending);
    assert_eq!(second.steps[0].attempts, 1);
    let outcome: (Option<String>, Option<String>, bool) = sqlx::query_as(
        "SELECT outcome, error_kind, finished_at IS NOT NULL FROM step_attempts WHERE id = $1",
    )
    .bind(attempt)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        outcome,
        (Some("interrupted".into()), Some("interrupted".into()), true)
    );
    assert!(b.step_may_have_run("job-1", 0, i64::MAX).await.unwrap());
    assert!(!b.step_may_have_run("job-1", 0, attempt).await.unwrap());
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        events(&mut conn, "job-1").await,
        [
            (
                "claimed".into(),
                Some(1),
                some("worker-a"),
                some("claim 1; lease 0.3s")
            ),
            (
                "step_started".into(),
                Some(1),
                some("worker-a"),
                some("create_account attempt 1: run create_account")
            ),
            (
                "lease_expired".into(),
                Some(1),
                some("worker-a"),
                some("lease of worker-a expired; 1 running attempt(s) marked interrupted")
            ),
            (
                "claimed".into(),
                Some(2),
                some("worker-b"),
                some("claim 2, taking over from worker-a; lease 30.0s")
            ),
        ]
    );

    // Fencing: whatever the previous owner writes now changes nothing.
    let before = snapshot(&mut conn, "job-1", &[]).await;
    let old = &first.lease;
    assert!(!a.renew(old, LEASE).await.unwrap());
    assert_eq!(
        begin(&a, old, start(1, steps[1]), &[]).await,
        Started::LeaseLost
    );
    assert!(!a.record_command(old, attempt, 1, 1).await.unwrap());
    let then = Then::Start {
        start: start(1, steps[1]),
        locks: locks(&[RBAC]),
        lock_for: LEASE,
    };
    let ending = succeeded(attempt, JobEnd::Continue);
    assert_eq!(
        a.finish_attempt_then(old, ending, then, TTL).await.unwrap(),
        Finished::LeaseLost
    );
    let end = JobEnd::Succeeded {
        summary: "done".into(),
    };
    let step_end = StepEnd::Succeeded { output: None };
    assert!(
        !a.record_attempt(old, start(1, steps[1]), &ok_attempt(), &step_end, &end, TTL)
            .await
            .unwrap()
    );
    assert!(!a.finish_job(old, &end, TTL).await.unwrap());
    assert_eq!(snapshot(&mut conn, "job-1", &[]).await, before);

    // The new owner holds the job and, being the same job, the lock the previous owner took.
    assert!(b.renew(&second.lease, LEASE).await.unwrap());
    assert!(matches!(
        begin(&b, &second.lease, start(0, steps[0]), &[ACCOUNTS]).await,
        Started::Attempt(_)
    ));
    let owner: String =
        sqlx::query_scalar("SELECT owner FROM resource_locks WHERE name = $1 AND job_id = 'job-1'")
            .bind(ACCOUNTS)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(owner, "worker-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_are_exclusive_across_handles_taken_all_or_none_and_freed_by_expiry() {
    let Some(db) =
        pg::database("locks_are_exclusive_across_handles_taken_all_or_none_and_freed_by_expiry")
            .await
    else {
        return;
    };
    let (a, b) = (open(&db).await, open(&db).await);
    let mut conn = db.connect().await;
    insert_job(
        &mut conn,
        "job-1",
        &["create_account", "set_password"],
        None,
    )
    .await;
    insert_job(&mut conn, "job-2", &["add_namespace"], None).await;
    let x = a.claim("worker-a", LEASE).await.unwrap().unwrap().lease;
    let y = b.claim("worker-b", LEASE).await.unwrap().unwrap().lease;
    assert_eq!((x.job_id.as_str(), y.job_id.as_str()), ("job-1", "job-2"));

    // A holds the accounts lock briefly.
    let short = Duration::from_millis(400);
    let Started::Attempt(x_attempt) = a
        .begin_attempt(&x, start(0, "create_account"), &locks(&[ACCOUNTS]), short)
        .await
        .unwrap()
    else {
        panic!("a free lock was refused");
    };
    let expires_at: i64 =
        sqlx::query_scalar("SELECT expires_at FROM resource_locks WHERE name = $1")
            .bind(ACCOUNTS)
            .fetch_one(&mut conn)
            .await
            .unwrap();

    // B needs it too: refused, and nothing of the start is kept, not even the free lock taken
    // before the busy one.
    // The fence touches `updated_at`; nothing else may change.
    let before = snapshot(&mut conn, "job-2", &["updated_at"]).await;
    let wanted = [NAMESPACE, ACCOUNTS];
    assert_eq!(
        begin(&b, &y, start(0, "add_namespace"), &wanted).await,
        Started::Busy {
            name: ACCOUNTS.into(),
            holder: "job-1".into()
        }
    );
    assert_eq!(snapshot(&mut conn, "job-2", &["updated_at"]).await, before);
    assert_eq!(
        held_locks(&mut conn).await,
        [(ACCOUNTS.into(), "job-1".into())]
    );

    // Once the lock expired (its job's lease has not), B takes both.
    let deadline = Instant::now() + Duration::from_secs(10);
    let y_attempt = loop {
        match begin(&b, &y, start(0, "add_namespace"), &wanted).await {
            Started::Attempt(id) => break id,
            Started::Busy { .. } => {}
            Started::LeaseLost => panic!("lease lost"),
        }
        assert!(
            Instant::now() < deadline,
            "the expired lock was never taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let started_at = event_times(&mut conn, "job-2", "step_started").await[0];
    assert!(
        started_at >= expires_at,
        "taken at {started_at}, live until {expires_at}"
    );
    assert_eq!(
        held_locks(&mut conn).await,
        [
            (ACCOUNTS.into(), "job-2".into()),
            (NAMESPACE.into(), "job-2".into())
        ]
    );

    // A, whose lease is live, cannot take it back for its next step; its step's end is kept.
    let then = Then::Start {
        start: start(1, "set_password"),
        locks: locks(&[ACCOUNTS]),
        lock_for: LEASE,
    };
    assert_eq!(
        a.finish_attempt_then(&x, succeeded(x_attempt, JobEnd::Continue), then, TTL)
            .await
            .unwrap(),
        Finished::Busy {
            name: ACCOUNTS.into(),
            holder: "job-2".into()
        }
    );
    let steps: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, attempts FROM job_steps WHERE job_id = 'job-1' ORDER BY position",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        steps,
        [("succeeded".into(), 1), ("pending".into(), 0)],
        "the next step did not start"
    );

    // A renewal extends the job's locks with its lease, on the database clock.
    assert!(b.renew(&y, Duration::from_secs(60)).await.unwrap());
    let left: Vec<i64> = sqlx::query_scalar(
        "SELECT expires_at - now_ms() FROM resource_locks WHERE job_id = 'job-2'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(left.len(), 2);
    assert!(
        left.iter().all(|l| (50_000..=60_000).contains(l)),
        "{left:?}"
    );

    // Released, the lock is A's at once.
    let _ = y_attempt;
    b.unlock_all(&y).await.unwrap();
    assert!(held_locks(&mut conn).await.is_empty());
    assert!(matches!(
        begin(&a, &x, start(1, "set_password"), &[ACCOUNTS]).await,
        Started::Attempt(_)
    ));
}

#[tokio::test]
async fn finish_attempt_then_starts_or_records_the_next_attempt_in_the_same_transaction() {
    let Some(db) = pg::database(
        "finish_attempt_then_starts_or_records_the_next_attempt_in_the_same_transaction",
    )
    .await
    else {
        return;
    };
    let a = open(&db).await;
    let mut conn = db.connect().await;
    let steps = ["create_account", "apply_rbac_policy", "set_password"];
    insert_job(&mut conn, "job-1", &steps, Some(("chosen-pw", false))).await;
    let lease = a.claim("worker-a", LEASE).await.unwrap().unwrap().lease;
    let Started::Attempt(first) = begin(&a, &lease, start(0, steps[0]), &[ACCOUNTS]).await else {
        panic!("the first attempt did not start");
    };

    // The end of one attempt and the start of the next, with its lock: one transaction.
    let ending = AttemptEnding {
        id: first,
        attempt: ok_attempt(),
        step: StepEnd::Succeeded {
            output: Some(r#"{"existed": false}"#.into()),
        },
        job: JobEnd::Continue,
    };
    let then = Then::Start {
        start: start(1, steps[1]),
        locks: locks(&[RBAC]),
        lock_for: LEASE,
    };
    let Finished::Started(second) = a
        .finish_attempt_then(&lease, ending, then, TTL)
        .await
        .unwrap()
    else {
        panic!("the next attempt did not start");
    };
    assert!(second > first);
    assert_eq!(held_locks(&mut conn).await, [(RBAC.into(), "job-1".into())]);
    let finished = event_times(&mut conn, "job-1", "step_finished").await;
    let started = event_times(&mut conn, "job-1", "step_started").await;
    assert_eq!(
        finished[0], started[1],
        "the end and the next start were not one transaction"
    );
    let (job, job_steps) = {
        let rows: Vec<(String, i64, Option<String>, bool)> = sqlx::query_as(
            "SELECT status, attempts, output::text, finished_at IS NOT NULL FROM job_steps
              WHERE job_id = 'job-1' ORDER BY position",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let job: (String, Option<String>, Option<String>) =
            sqlx::query_as("SELECT status, current_step, summary FROM jobs WHERE id = 'job-1'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        (job, rows)
    };
    assert_eq!(
        job,
        (
            "running".into(),
            Some(steps[1].into()),
            Some("doing apply_rbac_policy".into())
        )
    );
    assert_eq!(
        job_steps,
        [
            (
                "succeeded".into(),
                1,
                Some(r#"{"existed": false}"#.into()),
                true
            ),
            ("running".into(), 1, None, false),
            ("pending".into(), 0, None, false),
        ]
    );

    // The end of the second and a whole third attempt that runs nothing, ending the job.
    let then = Then::Record {
        start: start(2, steps[2]),
        ending: Box::new((
            ok_attempt(),
            StepEnd::Succeeded { output: None },
            JobEnd::Succeeded {
                summary: "alice is ready".into(),
            },
        )),
    };
    assert_eq!(
        a.finish_attempt_then(&lease, succeeded(second, JobEnd::Continue), then, TTL)
            .await
            .unwrap(),
        Finished::Recorded
    );
    let job: (String, Option<String>, Option<String>, bool, bool) = sqlx::query_as(
        "SELECT status, current_step, lease_owner, finished_at IS NOT NULL,
                lease_expires_at IS NULL FROM jobs WHERE id = 'job-1'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(job, ("succeeded".into(), None, None, true, true));
    assert!(held_locks(&mut conn).await.is_empty());
    // A password the client chose is gone once the job succeeded; the expiry is set.
    let secret: (Option<String>, bool) = sqlx::query_as(
        "SELECT password, expires_at > now_ms() FROM job_secrets WHERE job_id = 'job-1'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(secret, (None, true));
    let kinds: Vec<String> = events(&mut conn, "job-1")
        .await
        .into_iter()
        .map(|(kind, ..)| kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "claimed",
            "step_started",
            "step_finished",
            "step_started",
            "step_finished",
            "step_started",
            "step_finished",
            "finished"
        ]
    );
    let last = events(&mut conn, "job-1").await.pop().unwrap();
    assert_eq!(last.3.as_deref(), Some("succeeded: alice is ready"));
    // Nothing more happens after the job's end.
    assert!(!a.renew(&lease, LEASE).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_cross_handles() {
    let Some(db) = pg::database("notifications_cross_handles").await else {
        return;
    };
    let (a, b) = (open(&db).await, open(&db).await);
    let c = open(&db).await;
    let mut conn = db.connect().await;
    listeners(&mut conn, 3).await;
    insert_job(&mut conn, "job-1", &["create_account"], None).await;
    insert_job(&mut conn, "job-2", &["create_account"], None).await;

    // A change made through B reaches A's subscribers.
    let mut changes = a.subscribe();
    let lease = b.claim("worker-b", LEASE).await.unwrap().unwrap().lease;
    sees_change(&mut changes, &lease.job_id).await;

    // A lock released through B wakes A's lock waiters, and only then.
    let released = a.locks_released().notified();
    tokio::pin!(released);
    released.as_mut().enable();
    let Started::Attempt(id) = begin(&b, &lease, start(0, "create_account"), &[ACCOUNTS]).await
    else {
        panic!("the attempt did not start");
    };
    sees_change(&mut changes, &lease.job_id).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), released.as_mut())
            .await
            .is_err(),
        "woken before any release"
    );
    let end = JobEnd::Failed {
        error: r#"{"step": "create_account", "kind": "permanent", "detail": "no"}"#.into(),
        summary: "failed".into(),
    };
    let ending = AttemptEnding {
        id,
        attempt: AttemptEnd {
            outcome: AttemptOutcome::Failed,
            ..ok_attempt()
        },
        step: StepEnd::Failed,
        job: end,
    };
    assert_eq!(
        b.finish_attempt_then(&lease, ending, Then::Nothing, TTL)
            .await
            .unwrap(),
        Finished::Ended
    );
    tokio::time::timeout(DELIVERY, released)
        .await
        .expect("the release through B never woke A");
    sees_change(&mut changes, &lease.job_id).await;

    // A job B puts back in the queue wakes the idle workers of the others.
    let second = b.claim("worker-b", LEASE).await.unwrap().unwrap().lease;
    // A wake-up left from the listener's start is not the one this waits for.
    let _ = tokio::time::timeout(Duration::from_millis(100), c.job_queued().notified()).await;
    let retry = JobEnd::Retry {
        delay: Duration::from_secs(1),
        reason: "the cluster is busy".into(),
    };
    assert!(b.finish_job(&second, &retry, TTL).await.unwrap());
    tokio::time::timeout(DELIVERY, c.job_queued().notified())
        .await
        .expect("the requeue through B never woke C's worker");
    sees_change(&mut changes, &second.job_id).await;
    let retry_event: (Option<i64>, Option<i64>, i64) = sqlx::query_as(
        "SELECT e.delay_ms, e.retry_at - j.run_at, j.run_at - e.at FROM job_events e
           JOIN jobs j ON j.id = e.job_id WHERE e.type = 'retry_scheduled'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(retry_event, (Some(1000), Some(0), 1000));
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_after_its_connection_is_terminated() {
    let Some(db) = pg::database("the_listener_reconnects_after_its_connection_is_terminated").await
    else {
        return;
    };
    let (a, b) = (open(&db).await, open(&db).await);
    let mut conn = db.connect().await;
    let before: BTreeSet<i32> = listeners(&mut conn, 2).await.into_iter().collect();
    insert_job(&mut conn, "job-1", &["create_account"], None).await;

    let missed = a.locks_released().notified();
    tokio::pin!(missed);
    missed.as_mut().enable();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(terminated, [true, true]);
    // What was sent meanwhile may be lost: lock waiters are woken to look again.
    tokio::time::timeout(DELIVERY, missed)
        .await
        .expect("lock waiters were not woken after the listener lost its connection");
    let after: BTreeSet<i32> = listeners(&mut conn, 2).await.into_iter().collect();
    assert!(after.is_disjoint(&before), "{before:?} {after:?}");

    // Later notifications arrive again.
    let mut changes = a.subscribe();
    let lease = b.claim("worker-b", LEASE).await.unwrap().unwrap().lease;
    sees_change(&mut changes, &lease.job_id).await;
    let released = a.locks_released().notified();
    tokio::pin!(released);
    released.as_mut().enable();
    assert!(matches!(
        begin(&b, &lease, start(0, "create_account"), &[ACCOUNTS]).await,
        Started::Attempt(_)
    ));
    b.unlock_all(&lease).await.unwrap();
    tokio::time::timeout(DELIVERY, released)
        .await
        .expect("the release through B never woke A after the reconnection");
}

#[tokio::test]
async fn next_due_is_on_this_process_clock_and_counts_are_per_status() {
    let Some(db) =
        pg::database("next_due_is_on_this_process_clock_and_counts_are_per_status").await
    else {
        return;
    };
    let a = open(&db).await;
    let mut conn = db.connect().await;
    assert_eq!(a.next_due().await.unwrap(), None);
    assert_eq!(a.queue_counts().await.unwrap(), (0, 0));
    insert_job(&mut conn, "job-1", &["create_account"], None).await;
    insert_job(&mut conn, "job-2", &["create_account"], None).await;
    sqlx::query("UPDATE jobs SET run_at = now_ms() + 60000 WHERE id = 'job-2'")
        .execute(&mut conn)
        .await
        .unwrap();
    let lease = a.claim("worker-a", LEASE).await.unwrap().unwrap().lease;
    assert_eq!(lease.job_id, "job-1");
    assert_eq!(a.queue_counts().await.unwrap(), (1, 1));
    // The lease, due in 30 s, comes before the queued job, due in 60 s.
    let due = a.next_due().await.unwrap().expect("something is due");
    let from_now = due - everestctl_api::store::now_ms();
    assert!((28_000..=30_000).contains(&from_now), "{from_now}");
    assert!(a.claim("worker-a", LEASE).await.unwrap().is_none());
}

#[tokio::test]
async fn a_lock_goes_to_a_waiter_of_its_own_replica_unless_another_replica_asked_for_it() {
    let Some(db) = pg::database("a_lock_goes_to_a_waiter_of_its_own_replica").await else {
        return;
    };
    let (a, b) = (open(&db).await, open(&db).await);
    let mut conn = db.connect().await;
    for id in ["job-1", "job-2", "job-3", "job-4"] {
        insert_job(&mut conn, id, &["create_account", "set_password"], None).await;
    }
    let one = claim_when_due(&a, "worker-a").await.lease;
    let two = claim_when_due(&a, "worker-a").await.lease;
    let three = claim_when_due(&b, "worker-b").await.lease;
    let four = claim_when_due(&a, "worker-a").await.lease;
    let accounts = locks(&[ACCOUNTS]);
    let Started::Attempt(first) = begin(&a, &one, start(0, "create_account"), &[ACCOUNTS]).await
    else {
        panic!("a free lock was refused");
    };

    // A waiter of the holder's own replica is started by the holder's end, in its commit.
    assert!(matches!(
        begin(&a, &two, start(0, "create_account"), &[ACCOUNTS]).await,
        Started::Busy { .. }
    ));
    let parked = a.park(&two, start(0, "create_account"), &accounts, LEASE);
    let finished = a
        .finish_attempt_then(&one, succeeded(first, JobEnd::Continue), Then::Nothing, TTL)
        .await
        .unwrap();
    assert_eq!(finished, Finished::Ended);
    let second = tokio::time::timeout(DELIVERY, parked.started)
        .await
        .expect("told at the commit")
        .expect("the waiter's attempt was started");
    assert_eq!(a.handed_off(&two, 0).await.unwrap(), Some(second));
    assert_eq!(
        held_locks(&mut conn).await,
        [(ACCOUNTS.to_string(), two.job_id.clone())]
    );

    // Replica B is refused while job-2 holds the lock, and says it waits: job-2's end then
    // leaves the lock free for all instead of handing it to A's own waiter.
    assert!(matches!(
        begin(&b, &three, start(0, "create_account"), &[ACCOUNTS]).await,
        Started::Busy { .. }
    ));
    assert!(matches!(
        begin(&a, &four, start(0, "create_account"), &[ACCOUNTS]).await,
        Started::Busy { .. }
    ));
    let mut local = a.park(&four, start(0, "create_account"), &accounts, LEASE);
    let finished = a
        .finish_attempt_then(
            &two,
            succeeded(second, JobEnd::Continue),
            Then::Nothing,
            TTL,
        )
        .await
        .unwrap();
    assert_eq!(finished, Finished::Ended);
    assert!(held_locks(&mut conn).await.is_empty(), "the lock is free");
    assert!(
        local.started.try_recv().is_err(),
        "nothing was started for A's waiter"
    );
    assert!(a.unpark(&local), "A's waiter is still parked");
    assert_eq!(a.handed_off(&four, 0).await.unwrap(), None);
    assert!(matches!(
        begin(&b, &three, start(0, "create_account"), &[ACCOUNTS]).await,
        Started::Attempt(_)
    ));
}
