//! Operator control of jobs: cancel and retry, and the worker's view of a cancel request.

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    CancelOutcome, Lease, Result, RetryOutcome, SqliteStore, StoreError, Write, event, now_ms,
};
use crate::domain::JobStatus;

impl SqliteStore {
    /// Cancels a queued job at once, or flags a running one for its worker.
    pub async fn request_cancel(&self, job_id: &str, by: &str) -> Result<CancelOutcome> {
        let (id, by) = (job_id.to_string(), by.to_string());
        let outcome = self
            .write(move |conn| cancel(conn, &id, &by).map(Write::Keep))
            .await?;
        if matches!(outcome, CancelOutcome::Canceled | CancelOutcome::Requested) {
            self.changed(job_id);
        }
        Ok(outcome)
    }

    /// Whether someone asked to cancel the job this lease holds.
    pub async fn cancel_requested(&self, lease: &Lease) -> Result<bool> {
        let flag: Option<bool> =
            sqlx::query_scalar("SELECT cancel_requested FROM jobs WHERE id = ?")
                .bind(&lease.job_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(flag.unwrap_or(false))
    }

    /// Queues a failed or canceled job again; it resumes at its first step that did not succeed,
    /// with a fresh `MAX_ATTEMPTS` budget for those steps. Earlier attempts stay in the history.
    pub async fn retry(&self, job_id: &str, by: &str) -> Result<RetryOutcome> {
        let (id, by) = (job_id.to_string(), by.to_string());
        let outcome = self
            .write(move |conn| requeue(conn, &id, &by).map(Write::Keep))
            .await?;
        if outcome == RetryOutcome::Requeued {
            self.changed(job_id);
        }
        Ok(outcome)
    }
}

fn requeue(tx: &Connection, job_id: &str, by: &str) -> Result<RetryOutcome> {
    let Some((status, attempt)) = status_and_attempt(tx, job_id)? else {
        return Ok(RetryOutcome::NotFound);
    };
    if !matches!(status, JobStatus::Failed | JobStatus::Canceled) {
        return Ok(RetryOutcome::NotRetryable(status));
    }
    tx.prepare_cached(
        "UPDATE jobs SET status = 'queued', run_at = ?1, updated_at = ?1, finished_at = NULL, error = NULL,
                cancel_requested = 0, summary = 'Queued again by a retry request.'
         WHERE id = ?2",
    )?
    .execute(params![now_ms(), job_id])?;
    tx.prepare_cached(
        "UPDATE job_steps SET status = 'pending', failures = 0, finished_at = NULL
         WHERE job_id = ? AND status IN ('failed', 'canceled', 'skipped')",
    )?
    .execute([job_id])?;
    // The password (if not yet purged) is needed again until the job finishes anew.
    tx.prepare_cached(
        "UPDATE job_secrets SET expires_at = NULL WHERE job_id = ? AND password IS NOT NULL",
    )?
    .execute([job_id])?;
    event(
        tx,
        job_id,
        "retry_requested",
        Some(attempt),
        None,
        Some(&format!("by {by}; was {status}")),
    )?;
    Ok(RetryOutcome::Requeued)
}

/// The job's status and claim counter, read inside the caller's write transaction.
fn status_and_attempt(tx: &Connection, job_id: &str) -> Result<Option<(JobStatus, i64)>> {
    let row: Option<(String, i64)> = tx
        .prepare_cached("SELECT status, attempt FROM jobs WHERE id = ?")?
        .query_row([job_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(status, attempt)| {
        JobStatus::parse(&status)
            .map(|s| (s, attempt))
            .ok_or_else(|| StoreError::Corrupt(format!("the status of job {job_id} is {status:?}")))
    })
    .transpose()
}

fn cancel(tx: &Connection, job_id: &str, by: &str) -> Result<CancelOutcome> {
    let Some((status, attempt)) = status_and_attempt(tx, job_id)? else {
        return Ok(CancelOutcome::NotFound);
    };
    let now = now_ms();
    let by = format!("by {by}");
    match status {
        JobStatus::Queued => {
            event(
                tx,
                job_id,
                "cancel_requested",
                Some(attempt),
                None,
                Some(&by),
            )?;
            tx.prepare_cached(
                "UPDATE jobs SET status = 'canceled', finished_at = ?1, updated_at = ?1, cancel_requested = 1,
                        summary = 'Canceled before it ran to the end.', lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = ?2",
            )?
            .execute(params![now, job_id])?;
            tx.prepare_cached(
                "UPDATE job_steps SET status = 'canceled' WHERE job_id = ? AND status = 'pending'",
            )?
            .execute([job_id])?;
            let canceled = Some("canceled while queued");
            event(tx, job_id, "canceled", Some(attempt), None, canceled)?;
            // Every job that reaches a final status records `finished`, as the worker does.
            let finished = Some("canceled: Canceled before it ran to the end.");
            event(tx, job_id, "finished", Some(attempt), None, finished)?;
            Ok(CancelOutcome::Canceled)
        }
        JobStatus::Running => {
            tx.prepare_cached("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?")?
                .execute(params![now, job_id])?;
            event(
                tx,
                job_id,
                "cancel_requested",
                Some(attempt),
                None,
                Some(&by),
            )?;
            Ok(CancelOutcome::Requested)
        }
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled => {
            Ok(CancelOutcome::AlreadyFinished(status))
        }
    }
}
