//! Point reads of jobs, steps, attempts and secrets.
//!
//! jsonb columns are read as text (`inputs::text AS inputs`, ...): the records hold JSON text,
//! whatever the backend. A read that must see one state of several tables runs in one
//! `REPEATABLE READ` read-only transaction ([`snapshot`]): under the default `READ COMMITTED`
//! each statement takes its own snapshot, and a commit landing between two of them would pair
//! a job with steps of another moment.

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Postgres, Transaction};

use super::{AttemptRecord, JobRecord, PgStore, Result, SecretRecord, StepRecord, StoreError};
use crate::store::rows::{self, AttemptRow, JobRow, SecretRow, StepRow};

/// The columns of `JobRow`.
pub(super) const JOB_COLUMNS: &str = "id, kind, status, inputs::text AS inputs, username, \
    namespace, summary, error::text AS error, submitted_by, request_id, created_at, started_at, \
    finished_at, updated_at, attempt, run_at, lease_owner, cancel_requested, current_step";
/// The columns of `StepRow`.
pub(super) const STEP_COLUMNS: &str = "position, name, status, attempts, failures, started_at, \
    finished_at, exit_code, output::text AS output";
/// The columns of `AttemptRow`.
pub(super) const ATTEMPT_COLUMNS: &str = "id, position, step, attempt, job_attempt, worker, \
    command, stdin_preview, outcome, error_kind, exit_code, stdout, stderr, started_at, \
    finished_at, duration_ms";

/// Starts a `REPEATABLE READ READ ONLY` transaction: every statement in it sees the snapshot of
/// its first one. Kept short (a few point reads): an open snapshot holds back vacuum.
pub(super) async fn snapshot(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
    Ok(pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?)
}

/// The job with this id, on `conn` (a pooled connection or an open transaction).
pub(super) async fn read_job(conn: &mut PgConnection, id: &str) -> Result<Option<JobRecord>> {
    sqlx::query_as::<_, JobRow>(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(JobRow::record)
        .transpose()
}

/// The steps of job `job_id` in order, on `conn`.
pub(super) async fn read_steps(conn: &mut PgConnection, job_id: &str) -> Result<Vec<StepRecord>> {
    let rows = sqlx::query_as(&format!(
        "SELECT {STEP_COLUMNS} FROM job_steps WHERE job_id = $1 ORDER BY position"
    ))
    .bind(job_id)
    .fetch_all(conn)
    .await?;
    rows::records(rows, StepRow::record)
}

/// The job with this id and its steps in order, read on `conn`: for use inside the caller's
/// transaction (the claim reads the job it just took in its own transaction, and sees its own
/// update). The two reads agree only if `conn` is in a transaction that gives them one
/// snapshot (its own writes lock the job row, or `REPEATABLE READ`); on a bare connection they
/// are two statements.
pub(super) async fn read_job_with_steps(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<(JobRecord, Vec<StepRecord>)>> {
    let Some(job) = read_job(conn, id).await? else {
        return Ok(None);
    };
    let steps = read_steps(conn, id).await?;
    Ok(Some((job, steps)))
}

impl PgStore {
    /// The job with this id, if any.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        let mut conn = self.pool.acquire().await?;
        read_job(&mut conn, id).await
    }

    /// The job with this id and its steps in order (the status poll), in one snapshot.
    pub async fn job_with_steps(&self, id: &str) -> Result<Option<(JobRecord, Vec<StepRecord>)>> {
        let mut tx = snapshot(&self.pool).await?;
        let read = read_job_with_steps(&mut tx, id).await?;
        tx.commit().await?;
        Ok(read)
    }

    /// The steps of a job, in order.
    pub async fn steps(&self, job_id: &str) -> Result<Vec<StepRecord>> {
        let mut conn = self.pool.acquire().await?;
        read_steps(&mut conn, job_id).await
    }

    /// The last attempt of each step of a job, in step order.
    pub async fn last_attempts(&self, job_id: &str) -> Result<Vec<AttemptRecord>> {
        // `DISTINCT ON` keeps the first row of each position in the order given: the latest.
        let rows = sqlx::query_as(&format!(
            "SELECT DISTINCT ON (position) {ATTEMPT_COLUMNS} FROM step_attempts
              WHERE job_id = $1 ORDER BY position, id DESC"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows::records(rows, AttemptRow::record)
    }

    /// The job's secret; the password is `None` once expired (on the database clock), even
    /// before the purge ran.
    pub async fn secret(&self, job_id: &str) -> Result<Option<SecretRecord>> {
        let secret: Option<SecretRow> = sqlx::query_as(
            "SELECT CASE WHEN expires_at <= now_ms() THEN NULL ELSE password END AS password,
                    generated, expires_at
               FROM job_secrets WHERE job_id = $1",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        secret.map(SecretRow::record).transpose()
    }

    /// The latest successful suspension of `username`: its job id and the policy lines it
    /// removed (`removed_lines` of its `revoke_rbac` step's output).
    pub async fn latest_suspension(&self, username: &str) -> Result<Option<(String, Vec<String>)>> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT j.id, s.output::text FROM jobs j
               JOIN job_steps s ON s.job_id = j.id AND s.name = 'revoke_rbac'
              WHERE j.kind = 'suspend_user' AND j.username = $1 AND j.status = 'succeeded'
              ORDER BY j.created_at DESC, j.id DESC LIMIT 1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, output)) = row else {
            return Ok(None);
        };
        let output: serde_json::Value = output
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("suspension output of job {id}: {e}")))?
            .unwrap_or_default();
        let lines = output["removed_lines"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some((id, lines)))
    }
}
