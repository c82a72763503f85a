//! Operator control of jobs: cancel and retry, and the worker's view of a cancel request.

use sqlx::SqliteConnection;

use super::{Lease, Result, Store, Write, event, now_ms};

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    NotFound,
    /// The job had already finished with this status.
    AlreadyFinished(String),
    /// The job was queued and is now canceled.
    Canceled,
    /// The job is running; its worker will stop it.
    Requested,
}

/// What a retry request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    NotFound,
    /// Only failed or canceled jobs can be retried; this is the job's status.
    NotRetryable(String),
    Requeued,
}

impl Store {
    /// Cancels a queued job at once, or flags a running one for its worker.
    pub async fn request_cancel(&self, job_id: &str, by: &str) -> Result<CancelOutcome> {
        let (id, by) = (job_id.to_string(), by.to_string());
        let outcome = self
            .write(move |conn| {
                Box::pin(async move { cancel(conn, &id, &by).await.map(Write::Keep) })
            })
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
            .write(move |conn| {
                Box::pin(async move { requeue(conn, &id, &by).await.map(Write::Keep) })
            })
            .await?;
        if outcome == RetryOutcome::Requeued {
            self.changed(job_id);
        }
        Ok(outcome)
    }
}

async fn requeue(tx: &mut SqliteConnection, job_id: &str, by: &str) -> Result<RetryOutcome> {
    let status = status_and_attempt(tx, job_id).await?;
    let Some((status, attempt)) = status else {
        return Ok(RetryOutcome::NotFound);
    };
    if !matches!(status.as_str(), "failed" | "canceled") {
        return Ok(RetryOutcome::NotRetryable(status));
    }
    let now = now_ms();
    sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = ?1, updated_at = ?1, finished_at = NULL, error = NULL,
                    cancel_requested = 0, summary = 'Queued again by a retry request.'
             WHERE id = ?2",
        )
        .bind(now)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE job_steps SET status = 'pending', failures = 0, finished_at = NULL
             WHERE job_id = ? AND status IN ('failed', 'canceled', 'skipped')",
    )
    .bind(job_id)
    .execute(&mut *tx)
    .await?;
    // The password (if not yet purged) is needed again until the job finishes anew.
    sqlx::query(
        "UPDATE job_secrets SET expires_at = NULL WHERE job_id = ? AND password IS NOT NULL",
    )
    .bind(job_id)
    .execute(&mut *tx)
    .await?;
    event(
        tx,
        job_id,
        "retry_requested",
        Some(attempt),
        None,
        Some(&format!("by {by}; was {status}")),
    )
    .await?;
    Ok(RetryOutcome::Requeued)
}

/// The job's status and claim counter, read inside the caller's write transaction.
async fn status_and_attempt(
    tx: &mut SqliteConnection,
    job_id: &str,
) -> Result<Option<(String, i64)>> {
    Ok(
        sqlx::query_as("SELECT status, attempt FROM jobs WHERE id = ?")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await?,
    )
}

async fn cancel(tx: &mut SqliteConnection, job_id: &str, by: &str) -> Result<CancelOutcome> {
    let status = status_and_attempt(tx, job_id).await?;
    let Some((status, attempt)) = status else {
        return Ok(CancelOutcome::NotFound);
    };
    let now = now_ms();
    let outcome = match status.as_str() {
        "queued" => {
            event(
                tx,
                job_id,
                "cancel_requested",
                Some(attempt),
                None,
                Some(&format!("by {by}")),
            )
            .await?;
            sqlx::query(
                    "UPDATE jobs SET status = 'canceled', finished_at = ?1, updated_at = ?1, cancel_requested = 1,
                            summary = 'Canceled before it ran to the end.', lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = ?2",
                )
                .bind(now)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE job_steps SET status = 'canceled' WHERE job_id = ? AND status = 'pending'",
            )
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
            event(
                tx,
                job_id,
                "canceled",
                Some(attempt),
                None,
                Some("canceled while queued"),
            )
            .await?;
            // Every job that reaches a final status records `finished`, as the worker does.
            event(
                tx,
                job_id,
                "finished",
                Some(attempt),
                None,
                Some("canceled: Canceled before it ran to the end."),
            )
            .await?;
            CancelOutcome::Canceled
        }
        "running" => {
            sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?")
                .bind(now)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            event(
                tx,
                job_id,
                "cancel_requested",
                Some(attempt),
                None,
                Some(&format!("by {by}")),
            )
            .await?;
            CancelOutcome::Requested
        }
        _ => return Ok(CancelOutcome::AlreadyFinished(status)),
    };
    Ok(outcome)
}
