//! Accepting a job: one transaction, committed before the caller answers 202.

use super::{NewJob, Result, Store, event, now_ms};

/// What happened to a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// A new job was stored.
    Created(String),
    /// The idempotency key was seen before with the same request: the original job.
    Replayed(String),
    /// The idempotency key was seen before with a different request.
    Conflict(String),
}

impl Store {
    /// Stores a job with its steps, secret and `submitted` event, or resolves its idempotency key.
    pub async fn submit(&self, job: &NewJob) -> Result<Submitted> {
        let mut tx = self.begin_immediate().await?;
        if let Some((key, hash)) = &job.idempotency {
            let seen: Option<(String, Option<String>)> =
                sqlx::query_as("SELECT id, request_hash FROM jobs WHERE idempotency_key = ?")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some((id, seen_hash)) = seen {
                return Ok(if seen_hash.as_deref() == Some(hash.as_str()) {
                    Submitted::Replayed(id)
                } else {
                    Submitted::Conflict(id)
                });
            }
        }
        let now = now_ms();
        let (key, hash) = job.idempotency.clone().unzip();
        sqlx::query(
            "INSERT INTO jobs (id, kind, status, inputs, username, namespace, idempotency_key, request_hash,
                               submitted_by, request_id, created_at, updated_at, run_at)
             VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&job.id)
        .bind(&job.kind)
        .bind(&job.inputs)
        .bind(&job.username)
        .bind(&job.namespace)
        .bind(key)
        .bind(hash)
        .bind(&job.submitted_by)
        .bind(&job.request_id)
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (position, name) in job.steps.iter().enumerate() {
            sqlx::query("INSERT INTO job_steps (job_id, position, name, status) VALUES (?, ?, ?, 'pending')")
                .bind(&job.id)
                .bind(position as i64)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        if let Some((password, generated)) = &job.secret {
            sqlx::query("INSERT INTO job_secrets (job_id, password, generated) VALUES (?, ?, ?)")
                .bind(&job.id)
                .bind(password)
                .bind(generated)
                .execute(&mut *tx)
                .await?;
        }
        let detail = format!(
            "submitted by {} (request {})",
            job.submitted_by, job.request_id
        );
        event(&mut tx, &job.id, "submitted", None, None, Some(&detail)).await?;
        tx.commit().await?;
        Ok(Submitted::Created(job.id.clone()))
    }
}
