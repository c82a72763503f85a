//! Accepting a job: one transaction, committed before the caller answers 202.
//!
//! The job, its steps, its secret, its `submitted` event and the worker wake-up are one
//! statement ([`SUBMIT_SQL`]): one round trip, atomic by itself. Idempotency keys are unique
//! per admin key name across replicas through the `jobs_idempotency` constraint: the insert
//! does nothing on a conflict, and then the job that holds the key answers. Two replicas that
//! submit the same key at once cannot both insert: the second insert waits for the first
//! transaction on the unique index, and finds the conflict once the first commits.

use super::{NewJob, PgStore, Result, StoreError, Submitted};

/// Inserts job `$1` and everything it owns, unless admin key name `$8` already used
/// idempotency key `$6`; returns the id when it inserted.
///
/// The other inserts select from the `job` CTE, so they insert nothing when the job was not
/// inserted. Their foreign keys see the job: constraint checks of a statement run at its end.
/// Steps are `$10` in order (position from 0); the secret is `$11` (password) and `$12`
/// (generated), inserted when the password is not null. `pg_notify('everest_job_queued')`
/// wakes an idle worker of every replica at commit; it is sent only with a new job.
const SUBMIT_SQL: &str = "WITH job AS (
    INSERT INTO jobs (id, kind, status, inputs, username, namespace, idempotency_key,
                      request_hash, submitted_by, request_id, created_at, updated_at, run_at)
    VALUES ($1, $2, 'queued', $3::jsonb, $4, $5, $6, $7, $8, $9, now_ms(), now_ms(), now_ms())
    ON CONFLICT (submitted_by, idempotency_key) DO NOTHING
    RETURNING id
), steps AS (
    INSERT INTO job_steps (job_id, position, name, status)
    SELECT job.id, s.position - 1, s.name, 'pending'
      FROM job, unnest($10::text[]) WITH ORDINALITY AS s (name, position)
), secret AS (
    INSERT INTO job_secrets (job_id, password, generated)
    SELECT job.id, $11, $12 FROM job WHERE $11::text IS NOT NULL
), event AS (
    INSERT INTO job_events (job_id, at, type, detail)
    SELECT job.id, now_ms(), 'submitted', $13 FROM job
), wake AS (
    SELECT pg_notify('everest_job_queued', '') FROM job
)
SELECT job.id FROM job, wake";

/// The job an admin key name already submitted with an idempotency key.
const IDEMPOTENCY_SQL: &str =
    "SELECT id, request_hash FROM jobs WHERE submitted_by = $1 AND idempotency_key = $2";

/// Tries of the insert and the look-up: the job that holds the key can vanish between the two
/// (pruned), and then the insert succeeds on the next try.
const TRIES: usize = 3;

impl PgStore {
    /// Stores a job with its steps, secret and `submitted` event, or resolves its idempotency
    /// key. Returns once the job is committed.
    pub async fn submit(&self, job: &NewJob) -> Result<Submitted> {
        for _ in 0..TRIES {
            if self.insert(job).await? {
                return Ok(Submitted::Created(job.id.clone()));
            }
            // Only a job with an idempotency key can conflict.
            let Some((key, hash)) = &job.idempotency else {
                break;
            };
            let seen: Option<(String, Option<String>)> = sqlx::query_as(IDEMPOTENCY_SQL)
                .bind(&job.submitted_by)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
            if let Some((id, seen_hash)) = seen {
                return Ok(match seen_hash {
                    None => Submitted::Unverifiable(id),
                    Some(seen) if seen == *hash => Submitted::Replayed(id),
                    Some(_) => Submitted::Conflict(id),
                });
            }
        }
        Err(StoreError::unavailable(format!(
            "job {} was neither inserted nor found by its idempotency key",
            job.id
        )))
    }

    /// Runs [`SUBMIT_SQL`]; `false` when the idempotency key was taken.
    async fn insert(&self, job: &NewJob) -> Result<bool> {
        let (key, hash) = job.idempotency.clone().unzip();
        let (password, generated) = job.secret.clone().unzip();
        let detail = format!(
            "submitted by {} (request {})",
            job.submitted_by, job.request_id
        );
        let inserted: Option<String> = sqlx::query_scalar(SUBMIT_SQL)
            .bind(&job.id)
            .bind(&job.kind)
            .bind(&job.inputs)
            .bind(&job.username)
            .bind(&job.namespace)
            .bind(key)
            .bind(hash)
            .bind(&job.submitted_by)
            .bind(&job.request_id)
            .bind(&job.steps)
            .bind(password)
            .bind(generated)
            .bind(detail)
            .fetch_optional(&self.pool)
            .await?;
        Ok(inserted.is_some())
    }
}
