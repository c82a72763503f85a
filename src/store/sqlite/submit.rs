//! Accepting a job: one transaction, committed before the caller answers 202.

use rusqlite::{Connection, OptionalExtension, params};

use super::{NewJob, Result, SqliteStore, Submitted, Write, event, now_ms};

impl SqliteStore {
    /// Stores a job with its steps, secret and `submitted` event, or resolves its idempotency key.
    /// Returns once the job is committed.
    pub async fn submit(&self, job: &NewJob) -> Result<Submitted> {
        let job = job.clone();
        self.write(move |conn| insert(conn, &job).map(Write::Keep))
            .await
    }
}

/// The job an admin key name already submitted with an idempotency key (`jobs_idempotency`).
pub(super) const IDEMPOTENCY_SQL: &str =
    "SELECT id, request_hash FROM jobs WHERE submitted_by = ? AND idempotency_key = ?";

fn insert(tx: &Connection, job: &NewJob) -> Result<Submitted> {
    if let Some((key, hash)) = &job.idempotency {
        let seen: Option<(String, Option<String>)> = tx
            .prepare_cached(IDEMPOTENCY_SQL)?
            .query_row([&job.submitted_by, key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((id, seen_hash)) = seen {
            return Ok(match seen_hash {
                None => Submitted::Unverifiable(id),
                Some(seen) if seen == *hash => Submitted::Replayed(id),
                Some(_) => Submitted::Conflict(id),
            });
        }
    }
    let now = now_ms();
    let (key, hash) = job.idempotency.clone().unzip();
    tx.prepare_cached(
        "INSERT INTO jobs (id, kind, status, inputs, username, namespace, idempotency_key, request_hash,
                           submitted_by, request_id, created_at, updated_at, run_at)
         VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10)",
    )?
    .execute(params![
        job.id,
        job.kind,
        job.inputs,
        job.username,
        job.namespace,
        key,
        hash,
        job.submitted_by,
        job.request_id,
        now
    ])?;
    let mut step = tx.prepare_cached(
        "INSERT INTO job_steps (job_id, position, name, status) VALUES (?, ?, ?, 'pending')",
    )?;
    for (position, name) in job.steps.iter().enumerate() {
        step.execute(params![job.id, position as i64, name])?;
    }
    if let Some((password, generated)) = &job.secret {
        tx.prepare_cached(
            "INSERT INTO job_secrets (job_id, password, generated) VALUES (?, ?, ?)",
        )?
        .execute(params![job.id, password, generated])?;
    }
    let detail = format!(
        "submitted by {} (request {})",
        job.submitted_by, job.request_id
    );
    event(tx, &job.id, "submitted", None, None, Some(&detail))?;
    Ok(Submitted::Created(job.id.clone()))
}
