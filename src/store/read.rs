//! Reads for the API: a job, its steps, attempts, events and secret.

use std::sync::LazyLock;

use super::{
    AttemptRecord, EventRecord, JobRecord, Result, SecretRecord, StepRecord, Store, now_ms,
};

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

impl Store {
    /// The job with this id, if any.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        Ok(sqlx::query_as(&JOB_SQL)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
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
        Ok(sqlx::query_as(&STEPS_SQL)
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
        Ok(sqlx::query_as(&super::history::events_sql())
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

/// The job with this id and its steps in order, on a rusqlite connection (a reader's or, in
/// a write, the writer's).
pub(super) fn read_job_with_steps(
    conn: &rusqlite::Connection,
    id: &str,
) -> Result<Option<(JobRecord, Vec<StepRecord>)>> {
    use rusqlite::OptionalExtension;
    let job = conn
        .prepare_cached(&JOB_SQL)?
        .query_row([id], job_from_row)
        .optional()?;
    let Some(job) = job else {
        return Ok(None);
    };
    let steps = conn
        .prepare_cached(&STEPS_SQL)?
        .query_map([id], step_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some((job, steps)))
}

/// A `jobs` row read with `JOB_COLUMNS`.
fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        id: r.get(0)?,
        kind: r.get(1)?,
        status: r.get(2)?,
        inputs: r.get(3)?,
        username: r.get(4)?,
        namespace: r.get(5)?,
        summary: r.get(6)?,
        error: r.get(7)?,
        submitted_by: r.get(8)?,
        request_id: r.get(9)?,
        created_at: r.get(10)?,
        started_at: r.get(11)?,
        finished_at: r.get(12)?,
        updated_at: r.get(13)?,
        attempt: r.get(14)?,
        run_at: r.get(15)?,
        lease_owner: r.get(16)?,
        cancel_requested: r.get(17)?,
        current_step: r.get(18)?,
    })
}

/// A `job_steps` row read with `STEP_COLUMNS`.
fn step_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StepRecord> {
    Ok(StepRecord {
        position: r.get(0)?,
        name: r.get(1)?,
        status: r.get(2)?,
        attempts: r.get(3)?,
        failures: r.get(4)?,
        started_at: r.get(5)?,
        finished_at: r.get(6)?,
        exit_code: r.get(7)?,
        output: r.get(8)?,
    })
}
