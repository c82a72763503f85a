//! Operator control of jobs: cancel and retry, and the worker's view of a cancel request.
//!
//! Both read the job's status and then write by it. SQLite's single writer makes that atomic;
//! here the read is `SELECT … FOR UPDATE`, which holds the job row until commit: a claim (which
//! skips locked rows) or a worker's fenced write (which waits) cannot slip in between, and a
//! cancel that waited for a claim reads the status the claim committed.

use sqlx::postgres::PgConnection;

use super::{CancelOutcome, Lease, PgStore, Result, RetryOutcome, StoreError};
use crate::domain::JobStatus;

impl PgStore {
    /// Cancels a queued job at once, or flags a running one for its worker.
    pub async fn request_cancel(&self, job_id: &str, by: &str) -> Result<CancelOutcome> {
        let mut tx = self.pool.begin().await?;
        let outcome = cancel(&mut tx, job_id, by).await?;
        if matches!(outcome, CancelOutcome::Canceled | CancelOutcome::Requested) {
            notify_changed(&mut tx, job_id).await?;
        }
        tx.commit().await?;
        if matches!(outcome, CancelOutcome::Canceled | CancelOutcome::Requested) {
            self.notifier.changed(job_id);
        }
        Ok(outcome)
    }

    /// Whether someone asked to cancel the job this lease holds.
    pub async fn cancel_requested(&self, lease: &Lease) -> Result<bool> {
        let flag: Option<bool> =
            sqlx::query_scalar("SELECT cancel_requested FROM jobs WHERE id = $1")
                .bind(&lease.job_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(flag.unwrap_or(false))
    }

    /// Queues a failed or canceled job again; it resumes at its first step that did not
    /// succeed, with a fresh `MAX_ATTEMPTS` budget for those steps. Earlier attempts stay in
    /// the history.
    pub async fn retry(&self, job_id: &str, by: &str) -> Result<RetryOutcome> {
        let mut tx = self.pool.begin().await?;
        let outcome = requeue(&mut tx, job_id, by).await?;
        if outcome == RetryOutcome::Requeued {
            notify_changed(&mut tx, job_id).await?;
            // Due at once, like a new job: an idle worker of any replica may take it.
            sqlx::query("SELECT pg_notify('everest_job_queued', '')")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if outcome == RetryOutcome::Requeued {
            self.notifier.changed(job_id);
        }
        Ok(outcome)
    }
}

/// Tells every replica, at commit, that the job changed.
async fn notify_changed(tx: &mut PgConnection, job_id: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify('everest_job_changed', $1)")
        .bind(job_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// The job's status and claim counter, with the job row locked until the end of the caller's
/// transaction.
async fn lock_status(tx: &mut PgConnection, job_id: &str) -> Result<Option<(JobStatus, i64)>> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT status, attempt FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(job_id)
            .fetch_optional(tx)
            .await?;
    row.map(|(status, attempt)| {
        JobStatus::parse(&status)
            .map(|s| (s, attempt))
            .ok_or_else(|| StoreError::Corrupt(format!("the status of job {job_id} is {status:?}")))
    })
    .transpose()
}

/// Inserts an event of the job, at the database's time.
async fn event(
    tx: &mut PgConnection,
    job_id: &str,
    kind: &str,
    attempt: i64,
    detail: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO job_events (job_id, at, type, attempt, detail)
         VALUES ($1, now_ms(), $2, $3, $4)",
    )
    .bind(job_id)
    .bind(kind)
    .bind(attempt)
    .bind(detail)
    .execute(tx)
    .await?;
    Ok(())
}

async fn cancel(tx: &mut PgConnection, job_id: &str, by: &str) -> Result<CancelOutcome> {
    let Some((status, attempt)) = lock_status(tx, job_id).await? else {
        return Ok(CancelOutcome::NotFound);
    };
    let by = format!("by {by}");
    match status {
        JobStatus::Queued => {
            event(tx, job_id, "cancel_requested", attempt, &by).await?;
            sqlx::query(
                "UPDATE jobs SET status = 'canceled', finished_at = now_ms(), updated_at = now_ms(),
                        cancel_requested = true, summary = 'Canceled before it ran to the end.',
                        lease_owner = NULL, lease_expires_at = NULL
                  WHERE id = $1",
            )
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE job_steps SET status = 'canceled' WHERE job_id = $1 AND status = 'pending'",
            )
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
            event(tx, job_id, "canceled", attempt, "canceled while queued").await?;
            // Every job that reaches a final status records `finished`, as the worker does.
            let finished = "canceled: Canceled before it ran to the end.";
            event(tx, job_id, "finished", attempt, finished).await?;
            Ok(CancelOutcome::Canceled)
        }
        JobStatus::Running => {
            sqlx::query(
                "UPDATE jobs SET cancel_requested = true, updated_at = now_ms() WHERE id = $1",
            )
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
            event(tx, job_id, "cancel_requested", attempt, &by).await?;
            Ok(CancelOutcome::Requested)
        }
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled => {
            Ok(CancelOutcome::AlreadyFinished(status))
        }
    }
}

async fn requeue(tx: &mut PgConnection, job_id: &str, by: &str) -> Result<RetryOutcome> {
    let Some((status, attempt)) = lock_status(tx, job_id).await? else {
        return Ok(RetryOutcome::NotFound);
    };
    if !matches!(status, JobStatus::Failed | JobStatus::Canceled) {
        return Ok(RetryOutcome::NotRetryable(status));
    }
    sqlx::query(
        "UPDATE jobs SET status = 'queued', run_at = now_ms(), updated_at = now_ms(),
                finished_at = NULL, error = NULL, cancel_requested = false,
                summary = 'Queued again by a retry request.'
          WHERE id = $1",
    )
    .bind(job_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE job_steps SET status = 'pending', failures = 0, finished_at = NULL
          WHERE job_id = $1 AND status IN ('failed', 'canceled', 'skipped')",
    )
    .bind(job_id)
    .execute(&mut *tx)
    .await?;
    // The password (if not yet purged) is needed again until the job finishes anew.
    sqlx::query(
        "UPDATE job_secrets SET expires_at = NULL WHERE job_id = $1 AND password IS NOT NULL",
    )
    .bind(job_id)
    .execute(&mut *tx)
    .await?;
    let detail = format!("by {by}; was {status}");
    event(tx, job_id, "retry_requested", attempt, &detail).await?;
    Ok(RetryOutcome::Requeued)
}
