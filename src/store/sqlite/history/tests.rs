//! The job list against a naive model, ties and cursors; the history snapshot. The helpers are
//! shared with the pruner's tests.

use std::time::Duration;

use super::*;
use crate::domain::JobStatus;
use crate::store::{AttemptEnd, JobEnd, JobRecord, NewJob, StepEnd};

pub(in crate::store::sqlite) async fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite"))
        .await
        .unwrap();
    (store, dir)
}

/// A UUID-shaped id that sorts like `n`.
pub(in crate::store) fn id(n: u32) -> String {
    format!("00000000-0000-7000-8000-{n:012}")
}

pub(in crate::store) fn new_job(id: &str, username: &str, by: &str) -> NewJob {
    NewJob {
        id: id.into(),
        kind: "bootstrap_user".into(),
        inputs: "{}".into(),
        username: Some(username.into()),
        namespace: Some(username.replace('_', "-")),
        steps: vec!["one".into()],
        submitted_by: by.into(),
        request_id: format!("req-{id}"),
        idempotency: None,
        secret: Some(("pw123456".into(), true)),
    }
}

/// Runs the only queued job's single step through the worker API and ends the job with `end`.
pub(in crate::store::sqlite) async fn run_queued(
    s: &SqliteStore,
    stdout: &str,
    end: JobEnd,
) -> String {
    let c = s
        .claim("host:1:w", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("a queued job");
    let a = s
        .start_attempt(&c.lease, 0, "one", "cmd one", None, "doing one")
        .await
        .unwrap()
        .unwrap();
    let attempt = AttemptEnd {
        outcome: crate::domain::AttemptOutcome::Succeeded,
        error_kind: None,
        exit_code: Some(0),
        stdout: stdout.into(),
        stderr: String::new(),
        duration_ms: 3,
    };
    let step = StepEnd::Succeeded { output: None };
    assert!(
        s.finish_attempt(&c.lease, a, &attempt, &step, &end, Duration::from_secs(60))
            .await
            .unwrap()
    );
    c.lease.job_id
}

/// `UPDATE jobs SET <set> WHERE id = <id>`.
pub(in crate::store::sqlite) async fn set(s: &SqliteStore, id: &str, set: &str) {
    let (sql, id) = (
        format!("UPDATE jobs SET {set} WHERE id = ?"),
        id.to_string(),
    );
    let done = s
        .write(move |conn| {
            Ok(crate::store::sqlite::Write::Keep(
                conn.execute(&sql, [&id])?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(done, 1);
}

/// 24 jobs over 4 users, 2 keys and every status, with many ties on `created_at`.
async fn seeded() -> (SqliteStore, tempfile::TempDir, Vec<JobRecord>) {
    let (s, dir) = fresh().await;
    for n in 0..24u32 {
        let user = ["alice", "bob_b", "carol", "dave"][n as usize % 4];
        let by = if n % 3 == 0 { "ci" } else { "ops" };
        s.submit(&new_job(&id(n), user, by)).await.unwrap();
        let status = JobStatus::ALL[n as usize % JobStatus::ALL.len()];
        let kind = if n % 7 == 0 {
            "set_password"
        } else {
            "bootstrap_user"
        };
        let created = 1_000 + i64::from(n / 3) * 10; // three jobs per millisecond
        set(
            &s,
            &id(n),
            &format!("status = '{status}', kind = '{kind}', created_at = {created}"),
        )
        .await;
    }
    let rows: Vec<JobRow> = sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs"))
        .fetch_all(&s.pool)
        .await
        .unwrap();
    let all = rows::records(rows, JobRow::record).unwrap();
    (s, dir, all)
}

fn matches(f: &JobFilter, j: &JobRecord) -> bool {
    let eq =
        |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
    f.status.is_none_or(|w| w == j.status)
        && eq(&f.kind, Some(&j.kind))
        && eq(&f.username, j.username.as_deref())
        && eq(&f.namespace, j.namespace.as_deref())
        && eq(&f.submitted_by, Some(&j.submitted_by))
        && f.created_after.is_none_or(|t| j.created_at >= t)
        && f.created_before.is_none_or(|t| j.created_at < t)
}

/// Every page, following the cursors; bounded.
async fn walk(s: &SqliteStore, f: &JobFilter, limit: u32) -> Vec<String> {
    let (mut ids, mut cursor) = (Vec::new(), None::<Cursor>);
    for _ in 0..100 {
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
                cursor = Some(next);
            }
            None => return ids,
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn every_filter_and_page_size_agrees_with_a_naive_model() {
    let (s, _d, all) = seeded().await;
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
            created_before: Some(1_060),
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
        let mut want: Vec<&JobRecord> = all.iter().filter(|j| matches(f, j)).collect();
        want.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let want: Vec<String> = want.into_iter().map(|j| j.id.clone()).collect();
        for limit in [1, 2, 3, 5, 50] {
            assert_eq!(walk(&s, f, limit).await, want, "{f:?} limit {limit}");
        }
    }
}

#[tokio::test]
async fn a_cursor_combines_with_created_before_either_way() {
    let (s, _d, _) = seeded().await;
    // Page 1 (23, 22, 21 at 1_070, then 20) ends inside millisecond 1_060 (ids 18..=20).
    let first = s.list_jobs(&JobFilter::default(), None, 4).await.unwrap();
    let cursor = first.next.unwrap();
    assert_eq!(
        (cursor.created_at, cursor.id.as_str()),
        (1_060, id(20).as_str())
    );
    let ids = |p: JobPage| p.jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    // created_before later than the cursor: the cursor decides.
    let later = JobFilter {
        created_before: Some(2_000),
        ..Default::default()
    };
    let page = s.list_jobs(&later, Some(&cursor), 3).await.unwrap();
    assert_eq!(ids(page), [id(19), id(18), id(17)]);
    // created_before earlier than the cursor: the bound decides.
    let earlier = JobFilter {
        created_before: Some(1_030),
        ..Default::default()
    };
    let page = s.list_jobs(&earlier, Some(&cursor), 2).await.unwrap();
    assert_eq!(ids(page), [id(8), id(7)]);
}

#[tokio::test]
async fn history_reads_the_job_its_events_and_attempts() {
    let (s, _d) = fresh().await;
    assert!(s.history(&id(1)).await.unwrap().is_none());
    s.submit(&new_job(&id(1), "alice", "ops")).await.unwrap();
    let end = JobEnd::Succeeded {
        summary: "done".into(),
    };
    run_queued(&s, "out", end).await;
    let h = s.history(&id(1)).await.unwrap().unwrap();
    assert_eq!(h.job.status, JobStatus::Succeeded);
    let kinds: Vec<&str> = h.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "submitted",
            "claimed",
            "step_started",
            "step_finished",
            "finished"
        ]
    );
    assert_eq!(
        h.events[3].detail.as_deref(),
        Some("one attempt 1: succeeded (exit code 0)")
    );
    assert_eq!(h.attempts.len(), 1);
    assert_eq!(h.attempts[0].stdout, "out");
}

/// Runs `sql` on the writer, with CHECK constraints off (to store what no state spells).
async fn raw(s: &SqliteStore, sql: &'static str) {
    s.write(move |conn| {
        conn.execute_batch("PRAGMA ignore_check_constraints = ON")?;
        conn.execute_batch(sql)?;
        conn.execute_batch("PRAGMA ignore_check_constraints = OFF")?;
        Ok(crate::store::sqlite::Write::Keep(()))
    })
    .await
    .unwrap();
}

fn corrupt<T: std::fmt::Debug>(read: Result<T>) -> bool {
    matches!(read, Err(StoreError::Corrupt(_)))
}

/// A stored state that no state spells is reported as corrupt by every read, not passed on.
#[tokio::test]
async fn a_stored_state_that_no_state_spells_is_corrupt() {
    let (s, _d) = fresh().await;
    s.submit(&new_job(&id(1), "alice", "ops")).await.unwrap();
    let end = JobEnd::Succeeded {
        summary: "done".into(),
    };
    let job = run_queued(&s, "out", end).await;
    assert!(s.history(&job).await.is_ok());

    raw(&s, "UPDATE step_attempts SET error_kind = 'fatal'").await;
    assert!(corrupt(s.attempts(&job).await));
    assert!(corrupt(s.last_attempts(&job).await));
    assert!(corrupt(s.history(&job).await));
    raw(
        &s,
        "UPDATE step_attempts SET error_kind = NULL, outcome = 'running'",
    )
    .await;
    assert!(corrupt(s.attempts(&job).await));
    raw(&s, "UPDATE step_attempts SET outcome = 'succeeded'").await;
    assert!(s.attempts(&job).await.is_ok());

    raw(&s, "UPDATE job_steps SET status = 'done'").await;
    assert!(corrupt(s.steps(&job).await));
    assert!(corrupt(s.job_with_steps(&job).await));
    raw(&s, "UPDATE job_steps SET status = 'succeeded'").await;

    raw(&s, "UPDATE jobs SET status = 'paused'").await;
    assert!(corrupt(s.job(&job).await));
    assert!(corrupt(s.job_with_steps(&job).await));
    assert!(corrupt(s.history(&job).await));
    assert!(corrupt(s.list_jobs(&JobFilter::default(), None, 10).await));
    assert!(corrupt(s.request_cancel(&job, "ops").await));
}

/// A read or a write after `close` says the store is closed, whichever driver serves it.
#[tokio::test]
async fn a_closed_store_answers_closed() {
    let (s, _d) = fresh().await;
    s.submit(&new_job(&id(1), "alice", "ops")).await.unwrap();
    s.close().await;
    assert!(matches!(s.job(&id(1)).await, Err(StoreError::Closed)));
    assert!(matches!(
        s.submit(&new_job(&id(2), "bob_b", "ops")).await,
        Err(StoreError::Closed)
    ));
}
