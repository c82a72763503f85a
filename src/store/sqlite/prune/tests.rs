use crate::store::JobEnd;
use crate::store::now_ms;
use crate::store::sqlite::SqliteStore;
use crate::store::sqlite::history::tests::{fresh, id, new_job, run_queued, set};

const DAY_MS: i64 = 86_400_000;

async fn count(s: &SqliteStore, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&s.pool).await.unwrap()
}

/// Rows that belong to job `n` in every table.
async fn owned_rows(s: &SqliteStore, n: u32) -> i64 {
    let j = id(n);
    let mut total = 0;
    for table in ["job_steps", "step_attempts", "job_events", "job_secrets"] {
        total += count(
            s,
            &format!("SELECT COUNT(*) FROM {table} WHERE job_id = '{j}'"),
        )
        .await;
    }
    total + count(s, &format!("SELECT COUNT(*) FROM jobs WHERE id = '{j}'")).await
}

fn succeeded() -> JobEnd {
    JobEnd::Succeeded {
        summary: "done".into(),
    }
}

#[tokio::test]
async fn only_old_finished_jobs_go_with_everything_they_own_in_batches() {
    let (s, _d) = fresh().await;
    let old = now_ms() - 100 * DAY_MS;
    let cutoff = now_ms() - 90 * DAY_MS;
    // 1-3: old and finished (succeeded, failed, canceled): pruned.
    for (n, end) in [
        (1, succeeded()),
        (
            2,
            JobEnd::Failed {
                error: "{}".into(),
                summary: "failed".into(),
            },
        ),
        (
            3,
            JobEnd::Canceled {
                summary: "canceled".into(),
            },
        ),
    ] {
        s.submit(&new_job(&id(n), "alice", "ops")).await.unwrap();
        run_queued(&s, "out", end).await;
        set(
            &s,
            &id(n),
            &format!("created_at = {old}, finished_at = {old} + {n}"),
        )
        .await;
    }
    // 4: recent and finished: kept.
    s.submit(&new_job(&id(4), "bob_b", "ops")).await.unwrap();
    run_queued(&s, "out", succeeded()).await;
    // 5: old but still queued, even with a (bogus) finished_at: kept.
    s.submit(&new_job(&id(5), "carol", "ops")).await.unwrap();
    set(
        &s,
        &id(5),
        &format!("created_at = {old}, finished_at = {old}"),
    )
    .await;
    // 6: old and running: kept.
    s.submit(&new_job(&id(6), "dave", "ops")).await.unwrap();
    set(&s, &id(6), &format!("created_at = {old}, run_at = 0")).await;
    set(&s, &id(5), &format!("run_at = {}", now_ms() + DAY_MS)).await;
    let c = s
        .claim("host:1:w", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.lease.job_id, id(6));
    for n in 1..=6 {
        assert!(
            owned_rows(&s, n).await > 2,
            "job {n} has rows in every table"
        );
    }

    assert_eq!(s.prune_finished_before(cutoff, 2).await.unwrap(), 2);
    // Oldest first: 1 and 2 went in the first batch.
    assert_eq!(owned_rows(&s, 1).await, 0);
    assert_eq!(owned_rows(&s, 2).await, 0);
    assert!(owned_rows(&s, 3).await > 0);
    assert_eq!(s.prune_finished_before(cutoff, 2).await.unwrap(), 1);
    assert_eq!(s.prune_finished_before(cutoff, 2).await.unwrap(), 0);
    assert_eq!(owned_rows(&s, 3).await, 0);
    for n in 4..=6 {
        assert!(owned_rows(&s, n).await > 2, "job {n} is kept");
    }
    assert_eq!(count(&s, "SELECT COUNT(*) FROM jobs").await, 3);
}

#[tokio::test]
async fn freed_pages_are_given_back_to_the_file_system() {
    let (s, _d) = fresh().await;
    assert_eq!(count(&s, "PRAGMA auto_vacuum").await, 2, "incremental");
    let big = "x".repeat(16_000);
    for n in 0..60 {
        s.submit(&new_job(&id(n), "alice", "ops")).await.unwrap();
        run_queued(&s, &big, succeeded()).await;
    }
    let pages_before = count(&s, "PRAGMA page_count").await;
    let pruned = s
        .prune_finished_before(now_ms() + 1_000, 500)
        .await
        .unwrap();
    assert_eq!(pruned, 60);
    let free = count(&s, "PRAGMA freelist_count").await;
    assert!(free > 100, "the outputs left {free} free pages");
    let left = s.reclaim_space(10).await.unwrap();
    assert_eq!(left, free - 10, "at most the pages asked for");
    let mut rounds = 0;
    while s.reclaim_space(50).await.unwrap() > 0 {
        rounds += 1;
        assert!(rounds < 1_000, "reclaiming does not end");
    }
    let pages_after = count(&s, "PRAGMA page_count").await;
    assert!(
        pages_after <= pages_before - free,
        "{pages_before} pages before, {free} free, {pages_after} after"
    );
}
