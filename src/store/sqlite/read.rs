//! Reads for the API: a job, its steps, attempts, events and secret.

use std::sync::LazyLock;

use super::{
    AttemptRecord, EventRecord, JobRecord, Result, SecretRecord, SqliteStore, StepRecord, now_ms,
};
use crate::store::rows::{self, AttemptRow, EventRow, JobRow, SecretRow, StepRow};

pub(super) const JOB_COLUMNS: &str = "id, kind, status, inputs, username, namespace, summary, error, \
    submitted_by, request_id, created_at, started_at, finished_at, updated_at, attempt, run_at, \
    lease_owner, cancel_requested, current_step";
pub(super) const STEP_COLUMNS: &str =
    "position, name, status, attempts, failures, started_at, finished_at, exit_code, output";
/// One job by id, and the steps of one job in order.
pub(super) static JOB_SQL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"));
static STEPS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {STEP_COLUMNS} FROM job_steps WHERE job_id = ? ORDER BY position")
});
pub(super) const ATTEMPT_COLUMNS: &str = "id, position, step, attempt, job_attempt, worker, command, stdin_preview, \
    outcome, error_kind, exit_code, stdout, stderr, started_at, finished_at, duration_ms";

impl SqliteStore {
    /// The job with this id, if any.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        sqlx::query_as::<_, JobRow>(&JOB_SQL)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(JobRow::record)
            .transpose()
    }

    /// The job with this id and its steps in order (the status poll), read in one transaction
    /// on a connection of the calling task (see `readers`).
    pub async fn job_with_steps(&self, id: &str) -> Result<Option<(JobRecord, Vec<StepRecord>)>> {
        self.readers.with(|conn| {
            // Both reads see the same snapshot.
            conn.execute_batch("BEGIN")?;
            let read = read_job_with_steps(conn, id);
            conn.execute_batch("COMMIT")?;
            read
        })
    }

    /// The steps of a job, in order.
    pub async fn steps(&self, job_id: &str) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query_as(&STEPS_SQL)
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        rows::records(rows, StepRow::record)
    }

    /// Every attempt of every step of a job, oldest first.
    pub async fn attempts(&self, job_id: &str) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query_as(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM step_attempts WHERE job_id = ? ORDER BY id"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows::records(rows, AttemptRow::record)
    }

    /// The last attempt of each step of a job.
    pub async fn last_attempts(&self, job_id: &str) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query_as(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM step_attempts WHERE id IN
               (SELECT MAX(id) FROM step_attempts WHERE job_id = ? GROUP BY position)
             ORDER BY position"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows::records(rows, AttemptRow::record)
    }

    /// The audit events of a job, oldest first.
    pub async fn events(&self, job_id: &str) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query_as(&super::history::events_sql())
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        rows::records(rows, EventRow::record)
    }

    /// The job's secret; the password is `None` once expired, even before the purge ran.
    pub async fn secret(&self, job_id: &str) -> Result<Option<SecretRecord>> {
        let secret: Option<SecretRow> = sqlx::query_as(
            "SELECT password, generated, expires_at FROM job_secrets WHERE job_id = ?",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        let secret = secret.map(SecretRow::record).transpose()?;
        Ok(secret.map(|mut s| {
            if s.expires_at.is_some_and(|e| e <= now_ms()) {
                s.password = None;
            }
            s
        }))
    }
}

impl SqliteStore {
    /// The latest successful suspension of `username`: its job id and the policy lines it removed.
    pub async fn latest_suspension(&self, username: &str) -> Result<Option<(String, Vec<String>)>> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT j.id, s.output FROM jobs j INDEXED BY jobs_username_created
               JOIN job_steps s ON s.job_id = j.id AND s.name = 'revoke_rbac'
             WHERE j.kind = 'suspend_user' AND j.username = ? AND j.status = 'succeeded'
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
            .map_err(|e| super::StoreError::Corrupt(format!("suspension output of job {id}: {e}")))?
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

/// The job with this id and its steps in order, on a rusqlite connection (a reader's or, in
/// a write, the writer's).
pub(super) fn read_job_with_steps(
    conn: &rusqlite::Connection,
    id: &str,
) -> Result<Option<(JobRecord, Vec<StepRecord>)>> {
    use rusqlite::OptionalExtension;
    let job = conn
        .prepare_cached(&JOB_SQL)?
        .query_row([id], JobRow::from_sqlite)
        .optional()?;
    let Some(job) = job else {
        return Ok(None);
    };
    let steps = conn
        .prepare_cached(&STEPS_SQL)?
        .query_map([id], StepRow::from_sqlite)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some((
        job.record()?,
        rows::records(steps, StepRow::record)?,
    )))
}
