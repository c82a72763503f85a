use std::time::Duration;

use super::*;
use crate::domain::{AttemptOutcome, ErrorKind, JobStatus, StepStatus};

async fn store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("nested/db.sqlite"))
        .await
        .unwrap();
    (store, dir)
}

fn job(id: &str, key: Option<(&str, &str)>) -> NewJob {
    NewJob {
        id: id.into(),
        kind: "bootstrap_user".into(),
        inputs: "{}".into(),
        username: Some("alice".into()),
        namespace: Some("alice".into()),
        steps: vec!["one".into(), "two".into()],
        submitted_by: "ops".into(),
        request_id: "r1".into(),
        idempotency: key.map(|(k, h)| (k.into(), h.into())),
        secret: Some(("pw123456".into(), true)),
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

/// The one-statement read of the status poll returns what the separate reads return.
async fn assert_same_view(s: &SqliteStore, id: &str) {
    let (job, steps) = s.job_with_steps(id).await.unwrap().unwrap();
    assert_eq!(
        format!("{job:?}"),
        format!("{:?}", s.job(id).await.unwrap().unwrap())
    );
    assert_eq!(
        format!("{steps:?}"),
        format!("{:?}", s.steps(id).await.unwrap())
    );
}

fn attempt_start(position: i64, step: &str) -> AttemptStart {
    AttemptStart {
        position,
        step: step.into(),
        command: format!("run {step}"),
        stdin_preview: None,
        summary: step.into(),
    }
}

#[tokio::test]
async fn submit_and_idempotency() {
    let (s, _d) = store().await;
    assert_eq!(
        s.submit(&job("j1", Some(("k", "h1")))).await.unwrap(),
        Submitted::Created("j1".into())
    );
    assert_eq!(
        s.submit(&job("j2", Some(("k", "h1")))).await.unwrap(),
        Submitted::Replayed("j1".into())
    );
    assert_eq!(
        s.submit(&job("j3", Some(("k", "h2")))).await.unwrap(),
        Submitted::Conflict("j1".into())
    );
    assert!(s.job("j2").await.unwrap().is_none());
    let j = s.job("j1").await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Queued);
    assert_eq!(s.steps("j1").await.unwrap().len(), 2);
    assert_eq!(s.events("j1").await.unwrap()[0].kind, "submitted");
}

#[tokio::test]
async fn claim_run_and_finish_with_fencing() {
    let (s, _d) = store().await;
    s.submit(&job("j1", None)).await.unwrap();
    let c = s
        .claim("w1", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.password.as_deref(), Some("pw123456"));
    assert!(
        s.claim("w2", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "held jobs are not claimed twice"
    );
    let a = s
        .start_attempt(&c.lease, 0, "one", "cmd", None, "doing one")
        .await
        .unwrap()
        .unwrap();
    let stale = Lease {
        attempt: c.lease.attempt - 1,
        ..c.lease.clone()
    };
    assert!(
        !s.finish_attempt(
            &stale,
            a,
            &ok_attempt(),
            &StepEnd::Succeeded { output: None },
            &JobEnd::Continue,
            Duration::from_secs(60)
        )
        .await
        .unwrap()
    );
    assert!(
        s.finish_attempt(
            &c.lease,
            a,
            &ok_attempt(),
            &StepEnd::Succeeded { output: None },
            &JobEnd::Continue,
            Duration::from_secs(60)
        )
        .await
        .unwrap()
    );
    assert_same_view(&s, "j1").await;
    assert!(s.job_with_steps("nope").await.unwrap().is_none());
    let a2 = s
        .start_attempt(&c.lease, 1, "two", "cmd2", None, "doing two")
        .await
        .unwrap()
        .unwrap();
    let end = JobEnd::Succeeded {
        summary: "done".into(),
    };
    assert!(
        s.finish_attempt(
            &c.lease,
            a2,
            &ok_attempt(),
            &StepEnd::Succeeded {
                output: Some("{\"x\":\"a \\\"quoted\\\" é\\n\"}".into())
            },
            &end,
            Duration::from_secs(60)
        )
        .await
        .unwrap()
    );
    let j = s.job("j1").await.unwrap().unwrap();
    assert_eq!(
        (j.status, j.summary.as_deref()),
        (JobStatus::Succeeded, Some("done"))
    );
    assert_same_view(&s, "j1").await;
    assert!(
        !s.renew(&c.lease, Duration::from_secs(30)).await.unwrap(),
        "a finished job has no lease"
    );
    let steps = s.steps("j1").await.unwrap();
    assert!(
        steps
            .iter()
            .all(|st| st.status == StepStatus::Succeeded && st.attempts == 1)
    );
    assert_eq!(s.last_attempts("j1").await.unwrap().len(), 2);
    let secret = s.secret("j1").await.unwrap().unwrap();
    assert_eq!(secret.password.as_deref(), Some("pw123456"));
    assert!(secret.expires_at.is_some());
}

#[tokio::test]
async fn expired_lease_is_taken_over_and_the_old_owner_is_fenced_out() {
    let (s, _d) = store().await;
    s.submit(&job("j1", None)).await.unwrap();
    let c = s
        .claim("w1", Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    let a = s
        .start_attempt(&c.lease, 0, "one", "cmd", None, "x")
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let c2 = s
        .claim("w2", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c2.lease.attempt, c.lease.attempt + 1);
    assert!(!s.renew(&c.lease, Duration::from_secs(30)).await.unwrap());
    assert!(
        !s.finish_attempt(
            &c.lease,
            a,
            &ok_attempt(),
            &StepEnd::Succeeded { output: None },
            &JobEnd::Continue,
            Duration::ZERO
        )
        .await
        .unwrap()
    );
    let attempts = s.attempts("j1").await.unwrap();
    assert_eq!(attempts[0].outcome, AttemptOutcome::Interrupted);
    assert_eq!(s.steps("j1").await.unwrap()[0].status, StepStatus::Pending);
    let kinds: Vec<_> = s
        .events("j1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "submitted",
            "claimed",
            "step_started",
            "lease_expired",
            "claimed"
        ]
    );
}

#[tokio::test]
async fn startup_recovery_requeues_this_hosts_jobs_only() {
    let (s, _d) = store().await;
    s.submit(&job("j1", None)).await.unwrap();
    s.submit(&job("j2", None)).await.unwrap();
    let c1 = s
        .claim("hostA:1:x", Duration::from_secs(300))
        .await
        .unwrap()
        .unwrap();
    let c2 = s
        .claim("hostB:1:x", Duration::from_secs(300))
        .await
        .unwrap()
        .unwrap();
    s.start_attempt(&c1.lease, 0, "one", "cmd", None, "x")
        .await
        .unwrap()
        .unwrap();
    let rec = s.recover_host("hostA:", "hostA:2:y").await.unwrap();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].job_id, c1.lease.job_id);
    assert_eq!(
        s.job(&c1.lease.job_id).await.unwrap().unwrap().status,
        JobStatus::Queued
    );
    assert_eq!(
        s.job(&c2.lease.job_id).await.unwrap().unwrap().status,
        JobStatus::Running
    );
    assert_eq!(
        s.attempts(&c1.lease.job_id).await.unwrap()[0].outcome,
        AttemptOutcome::Interrupted
    );
    let again = s
        .claim("hostA:2:y", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.lease.job_id, c1.lease.job_id);
}

#[tokio::test]
async fn retry_is_scheduled_and_failure_skips_the_rest() {
    let (s, _d) = store().await;
    s.submit(&job("j1", None)).await.unwrap();
    let c = s
        .claim("w", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let a = s
        .start_attempt(&c.lease, 0, "one", "cmd", None, "x")
        .await
        .unwrap()
        .unwrap();
    let failed = AttemptEnd {
        outcome: AttemptOutcome::Failed,
        error_kind: Some(ErrorKind::Transient),
        exit_code: Some(1),
        ..ok_attempt()
    };
    let retry = JobEnd::Retry {
        delay: Duration::from_secs(60),
        reason: "connection refused".into(),
    };
    assert!(
        s.finish_attempt(
            &c.lease,
            a,
            &failed,
            &StepEnd::Pending { counted: true },
            &retry,
            Duration::ZERO
        )
        .await
        .unwrap()
    );
    let j = s.job("j1").await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Queued);
    assert!(j.run_at > now_ms() + 50_000);
    assert!(
        s.claim("w", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "not due yet"
    );
    assert!(s.step_may_have_run("j1", 0, i64::MAX).await.unwrap());
    assert_eq!(s.next_due().await.unwrap(), Some(j.run_at));
}

#[tokio::test]
async fn a_stale_lease_cannot_release_the_locks_of_whoever_took_its_job_over() {
    let (s, _d) = store().await;
    s.submit(&job("j1", None)).await.unwrap();
    let locks = vec!["everest-accounts".to_string()];
    let old = s
        .claim("w1", Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let new = s
        .claim("w2", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let started = s
        .begin_attempt(
            &new.lease,
            attempt_start(0, "one"),
            &locks,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(matches!(started, Started::Attempt(_)), "{started:?}");
    let held = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM resource_locks WHERE job_id = 'j1'")
            .fetch_one(&s.pool)
            .await
            .unwrap()
    };
    // The old worker cleaning up after a store error changes nothing.
    s.unlock_all(&old.lease).await.unwrap();
    assert_eq!(held().await, 1);
    s.unlock_all(&new.lease).await.unwrap();
    assert_eq!(held().await, 0);
}

#[tokio::test]
async fn an_attempt_starts_with_all_its_locks_or_not_at_all() {
    let (s, _d) = store().await;
    s.submit(&job("a", None)).await.unwrap();
    s.submit(&job("b", None)).await.unwrap();
    let lease = Duration::from_secs(30);
    let a = s.claim("w1", lease).await.unwrap().unwrap();
    let b = s.claim("w2", lease).await.unwrap().unwrap();
    let start = |step: &str| attempt_start(0, step);
    let names = |v: &[&str]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let locks_of = |s: &SqliteStore, job: &str| {
        let (s, job) = (s.clone(), job.to_string());
        async move {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM resource_locks WHERE job_id = ? ORDER BY name",
            )
            .bind(job)
            .fetch_all(&s.pool)
            .await
            .unwrap();
            names
        }
    };
    let first = s
        .begin_attempt(&a.lease, start("one"), &names(&["x", "y"]), lease)
        .await
        .unwrap();
    let Started::Attempt(attempt) = first else {
        panic!("{first:?}")
    };
    // `free` is taken first, then `x` is found busy: `free` is not kept, nothing is recorded.
    let busy = s
        .begin_attempt(&b.lease, start("one"), &names(&["free", "x"]), lease)
        .await
        .unwrap();
    assert_eq!(
        busy,
        Started::Busy {
            name: "x".into(),
            holder: a.lease.job_id.clone()
        }
    );
    assert!(locks_of(&s, &b.lease.job_id).await.is_empty());
    assert!(s.attempts(&b.lease.job_id).await.unwrap().is_empty());
    // A waiter that listened before its refusal hears of the release.
    let released = s.notifier().released().notified();
    tokio::pin!(released);
    released.as_mut().enable();
    assert!(
        s.finish_attempt(
            &a.lease,
            attempt,
            &ok_attempt(),
            &StepEnd::Succeeded { output: None },
            &JobEnd::Continue,
            lease,
        )
        .await
        .unwrap()
    );
    tokio::time::timeout(Duration::from_secs(10), released)
        .await
        .expect("the release was announced");
    // Ending the attempt released its locks in the same transaction.
    assert!(locks_of(&s, &a.lease.job_id).await.is_empty());
    let again = s
        .begin_attempt(&b.lease, start("one"), &names(&["free", "x"]), lease)
        .await
        .unwrap();
    assert!(matches!(again, Started::Attempt(_)), "{again:?}");
    assert_eq!(locks_of(&s, &b.lease.job_id).await, names(&["free", "x"]));
    let stale = Lease {
        attempt: b.lease.attempt + 1,
        ..b.lease.clone()
    };
    assert_eq!(
        s.begin_attempt(&stale, start("two"), &[], lease)
            .await
            .unwrap(),
        Started::LeaseLost
    );
}

#[tokio::test]
async fn an_attempt_end_carries_the_next_start_or_record() {
    let (s, _d) = store().await;
    s.submit(&job("a", None)).await.unwrap();
    s.submit(&job("b", None)).await.unwrap();
    let lease = Duration::from_secs(30);
    let a = s.claim("w1", lease).await.unwrap().unwrap();
    let b = s.claim("w2", lease).await.unwrap().unwrap();
    let start = attempt_start;
    let ending = |id: i64, job: JobEnd| AttemptEnding {
        id,
        attempt: ok_attempt(),
        step: StepEnd::Succeeded { output: None },
        job,
    };
    let held = vec!["x".to_string()];
    let Started::Attempt(b0) = s
        .begin_attempt(&b.lease, start(0, "one"), &held, lease)
        .await
        .unwrap()
    else {
        panic!("b takes x")
    };
    let Started::Attempt(a0) = s
        .begin_attempt(&a.lease, start(0, "one"), &[], lease)
        .await
        .unwrap()
    else {
        panic!("a starts")
    };
    // The next step needs `free` and `x`: x is busy, so the end is recorded and nothing else.
    let then = Then::Start {
        start: start(1, "two"),
        locks: vec!["free".into(), "x".into()],
        lock_for: lease,
    };
    let finished = s
        .finish_attempt_then(&a.lease, ending(a0, JobEnd::Continue), then, lease)
        .await
        .unwrap();
    assert_eq!(
        finished,
        Finished::Busy {
            name: "x".into(),
            holder: b.lease.job_id.clone()
        }
    );
    let attempts = s.attempts(&a.lease.job_id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, AttemptOutcome::Succeeded);
    let free_holder: Option<String> =
        sqlx::query_scalar("SELECT job_id FROM resource_locks WHERE name = 'free'")
            .fetch_optional(&s.pool)
            .await
            .unwrap();
    assert_eq!(free_holder, None, "no lock of a step that did not start");
    // b's end releases x and starts b's next step with it.
    let then = Then::Start {
        start: start(1, "two"),
        locks: held.clone(),
        lock_for: lease,
    };
    let Finished::Started(b1) = s
        .finish_attempt_then(&b.lease, ending(b0, JobEnd::Continue), then, lease)
        .await
        .unwrap()
    else {
        panic!("b's next step starts")
    };
    let steps = s.steps(&b.lease.job_id).await.unwrap();
    assert_eq!(
        (steps[0].status, steps[1].status),
        (StepStatus::Succeeded, StepStatus::Running)
    );
    let finished = s
        .finish_attempt_then(
            &b.lease,
            ending(
                b1,
                JobEnd::Succeeded {
                    summary: "done".into(),
                },
            ),
            Then::Nothing,
            lease,
        )
        .await
        .unwrap();
    assert_eq!(finished, Finished::Ended);
    assert_eq!(
        s.job(&b.lease.job_id).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
    // A next step that runs nothing is recorded whole with the end of the previous one, and
    // here ends the job.
    let record = Then::Record {
        start: start(1, "two"),
        ending: Box::new((
            ok_attempt(),
            StepEnd::Succeeded { output: None },
            JobEnd::Succeeded {
                summary: "all done".into(),
            },
        )),
    };
    s.submit(&job("c", None)).await.unwrap();
    let c = s.claim("w3", lease).await.unwrap().unwrap();
    let Started::Attempt(c0) = s
        .begin_attempt(&c.lease, start(0, "one"), &[], lease)
        .await
        .unwrap()
    else {
        panic!("c starts")
    };
    let finished = s
        .finish_attempt_then(&c.lease, ending(c0, JobEnd::Continue), record, lease)
        .await
        .unwrap();
    assert_eq!(finished, Finished::Recorded);
    let job_c = s.job(&c.lease.job_id).await.unwrap().unwrap();
    assert_eq!(
        (job_c.status, job_c.summary.as_deref()),
        (JobStatus::Succeeded, Some("all done"))
    );
    let attempts = s.attempts(&c.lease.job_id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts
            .iter()
            .all(|at| at.outcome == AttemptOutcome::Succeeded)
    );
}

#[tokio::test]
async fn a_recorded_command_is_handed_to_whoever_takes_its_job_over() {
    let (s, _d) = store().await;
    s.submit(&job("j1", None)).await.unwrap();
    s.submit(&job("j2", None)).await.unwrap();
    let c1 = s
        .claim("hostA:1:x", Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    let a1 = s
        .start_attempt(&c1.lease, 0, "one", "cmd", None, "x")
        .await
        .unwrap()
        .unwrap();
    assert!(s.record_command(&c1.lease, a1, 4242, 777).await.unwrap());
    // A later command of the same attempt replaces the first.
    assert!(s.record_command(&c1.lease, a1, 4343, 888).await.unwrap());
    let c2 = s
        .claim("hostA:1:x", Duration::from_secs(300))
        .await
        .unwrap()
        .unwrap();
    let a2 = s
        .start_attempt(&c2.lease, 0, "one", "cmd", None, "x")
        .await
        .unwrap()
        .unwrap();
    assert!(s.record_command(&c2.lease, a2, 5151, 999).await.unwrap());
    let expected = |job_id: &str, pid, start_time| RecordedCommand {
        job_id: job_id.into(),
        worker: "hostA:1:x".into(),
        pid,
        start_time,
    };
    // Startup recovery of this host: every unfinished attempt's command, before the requeue.
    let mut left = s
        .commands_left_by_host("hostA:", "hostA:2:y")
        .await
        .unwrap();
    left.sort_by_key(|c| c.pid);
    assert_eq!(left, [expected("j1", 4343, 888), expected("j2", 5151, 999)]);
    assert!(
        s.commands_left_by_host("hostB:", "hostB:2:y")
            .await
            .unwrap()
            .is_empty()
    );
    // Lease expiry: the new owner of j1 gets its command; a claim of a fresh job gets none.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = s
        .claim("hostA:2:y", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(taken.taken_over);
    assert_eq!(taken.left_running, [expected("j1", 4343, 888)]);
    // A lost lease records nothing.
    assert!(!s.record_command(&c1.lease, a1, 1, 1).await.unwrap());
}

/// Applied migrations keep their versions and checksums whatever folder they are embedded from:
/// sqlx refuses to open a database whose recorded checksum differs from the embedded one. These
/// are the checksums (SHA-384 of the file) that databases made by earlier versions hold.
#[tokio::test]
async fn applied_migrations_keep_their_versions_and_checksums() {
    let (s, _d) = store().await;
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, hex(checksum) FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&s.pool)
            .await
            .unwrap();
    let earlier = [
        "21A0B71A909B37FCDF7C8EB290A97C74D3CF487B92771B8182776DDC847AD8B3C50517893A992C691EB595F36F1E17BD",
        "9296F80948F6015C2F0F327702A770D8EAA10BF7EFF552304CC0389A2BAB203A92EC63AA536265C351AD04F6D6C8B8B3",
        "80A0DEB8B486BE428176EE4F5A08D20645133F47215A69BFC9374164EA74C7896C7F0426AD7A0ADB99E3DAB7BCE6B900",
        "8604FEA39DFF511C67C7C250A97E0ECC50F1F719E59D79A9751C7EB83540324404AD330999B9D45FD982EDAB98BDCA08",
        "D93EC750877F2F977AF0264812FBF86758D92D97CFD5DFB48CA985F80E26E8310E59B69C6AC69B3F5031FAA08E72A983",
        "23E787E3AC43E8BA95BDF23B8D1DBCD9D5102FE916B0DBC9F761B3FE3AF42620BE139D688D51703EAE25BE020138AEEC",
    ];
    for (n, checksum) in earlier.iter().enumerate() {
        let version = i64::try_from(n).unwrap() + 1;
        assert_eq!(
            applied.get(n),
            Some(&(version, checksum.to_string())),
            "migration {version}"
        );
    }
}

/// Ends attempt `id` of `lease` as succeeded, its job going on.
async fn end_step(s: &SqliteStore, lease: &Lease, id: i64) {
    let ending = AttemptEnding {
        id,
        attempt: ok_attempt(),
        step: StepEnd::Succeeded { output: None },
        job: JobEnd::Continue,
    };
    let finished = s
        .finish_attempt_then(lease, ending, Then::Nothing, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(finished, Finished::Ended);
}

#[tokio::test]
async fn a_released_lock_starts_the_parked_waiter_in_the_same_commit() {
    let (s, _d) = store().await;
    for id in ["a", "b", "c"] {
        s.submit(&job(id, None)).await.unwrap();
    }
    let lease = Duration::from_secs(30);
    let a = s.claim("w", lease).await.unwrap().unwrap();
    let b = s.claim("w", lease).await.unwrap().unwrap();
    let c = s.claim("w", lease).await.unwrap().unwrap();
    let x = vec!["x".to_string()];
    let Started::Attempt(held) = s
        .begin_attempt(&a.lease, attempt_start(0, "one"), &x, lease)
        .await
        .unwrap()
    else {
        panic!("a takes x")
    };
    let refused = s
        .begin_attempt(&b.lease, attempt_start(0, "one"), &x, lease)
        .await
        .unwrap();
    assert!(matches!(refused, Started::Busy { .. }), "{refused:?}");
    let parking = s.notifier().parking().clone();
    let parked = parking.park(&b.lease, attempt_start(0, "one"), &x, lease);
    let commits = s.writer.commits();
    end_step(&s, &a.lease, held).await;
    let started = parked
        .started
        .await
        .expect("b's attempt was started for it");
    assert_eq!(
        s.writer.commits(),
        commits + 1,
        "one commit for a's end and b's start"
    );
    assert_eq!(s.handed_off(&b.lease, 0).await.unwrap(), Some(started));
    let attempts = s.attempts(&b.lease.job_id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].id, started);
    assert_eq!(attempts[0].worker, "w");
    let holder: String = sqlx::query_scalar("SELECT job_id FROM resource_locks WHERE name = 'x'")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(holder, b.lease.job_id);

    // A waiter whose lease is gone is passed over: its answer closes, nothing is started for
    // it, and the lock is left free and announced.
    let stale = Lease {
        attempt: c.lease.attempt + 1,
        ..c.lease.clone()
    };
    let gone = parking.park(&stale, attempt_start(0, "one"), &x, lease);
    let released = s.notifier().released().notified();
    tokio::pin!(released);
    released.as_mut().enable();
    end_step(&s, &b.lease, started).await;
    assert!(gone.started.await.is_err());
    assert_eq!(s.handed_off(&stale, 0).await.unwrap(), None);
    assert!(s.attempts(&c.lease.job_id).await.unwrap().is_empty());
    tokio::time::timeout(Duration::from_secs(10), released)
        .await
        .expect("the free lock was announced");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM resource_locks")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// The bundled SQLite carries the options of `.cargo/config.toml`: losing them (a build outside
/// the project, a libsqlite3-sys that spells its flags differently) brings back the two
/// process-wide mutexes the profile found on every allocation and every page fetch.
#[test]
fn the_bundled_sqlite_is_built_without_its_global_mutexes() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let used = |option: &str| -> bool {
        conn.query_row("SELECT sqlite_compileoption_used(?)", [option], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert!(used("DEFAULT_MEMSTATUS=0"), "memory statistics are on");
    assert!(
        !used("ENABLE_MEMORY_MANAGEMENT"),
        "connections share one page cache"
    );
}
