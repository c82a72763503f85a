//! Reads for the API: a job, its steps, attempts, events and secret.

use super::{
    AttemptRecord, EventRecord, JobRecord, Result, SecretRecord, StepRecord, Store, Write, now_ms,
};

pub(super) const JOB_COLUMNS: &str = "id, kind, status, inputs, username, namespace, summary, error, \
    submitted_by, request_id, created_at, started_at, finished_at, updated_at, attempt, run_at, \
    lease_owner, cancel_requested, current_step";
pub(super) const STEP_COLUMNS: &str =
    "position, name, status, attempts, failures, started_at, finished_at, exit_code, output";
/// A job and its steps (in the order of `STEP_COLUMNS`, as a JSON array of arrays).
const JOB_WITH_STEPS_SQL: &str = "SELECT id, kind, status, inputs, username, namespace, summary, error, \
    submitted_by, request_id, created_at, started_at, finished_at, updated_at, attempt, run_at, \
    lease_owner, cancel_requested, current_step, \
    (SELECT json_group_array(json_array(position, name, status, attempts, failures, started_at, \
            finished_at, exit_code, output) ORDER BY position) \
       FROM job_steps WHERE job_id = jobs.id) AS steps \
    FROM jobs WHERE id = ?";
pub(super) const ATTEMPT_COLUMNS: &str = "id, position, step, attempt, job_attempt, worker, command, stdin_preview, \
    outcome, error_kind, exit_code, stdout, stderr, started_at, finished_at, duration_ms";

impl Store {
    /// The job with this id, if any.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        Ok(
            sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The job with this id and its steps in order, read with one statement (the status poll).
    pub async fn job_with_steps(&self, id: &str) -> Result<Option<(JobRecord, Vec<StepRecord>)>> {
        let row: Option<(JobRecord, String)> = sqlx::query(JOB_WITH_STEPS_SQL)
            .bind(id)
            .try_map(|row: sqlx::sqlite::SqliteRow| {
                use sqlx::{FromRow, Row};
                Ok((JobRecord::from_row(&row)?, row.try_get("steps")?))
            })
            .fetch_optional(&self.pool)
            .await?;
        let Some((job, steps)) = row else {
            return Ok(None);
        };
        type StepRow = (
            i64,
            String,
            String,
            i64,
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<StepRow> = serde_json::from_str(&steps)
            .map_err(|e| super::StoreError::Corrupt(format!("steps of job {id}: {e}")))?;
        let steps = rows
            .into_iter()
            .map(
                |(
                    position,
                    name,
                    status,
                    attempts,
                    failures,
                    started_at,
                    finished_at,
                    exit_code,
                    output,
                )| {
                    StepRecord {
                        position,
                        name,
                        status,
                        attempts,
                        failures,
                        started_at,
                        finished_at,
                        exit_code,
                        output,
                    }
                },
            )
            .collect();
        Ok(Some((job, steps)))
    }

    /// The steps of a job, in order.
    pub async fn steps(&self, job_id: &str) -> Result<Vec<StepRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {STEP_COLUMNS} FROM job_steps WHERE job_id = ? ORDER BY position"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every attempt of every step of a job, oldest first.
    pub async fn attempts(&self, job_id: &str) -> Result<Vec<AttemptRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM step_attempts WHERE job_id = ? ORDER BY id"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The last attempt of each step of a job.
    pub async fn last_attempts(&self, job_id: &str) -> Result<Vec<AttemptRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM step_attempts WHERE id IN
               (SELECT MAX(id) FROM step_attempts WHERE job_id = ? GROUP BY position)
             ORDER BY position"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The audit events of a job, oldest first.
    pub async fn events(&self, job_id: &str) -> Result<Vec<EventRecord>> {
        Ok(sqlx::query_as(
            "SELECT at, type, attempt, worker, detail FROM job_events WHERE job_id = ? ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The job's secret; the password is `None` once expired, even before the purge ran.
    pub async fn secret(&self, job_id: &str) -> Result<Option<SecretRecord>> {
        let secret: Option<SecretRecord> = sqlx::query_as(
            "SELECT password, generated, expires_at FROM job_secrets WHERE job_id = ?",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(secret.map(|mut s| {
            if s.expires_at.is_some_and(|e| e <= now_ms()) {
                s.password = None;
            }
            s
        }))
    }

    /// Erases passwords whose time is up; returns how many were erased.
    pub async fn purge_expired_secrets(&self) -> Result<u64> {
        self.write(|conn| {
            let done = conn
                .prepare_cached(
                    "UPDATE job_secrets SET password = NULL WHERE password IS NOT NULL AND expires_at <= ?",
                )?
                .execute([now_ms()])?;
            Ok(Write::Keep(done as u64))
        })
        .await
    }
}

impl Store {
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
