//! Fenced writes of a worker running a job: attempts, step results and the job's end.

use std::time::Duration;

use sqlx::SqliteConnection;

use super::locks::take_locks;
use super::{Lease, Result, Store, Write, event, ms, now_ms};

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct AttemptEnd {
    /// `succeeded`, `failed`, `timed_out`, `interrupted` or `canceled`.
    pub outcome: &'static str,
    /// `transient`, `permanent`, `not_found`, ... for failures.
    pub error_kind: Option<String>,
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: i64,
}

/// What the attempt means for its step.
#[derive(Debug, Clone)]
pub enum StepEnd {
    /// Done; `output` is step-specific JSON.
    Succeeded {
        output: Option<String>,
    },
    /// Will run again; `counted` when the attempt counts against `MAX_ATTEMPTS`.
    Pending {
        counted: bool,
    },
    Failed,
    Canceled,
}

/// What the attempt means for its job.
#[derive(Debug, Clone)]
pub enum JobEnd {
    /// Go on with the next step under the same lease.
    Continue,
    /// Back to the queue until `delay` has passed.
    Retry {
        delay: Duration,
        reason: String,
    },
    Succeeded {
        summary: String,
    },
    /// `error` is the JSON of the job's error.
    Failed {
        error: String,
        summary: String,
    },
    /// Stopped on request; no further step runs.
    Canceled {
        summary: String,
    },
    /// Given back (shutdown): queued again, due at once, without an owner.
    Requeue {
        reason: String,
    },
}

/// A step attempt about to start.
#[derive(Debug, Clone)]
pub struct AttemptStart {
    pub position: i64,
    pub step: String,
    /// The command as recorded (redacted).
    pub command: String,
    pub stdin_preview: Option<String>,
    /// The job's summary while the step runs.
    pub summary: String,
}

/// What [`Store::begin_attempt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// The locks are taken and the attempt is recorded with this id.
    Attempt(i64),
    /// One of the locks is held by this other job; nothing was written.
    Busy { name: String, holder: String },
    /// The lease was lost; nothing was written.
    LeaseLost,
}

impl Store {
    /// Records that a step attempt starts; `None` when the lease is lost.
    pub async fn start_attempt(
        &self,
        lease: &Lease,
        position: i64,
        step: &str,
        command: &str,
        stdin_preview: Option<&str>,
        summary: &str,
    ) -> Result<Option<i64>> {
        let start = AttemptStart {
            position,
            step: step.to_string(),
            command: command.to_string(),
            stdin_preview: stdin_preview.map(String::from),
            summary: summary.to_string(),
        };
        Ok(
            match self
                .begin_attempt(lease, start, &[], Duration::ZERO)
                .await?
            {
                Started::Attempt(id) => Some(id),
                Started::Busy { .. } | Started::LeaseLost => None,
            },
        )
    }

    /// Takes all of `locks` for the job and records that the attempt starts, in one
    /// transaction: either both happen or neither does.
    pub async fn begin_attempt(
        &self,
        lease: &Lease,
        start: AttemptStart,
        locks: &[String],
        lock_for: Duration,
    ) -> Result<Started> {
        let (lease_, locks) = (lease.clone(), locks.to_vec());
        let started = self
            .write(move |conn| {
                Box::pin(async move {
                    let lease = &lease_;
                    if !fence(conn, lease).await? {
                        return Ok(Write::Keep(Started::LeaseLost));
                    }
                    if let Some((name, holder)) = take_locks(conn, lease, &locks, lock_for).await? {
                        return Ok(Write::Discard(Started::Busy { name, holder }));
                    }
                    let id = record_start(conn, lease, &start).await?;
                    Ok(Write::Keep(Started::Attempt(id)))
                })
            })
            .await?;
        if let Started::Attempt(_) = started {
            self.changed(&lease.job_id);
        }
        Ok(started)
    }

    /// Records a whole attempt that ran nothing (its step had nothing to run) and what follows
    /// for the job, in one transaction. Returns `false` (and writes nothing) when the lease is
    /// lost.
    pub async fn record_attempt(
        &self,
        lease: &Lease,
        start: AttemptStart,
        attempt: &AttemptEnd,
        step: &StepEnd,
        job: &JobEnd,
        secret_ttl: Duration,
    ) -> Result<bool> {
        let lease_ = lease.clone();
        let (attempt, step, job) = (attempt.clone(), step.clone(), job.clone());
        let done = self
            .write(move |conn| {
                Box::pin(async move {
                    let lease = &lease_;
                    if !fence(conn, lease).await? {
                        return Ok(Write::Keep(false));
                    }
                    let id = record_start(conn, lease, &start).await?;
                    end_attempt(conn, lease, id, &attempt, &step).await?;
                    end_job(conn, lease, &job, secret_ttl).await?;
                    Ok(Write::Keep(true))
                })
            })
            .await?;
        if done {
            self.changed(&lease.job_id);
        }
        Ok(done)
    }

    /// Records the end of an attempt, its step and what follows for the job, and releases the
    /// job's resource locks, atomically. Returns `false` (and writes nothing) when the lease is
    /// lost.
    pub async fn finish_attempt(
        &self,
        lease: &Lease,
        attempt_id: i64,
        attempt: &AttemptEnd,
        step: &StepEnd,
        job: &JobEnd,
        secret_ttl: Duration,
    ) -> Result<bool> {
        let lease_ = lease.clone();
        let (attempt, step, job) = (attempt.clone(), step.clone(), job.clone());
        let done = self
            .write(move |conn| {
                Box::pin(async move {
                    let lease = &lease_;
                    if !fence(conn, lease).await? {
                        return Ok(Write::Keep(false));
                    }
                    end_attempt(conn, lease, attempt_id, &attempt, &step).await?;
                    super::lease::delete_locks(conn, &lease.job_id).await?;
                    end_job(conn, lease, &job, secret_ttl).await?;
                    Ok(Write::Keep(true))
                })
            })
            .await?;
        if done {
            self.changed(&lease.job_id);
        }
        Ok(done)
    }

    /// Ends a job without an attempt (nothing left to run, or a step that could not start).
    pub async fn finish_job(
        &self,
        lease: &Lease,
        job: &JobEnd,
        secret_ttl: Duration,
    ) -> Result<bool> {
        let (lease_, job) = (lease.clone(), job.clone());
        let done = self
            .write(move |conn| {
                Box::pin(async move {
                    if !fence(conn, &lease_).await? {
                        return Ok(Write::Keep(false));
                    }
                    end_job(conn, &lease_, &job, secret_ttl).await?;
                    Ok(Write::Keep(true))
                })
            })
            .await?;
        if done {
            self.changed(&lease.job_id);
        }
        Ok(done)
    }

    /// Failed/timed-out attempts of this step in this job that may have changed the cluster
    /// before failing, i.e. anything but a clean, classified permanent failure.
    pub async fn step_may_have_run(
        &self,
        job_id: &str,
        position: i64,
        before: i64,
    ) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM step_attempts WHERE job_id = ? AND position = ? AND id < ?
               AND (outcome IN ('interrupted', 'timed_out', 'canceled') OR error_kind = 'transient')",
        )
        .bind(job_id)
        .bind(position)
        .bind(before)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }
}

/// Records that an attempt starts (the caller fenced); returns its id.
async fn record_start(
    tx: &mut SqliteConnection,
    lease: &Lease,
    start: &AttemptStart,
) -> Result<i64> {
    let now = now_ms();
    // Three statements, one round trip: the job's current step, the step, the attempt.
    let (attempt, id): (i64, i64) = sqlx::query_as(
        "UPDATE jobs SET current_step = ?, summary = ? WHERE id = ?;
         UPDATE job_steps SET status = 'running', attempts = attempts + 1, started_at = COALESCE(started_at, ?)
          WHERE job_id = ? AND position = ?;
         INSERT INTO step_attempts (job_id, position, step, attempt, job_attempt, worker, command, stdin_preview, started_at)
         SELECT ?, ?, ?, attempts, ?, ?, ?, ?, ? FROM job_steps WHERE job_id = ? AND position = ?
         RETURNING attempt, id",
    )
    .bind(&start.step)
    .bind(&start.summary)
    .bind(&lease.job_id)
    .bind(now)
    .bind(&lease.job_id)
    .bind(start.position)
    .bind(&lease.job_id)
    .bind(start.position)
    .bind(&start.step)
    .bind(lease.attempt)
    .bind(&lease.owner)
    .bind(&start.command)
    .bind(&start.stdin_preview)
    .bind(now)
    .bind(&lease.job_id)
    .bind(start.position)
    .fetch_one(&mut *tx)
    .await?;
    let detail = format!("{} attempt {attempt}: {}", start.step, start.command);
    event(
        tx,
        &lease.job_id,
        "step_started",
        Some(lease.attempt),
        Some(&lease.owner),
        Some(&detail),
    )
    .await?;
    Ok(id)
}

/// Records how an attempt ended and what that means for its step.
async fn end_attempt(
    tx: &mut SqliteConnection,
    lease: &Lease,
    attempt_id: i64,
    attempt: &AttemptEnd,
    step: &StepEnd,
) -> Result<()> {
    let now = now_ms();
    let (position, name, step_attempt): (i64, String, i64) = sqlx::query_as(
        "UPDATE step_attempts SET outcome = ?, error_kind = ?, exit_code = ?, stdout = ?, stderr = ?,
                finished_at = ?, duration_ms = ?
         WHERE id = ? AND job_id = ? RETURNING position, step, attempt",
    )
    .bind(attempt.outcome)
    .bind(&attempt.error_kind)
    .bind(attempt.exit_code)
    .bind(&attempt.stdout)
    .bind(&attempt.stderr)
    .bind(now)
    .bind(attempt.duration_ms)
    .bind(attempt_id)
    .bind(&lease.job_id)
    .fetch_one(&mut *tx)
    .await?;
    let (status, output, counted) = match step {
        StepEnd::Succeeded { output } => ("succeeded", output.clone(), false),
        StepEnd::Pending { counted } => ("pending", None, *counted),
        StepEnd::Failed => ("failed", None, true),
        StepEnd::Canceled => ("canceled", None, false),
    };
    sqlx::query(
        "UPDATE job_steps SET status = ?, exit_code = ?, output = COALESCE(?, output),
                failures = failures + ?, finished_at = CASE WHEN ? IN ('succeeded', 'failed', 'canceled') THEN ? END
         WHERE job_id = ? AND position = ?",
    )
    .bind(status)
    .bind(attempt.exit_code)
    .bind(output)
    .bind(i64::from(counted))
    .bind(status)
    .bind(now)
    .bind(&lease.job_id)
    .bind(position)
    .execute(&mut *tx)
    .await?;
    let detail = step_finished_detail(&name, step_attempt, attempt);
    event(
        tx,
        &lease.job_id,
        "step_finished",
        Some(lease.attempt),
        Some(&lease.owner),
        Some(&detail),
    )
    .await
}

/// `create_account attempt 2: failed (exit code 1, transient)`.
fn step_finished_detail(step: &str, step_attempt: i64, end: &AttemptEnd) -> String {
    let exit = end
        .exit_code
        .map_or_else(|| "no exit code".to_string(), |c| format!("exit code {c}"));
    match &end.error_kind {
        Some(kind) => format!(
            "{step} attempt {step_attempt}: {} ({exit}, {kind})",
            end.outcome
        ),
        None => format!("{step} attempt {step_attempt}: {} ({exit})", end.outcome),
    }
}

/// The first statement of every fenced transaction: it writes the job row only if this lease
/// still holds, which also takes SQLite's write lock before anything else is read.
pub(super) async fn fence(tx: &mut SqliteConnection, lease: &Lease) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET updated_at = ? WHERE id = ? AND lease_owner = ? AND attempt = ? AND status = 'running'",
    )
    .bind(now_ms())
    .bind(&lease.job_id)
    .bind(&lease.owner)
    .bind(lease.attempt)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn end_job(
    tx: &mut SqliteConnection,
    lease: &Lease,
    end: &JobEnd,
    ttl: Duration,
) -> Result<()> {
    let now = now_ms();
    let (id, owner, attempt) = (
        &lease.job_id,
        Some(lease.owner.as_str()),
        Some(lease.attempt),
    );
    match end {
        JobEnd::Continue => {}
        JobEnd::Requeue { reason } => {
            super::lease::interrupt_attempts(tx, id).await?;
            super::lease::requeue(tx, id).await?;
            super::lease::delete_locks(tx, id).await?;
            event(tx, id, "interrupted", attempt, owner, Some(reason)).await?;
        }
        JobEnd::Retry { delay, reason } => {
            sqlx::query(
                "UPDATE jobs SET status = 'queued', run_at = ?, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
            )
            .bind(now + ms(*delay))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let detail = format!("retry in {:.1}s: {reason}", delay.as_secs_f64());
            event(tx, id, "retry_scheduled", attempt, owner, Some(&detail)).await?;
        }
        JobEnd::Succeeded { summary }
        | JobEnd::Failed { summary, .. }
        | JobEnd::Canceled { summary } => {
            let (status, error, rest) = match end {
                JobEnd::Failed { error, .. } => ("failed", Some(error.as_str()), "skipped"),
                JobEnd::Canceled { .. } => ("canceled", None, "canceled"),
                _ => ("succeeded", None, "skipped"),
            };
            sqlx::query(
                "UPDATE jobs SET status = ?, summary = ?, error = ?, finished_at = ?, current_step = NULL,
                        lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = ?",
            )
            .bind(status)
            .bind(summary)
            .bind(error)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE job_steps SET status = ? WHERE job_id = ? AND status = 'pending'")
                .bind(rest)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            // A password the client chose is not needed once the job succeeded; a generated one
            // stays retrievable for the TTL.
            sqlx::query(
                "UPDATE job_secrets SET expires_at = ?,
                        password = CASE WHEN ? = 'succeeded' AND generated = 0 THEN NULL ELSE password END
                 WHERE job_id = ?",
            )
            .bind(now + ms(ttl))
            .bind(status)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            super::lease::delete_locks(tx, id).await?;
            if status == "canceled" {
                event(tx, id, "canceled", attempt, owner, Some(summary)).await?;
            }
            event(
                tx,
                id,
                "finished",
                attempt,
                owner,
                Some(&format!("{status}: {summary}")),
            )
            .await?;
        }
    }
    Ok(())
}
