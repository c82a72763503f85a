//! Fenced writes of a worker running a job: attempts, step results and the job's end. Each is
//! one transaction opened with the fence (`tx`); a lost lease writes nothing.

use std::time::Duration;

use sqlx::Executor;

use super::lease::{delete_locks, interrupt_attempts, requeue};
use super::locks::{release_locks, take_locks};
use super::tx::{Write, fence};
use super::{
    AttemptEnd, AttemptEnding, AttemptStart, Finished, JobEnd, Lease, PgStore, Result, Started,
    StepEnd, Then, ms,
};
use crate::domain::{AttemptOutcome, ErrorKind, JobStatus, StepStatus};
use crate::store::handoff::{HandedOff, Parking, still_free};
use crate::store::run::step_finished_detail;

/// The first of `locks` (in name order) held, unexpired, by another job than the lease's, read
/// outside any transaction. A hint only: a lock found free is still taken by the fenced write,
/// which decides; a lock found held is waited for, and its release wakes the waiter (which
/// listens before it tries).
async fn held_by_another(
    pool: &sqlx::PgPool,
    lease: &Lease,
    locks: &[String],
) -> Result<Option<(String, String)>> {
    if locks.is_empty() {
        return Ok(None);
    }
    Ok(sqlx::query_as(
        "SELECT name, job_id FROM resource_locks
          WHERE name = ANY($1) AND job_id <> $2 AND expires_at > now_ms()
          ORDER BY name LIMIT 1",
    )
    .bind(locks)
    .bind(&lease.job_id)
    .fetch_optional(pool)
    .await?)
}

impl PgStore {
    /// Takes all of `locks` for the job and records that the attempt starts, in one
    /// transaction: either both happen or neither does.
    pub async fn begin_attempt(
        &self,
        lease: &Lease,
        start: AttemptStart,
        locks: &[String],
        lock_for: Duration,
    ) -> Result<Started> {
        // Waiters for a busy lock (on every replica) all try again at each release: a read
        // that finds the lock still held by another job answers for the write, which would
        // take the job row, a savepoint and the lock row only to roll them back.
        if let Some((name, holder)) = held_by_another(&self.pool, lease, locks).await? {
            self.want_lock(lease, &name).await?;
            return Ok(Started::Busy { name, holder });
        }
        let Some(mut write) = self.fenced(lease).await? else {
            return Ok(Started::LeaseLost);
        };
        let started = match start_locked(&mut write, lease, &start, locks, lock_for).await? {
            Ok(id) => Started::Attempt(id),
            Err((name, holder)) => Started::Busy { name, holder },
        };
        write.commit(self).await?;
        Ok(started)
    }

    /// Records a whole attempt that ran nothing (its step had nothing to run) and what follows
    /// for the job, in one transaction. `false` (nothing written) when the lease is lost.
    pub async fn record_attempt(
        &self,
        lease: &Lease,
        start: AttemptStart,
        attempt: &AttemptEnd,
        step: &StepEnd,
        job: &JobEnd,
        secret_ttl: Duration,
    ) -> Result<bool> {
        let Some(mut write) = self.fenced(lease).await? else {
            return Ok(false);
        };
        record_whole(&mut write, lease, &start, (attempt, step, job), secret_ttl).await?;
        write.commit(self).await?;
        Ok(true)
    }

    /// Records the end of an attempt, its step and what follows for the job, and releases the
    /// job's resource locks; then, if the job goes on, `then`, all in one transaction: one
    /// commit between two serialized commands. A next attempt that cannot take its locks is not
    /// started (a savepoint discards it); the end is recorded anyway.
    pub async fn finish_attempt_then(
        &self,
        lease: &Lease,
        ending: AttemptEnding,
        then: Then,
        secret_ttl: Duration,
    ) -> Result<Finished> {
        let Some(mut write) = self.fenced(lease).await? else {
            return Ok(Finished::LeaseLost);
        };
        end_attempt(&mut write, lease, ending.id, &ending.attempt, &ending.step).await?;
        let released = release_locks(write.conn(), &lease.job_id).await?;
        end_job(&mut write, lease, &ending.job, secret_ttl).await?;
        let then = match ending.job {
            JobEnd::Continue => then,
            _ => Then::Nothing,
        };
        let (finished, retaken) = match then {
            Then::Nothing => (Finished::Ended, Vec::new()),
            Then::Start {
                start,
                locks,
                lock_for,
            } => match start_locked(&mut write, lease, &start, &locks, lock_for).await? {
                Ok(id) => (Finished::Started(id), locks),
                Err((name, holder)) => (Finished::Busy { name, holder }, Vec::new()),
            },
            Then::Record { start, ending } => {
                let (attempt, step, job) = &*ending;
                record_whole(&mut write, lease, &start, (attempt, step, job), secret_ttl).await?;
                (Finished::Recorded, Vec::new())
            }
        };
        let released: Vec<(String, bool)> = released
            .into_iter()
            .filter(|(name, _)| !retaken.contains(name))
            .collect();
        // Only locks no other replica asked for go to this replica's waiters.
        let offered: Vec<String> = released
            .iter()
            .filter(|(_, wanted)| !wanted)
            .map(|(name, _)| name.clone())
            .collect();
        let handed = hand_off(&mut write, self.notifier.parking(), &offered).await?;
        let free = released.into_iter().map(|(name, _)| name).collect();
        if !still_free(free, handed.as_ref()).is_empty() {
            write.released();
        }
        write.commit(self).await?;
        if let Some(handed) = handed {
            handed.tell();
        }
        Ok(finished)
    }

    /// The attempt at `position` that runs under `lease` and has not ended.
    pub async fn handed_off(&self, lease: &Lease, position: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM step_attempts
              WHERE job_id = $1 AND job_attempt = $2 AND worker = $3 AND position = $4
                AND finished_at IS NULL
              ORDER BY id DESC LIMIT 1",
        )
        .bind(&lease.job_id)
        .bind(lease.attempt)
        .bind(&lease.owner)
        .bind(position)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Ends a job without an attempt (nothing left to run, or a step that could not start).
    /// `false` (nothing written) when the lease is lost.
    pub async fn finish_job(
        &self,
        lease: &Lease,
        job: &JobEnd,
        secret_ttl: Duration,
    ) -> Result<bool> {
        let Some(mut write) = self.fenced(lease).await? else {
            return Ok(false);
        };
        end_job(&mut write, lease, job, secret_ttl).await?;
        write.commit(self).await?;
        Ok(true)
    }

    /// Records the command an attempt just started (`pid`, and `start_time` from
    /// `/proc/<pid>/stat`), so that a process that takes the job over can stop it if it still
    /// runs. A multi-command attempt keeps its latest command. `false` (nothing written) when
    /// the lease is lost. Fenced, but not announced: nothing a reader sees changed.
    pub async fn record_command(
        &self,
        lease: &Lease,
        attempt_id: i64,
        pid: i32,
        start_time: u64,
    ) -> Result<bool> {
        let Some(mut write) = self.fenced(lease).await? else {
            return Ok(false);
        };
        sqlx::query(
            "UPDATE step_attempts SET pid = $1, pid_start = $2 WHERE id = $3 AND job_id = $4",
        )
        .bind(i64::from(pid))
        .bind(i64::try_from(start_time).unwrap_or(i64::MAX))
        .bind(attempt_id)
        .bind(&lease.job_id)
        .execute(write.conn())
        .await?;
        write.commit(self).await?;
        Ok(true)
    }

    /// Whether an earlier attempt (id below `before`) of this step may have changed the cluster
    /// before failing: anything but a clean, classified permanent failure.
    pub async fn step_may_have_run(
        &self,
        job_id: &str,
        position: i64,
        before: i64,
    ) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM step_attempts
                             WHERE job_id = $1 AND position = $2 AND id < $3
                               AND (outcome IN ('interrupted', 'timed_out', 'canceled')
                                    OR error_kind = 'transient'))",
        )
        .bind(job_id)
        .bind(position)
        .bind(before)
        .fetch_one(&self.pool)
        .await?)
    }
}

/// Records that an attempt starts (the caller fenced); returns its id.
async fn record_start(write: &mut Write, lease: &Lease, start: &AttemptStart) -> Result<i64> {
    sqlx::query("UPDATE jobs SET current_step = $1, summary = $2 WHERE id = $3")
        .bind(&start.step)
        .bind(&start.summary)
        .bind(&lease.job_id)
        .execute(write.conn())
        .await?;
    let attempt: i64 = sqlx::query_scalar(
        "UPDATE job_steps SET status = 'running', attempts = attempts + 1,
                started_at = COALESCE(started_at, now_ms())
          WHERE job_id = $1 AND position = $2 RETURNING attempts",
    )
    .bind(&lease.job_id)
    .bind(start.position)
    .fetch_one(write.conn())
    .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO step_attempts (job_id, position, step, attempt, job_attempt, worker, command,
                                    stdin_preview, started_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now_ms()) RETURNING id",
    )
    .bind(&lease.job_id)
    .bind(start.position)
    .bind(&start.step)
    .bind(attempt)
    .bind(lease.attempt)
    .bind(&lease.owner)
    .bind(&start.command)
    .bind(&start.stdin_preview)
    .fetch_one(write.conn())
    .await?;
    let detail = format!("{} attempt {attempt}: {}", start.step, start.command);
    write
        .event(
            "step_started",
            Some(lease.attempt),
            Some(&lease.owner),
            Some(&detail),
        )
        .await?;
    write.changed();
    Ok(id)
}

/// Takes `locks` and records that the attempt starts (the caller fenced). When a lock is held
/// by another job, nothing of this is kept (rolled back to a savepoint: the locks taken before
/// the busy one are given back) and `Err((name, holder))`.
async fn start_locked(
    write: &mut Write,
    lease: &Lease,
    start: &AttemptStart,
    locks: &[String],
    lock_for: Duration,
) -> Result<std::result::Result<i64, (String, String)>> {
    if locks.is_empty() {
        // Nothing to take, nothing to undo: no savepoint.
        return Ok(Ok(record_start(write, lease, start).await?));
    }
    write.conn().execute("SAVEPOINT start").await?;
    if let Some(busy) = take_locks(write.conn(), lease, locks, lock_for).await? {
        write
            .conn()
            .execute("ROLLBACK TO SAVEPOINT start; RELEASE SAVEPOINT start")
            .await?;
        return Ok(Err(busy));
    }
    write.conn().execute("RELEASE SAVEPOINT start").await?;
    let id = record_start(write, lease, start).await?;
    Ok(Ok(id))
}

/// Starts the attempt parked longest for locks among `free`, fenced on its own lease, in
/// the caller's transaction (see `handoff`). A waiter whose lease is lost is dropped from the
/// queue (it hears so and tries itself) and the next one is tried.
///
/// The waiter's job row is locked here after the holder's, and its locks are rows this
/// transaction deleted: no cycle can form, as a parked waiter runs no transaction of its own
/// but its lease renewal, which takes nothing of the holder's.
async fn hand_off(
    write: &mut Write,
    parking: &Parking,
    free: &[String],
) -> Result<Option<HandedOff>> {
    while let Some(waiter) = parking.take(free) {
        if !fence(write.conn(), &waiter.lease).await? {
            continue;
        }
        let own = write.retarget(&waiter.lease.job_id);
        let started = start_locked(
            write,
            &waiter.lease,
            &waiter.start,
            &waiter.locks,
            waiter.lock_for,
        )
        .await;
        write.retarget(&own);
        if let Ok(id) = started? {
            return Ok(Some(waiter.started(id)));
        }
    }
    Ok(None)
}

/// Records a whole attempt that ran nothing, and what follows for its job (the caller fenced).
async fn record_whole(
    write: &mut Write,
    lease: &Lease,
    start: &AttemptStart,
    (attempt, step, job): (&AttemptEnd, &StepEnd, &JobEnd),
    ttl: Duration,
) -> Result<()> {
    let id = record_start(write, lease, start).await?;
    end_attempt(write, lease, id, attempt, step).await?;
    end_job(write, lease, job, ttl).await
}

/// Records how an attempt ended and what that means for its step.
async fn end_attempt(
    write: &mut Write,
    lease: &Lease,
    attempt_id: i64,
    attempt: &AttemptEnd,
    step: &StepEnd,
) -> Result<()> {
    let (position, name, step_attempt): (i64, String, i64) = sqlx::query_as(
        "UPDATE step_attempts SET outcome = $1, error_kind = $2, exit_code = $3, stdout = $4,
                stderr = $5, finished_at = now_ms(), duration_ms = $6
          WHERE id = $7 AND job_id = $8 RETURNING position, step, attempt",
    )
    // An attempt still running has no outcome yet.
    .bind((attempt.outcome != AttemptOutcome::Running).then(|| attempt.outcome.as_str()))
    .bind(attempt.error_kind.as_ref().map(ErrorKind::as_str))
    .bind(attempt.exit_code)
    .bind(&attempt.stdout)
    .bind(&attempt.stderr)
    .bind(attempt.duration_ms)
    .bind(attempt_id)
    .bind(&lease.job_id)
    .fetch_one(write.conn())
    .await?;
    let (status, output, counted) = match step {
        StepEnd::Succeeded { output } => (StepStatus::Succeeded, output.as_deref(), false),
        StepEnd::Pending { counted } => (StepStatus::Pending, None, *counted),
        StepEnd::Failed => (StepStatus::Failed, None, true),
        StepEnd::Canceled => (StepStatus::Canceled, None, false),
    };
    sqlx::query(
        "UPDATE job_steps SET status = $1, exit_code = $2, output = COALESCE($3::jsonb, output),
                failures = failures + $4, finished_at = CASE WHEN $5 THEN now_ms() END
          WHERE job_id = $6 AND position = $7",
    )
    .bind(status.as_str())
    .bind(attempt.exit_code)
    .bind(output)
    .bind(i64::from(counted))
    .bind(status.is_final())
    .bind(&lease.job_id)
    .bind(position)
    .execute(write.conn())
    .await?;
    let detail = step_finished_detail(&name, step_attempt, attempt);
    write
        .event(
            "step_finished",
            Some(lease.attempt),
            Some(&lease.owner),
            Some(&detail),
        )
        .await?;
    write.changed();
    Ok(())
}

/// What follows an attempt (or no attempt) for the job (the caller fenced).
async fn end_job(write: &mut Write, lease: &Lease, end: &JobEnd, ttl: Duration) -> Result<()> {
    let (id, owner, attempt) = (
        lease.job_id.as_str(),
        Some(lease.owner.as_str()),
        Some(lease.attempt),
    );
    match end {
        JobEnd::Continue => {}
        JobEnd::Requeue { reason } => {
            interrupt_attempts(write.conn(), id).await?;
            requeue(write.conn(), id).await?;
            if delete_locks(write.conn(), id).await? {
                write.released();
            }
            write
                .event("interrupted", attempt, owner, Some(reason))
                .await?;
            write.changed();
            write.queued();
        }
        JobEnd::Retry { delay, reason } => {
            sqlx::query(
                "UPDATE jobs SET status = 'queued', run_at = now_ms() + $1, lease_owner = NULL,
                        lease_expires_at = NULL
                  WHERE id = $2",
            )
            .bind(ms(*delay))
            .bind(id)
            .execute(write.conn())
            .await?;
            let detail = format!("retry in {:.1}s: {reason}", delay.as_secs_f64());
            write
                .insert_event(
                    "retry_scheduled",
                    attempt,
                    owner,
                    Some(&detail),
                    Some(ms(*delay)),
                )
                .await?;
            write.changed();
            write.queued();
        }
        JobEnd::Succeeded { summary }
        | JobEnd::Failed { summary, .. }
        | JobEnd::Canceled { summary } => {
            let (status, error, rest) = match end {
                JobEnd::Failed { error, .. } => {
                    (JobStatus::Failed, Some(error.as_str()), StepStatus::Skipped)
                }
                JobEnd::Canceled { .. } => (JobStatus::Canceled, None, StepStatus::Canceled),
                _ => (JobStatus::Succeeded, None, StepStatus::Skipped),
            };
            sqlx::query(
                "UPDATE jobs SET status = $1, summary = $2, error = $3::jsonb,
                        finished_at = now_ms(), current_step = NULL, lease_owner = NULL,
                        lease_expires_at = NULL
                  WHERE id = $4",
            )
            .bind(status.as_str())
            .bind(summary)
            .bind(error)
            .bind(id)
            .execute(write.conn())
            .await?;
            sqlx::query(
                "UPDATE job_steps SET status = $1 WHERE job_id = $2 AND status = 'pending'",
            )
            .bind(rest.as_str())
            .bind(id)
            .execute(write.conn())
            .await?;
            // A password the client chose is not needed once the job succeeded; a generated one
            // stays retrievable for the TTL.
            sqlx::query(
                "UPDATE job_secrets SET expires_at = now_ms() + $1,
                        password = CASE WHEN $2 AND NOT generated THEN NULL ELSE password END
                  WHERE job_id = $3",
            )
            .bind(ms(ttl))
            .bind(status == JobStatus::Succeeded)
            .bind(id)
            .execute(write.conn())
            .await?;
            if delete_locks(write.conn(), id).await? {
                write.released();
            }
            if status == JobStatus::Canceled {
                write
                    .event("canceled", attempt, owner, Some(summary))
                    .await?;
            }
            write
                .event(
                    "finished",
                    attempt,
                    owner,
                    Some(&format!("{status}: {summary}")),
                )
                .await?;
            write.changed();
        }
    }
    Ok(())
}
