//! Fenced writes of a worker running a job: attempts, step results and the job's end.

use std::time::Duration;

use rusqlite::{Connection, params};

use super::locks::take_locks;
use super::writer::control;
use super::{
    AttemptEnd, AttemptEnding, AttemptStart, Finished, JobEnd, Lease, Result, SqliteStore, Started,
    StepEnd, Then, Write, event, ms, now_ms,
};
use crate::domain::{AttemptOutcome, ErrorKind, JobStatus, StepStatus};
use crate::store::handoff::{HandedOff, Parking, still_free};
use crate::store::run::step_finished_detail;

impl SqliteStore {
    /// Records that a step attempt starts; `None` when the lease is lost.
    #[cfg(test)]
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
        let locks = locks.to_vec();
        let started = self
            .fenced(lease, false, move |conn, lease| {
                Ok(match start_locked(conn, lease, &start, &locks, lock_for)? {
                    Ok(id) => Started::Attempt(id),
                    Err((name, holder)) => Started::Busy { name, holder },
                })
            })
            .await?;
        Ok(started.unwrap_or(Started::LeaseLost))
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
        let ending = (attempt.clone(), step.clone(), job.clone());
        let done = self
            .fenced(lease, false, move |conn, lease| {
                record_whole(conn, lease, &start, &ending, secret_ttl)
            })
            .await?;
        Ok(done.is_some())
    }

    /// Records the end of an attempt, its step and what follows for the job, and releases the
    /// job's resource locks, atomically. Returns `false` (and writes nothing) when the lease is
    /// lost.
    #[cfg(test)]
    pub async fn finish_attempt(
        &self,
        lease: &Lease,
        attempt_id: i64,
        attempt: &AttemptEnd,
        step: &StepEnd,
        job: &JobEnd,
        secret_ttl: Duration,
    ) -> Result<bool> {
        let ending = AttemptEnding {
            id: attempt_id,
            attempt: attempt.clone(),
            step: step.clone(),
            job: job.clone(),
        };
        let finished = self
            .finish_attempt_then(lease, ending, Then::Nothing, secret_ttl)
            .await?;
        Ok(finished != Finished::LeaseLost)
    }

    /// Records the end of an attempt, its step and what follows for the job, and releases the
    /// job's resource locks; then, if the job goes on, `then`, all in one transaction. A next
    /// attempt that cannot take its locks is not started; the end is recorded anyway. A lock
    /// released and not taken again by `then` goes to the attempt parked longest for it (see
    /// `handoff`), started in the same transaction; only locks left free wake the waiters.
    pub async fn finish_attempt_then(
        &self,
        lease: &Lease,
        ending: AttemptEnding,
        then: Then,
        secret_ttl: Duration,
    ) -> Result<Finished> {
        let parking = self.notifier.parking().clone();
        let done = self
            .fenced(lease, false, move |conn, lease| {
                end_attempt(conn, lease, ending.id, &ending.attempt, &ending.step)?;
                let released = super::lease::delete_locks(conn, &lease.job_id)?;
                end_job(conn, lease, &ending.job, secret_ttl)?;
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
                    } => match start_locked(conn, lease, &start, &locks, lock_for)? {
                        Ok(id) => (Finished::Started(id), locks),
                        Err((name, holder)) => (Finished::Busy { name, holder }, Vec::new()),
                    },
                    Then::Record { start, ending } => {
                        record_whole(conn, lease, &start, &ending, secret_ttl)?;
                        (Finished::Recorded, Vec::new())
                    }
                };
                let free: Vec<String> = released
                    .into_iter()
                    .filter(|name| !retaken.contains(name))
                    .collect();
                let handed = hand_off(conn, &parking, &free)?;
                Ok((finished, free, handed))
            })
            .await?;
        let Some((finished, free, handed)) = done else {
            return Ok(Finished::LeaseLost);
        };
        if !still_free(free, handed.as_ref()).is_empty() {
            self.notifier.locks_released();
        }
        if let Some(handed) = handed {
            self.changed(&handed.job_id);
            handed.tell();
        }
        Ok(finished)
    }

    /// The attempt at `position` that runs under `lease` and has not ended.
    pub async fn handed_off(&self, lease: &Lease, position: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM step_attempts
              WHERE job_id = ? AND job_attempt = ? AND worker = ? AND position = ?
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
    pub async fn finish_job(
        &self,
        lease: &Lease,
        job: &JobEnd,
        secret_ttl: Duration,
    ) -> Result<bool> {
        let job = job.clone();
        let done = self
            .fenced(lease, true, move |conn, lease| {
                end_job(conn, lease, &job, secret_ttl)
            })
            .await?;
        Ok(done.is_some())
    }

    /// Runs `op` in a write fenced on `lease`: `None`, with nothing written, when the lease is
    /// lost; otherwise the job's change is announced after the commit. `releases_locks` for a
    /// write that may release the job's resource locks (see `write_releasing_locks`).
    async fn fenced<T, F>(&self, lease: &Lease, releases_locks: bool, op: F) -> Result<Option<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Lease) -> Result<T> + Send + 'static,
    {
        let held = lease.clone();
        let op = move |conn: &Connection| {
            if !fence(conn, &held)? {
                return Ok(Write::Keep(None));
            }
            op(conn, &held).map(|v| Write::Keep(Some(v)))
        };
        let done = if releases_locks {
            self.write_releasing_locks(op).await?
        } else {
            self.write(op).await?
        };
        if done.is_some() {
            self.changed(&lease.job_id);
        }
        Ok(done)
    }

    /// Records the command an attempt just started (`pid`, and `start_time` from
    /// `/proc/<pid>/stat`), so that a process that takes the job over can stop it if it still
    /// runs. A multi-command attempt keeps its latest command. `false` (nothing written) when
    /// the lease is lost.
    pub async fn record_command(
        &self,
        lease: &Lease,
        attempt_id: i64,
        pid: i32,
        start_time: u64,
    ) -> Result<bool> {
        let start_time = i64::try_from(start_time).unwrap_or(i64::MAX);
        let lease = lease.clone();
        // Fenced, but not announced as a change: nothing a reader sees changed.
        self.write(move |conn| {
            if !fence(conn, &lease)? {
                return Ok(Write::Keep(false));
            }
            conn.prepare_cached(
                "UPDATE step_attempts SET pid = ?, pid_start = ? WHERE id = ? AND job_id = ?",
            )?
            .execute(params![pid, start_time, attempt_id, lease.job_id])?;
            Ok(Write::Keep(true))
        })
        .await
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
fn record_start(tx: &Connection, lease: &Lease, start: &AttemptStart) -> Result<i64> {
    let now = now_ms();
    tx.prepare_cached("UPDATE jobs SET current_step = ?, summary = ? WHERE id = ?")?
        .execute(params![start.step, start.summary, lease.job_id])?;
    let attempt: i64 = tx
        .prepare_cached(
            "UPDATE job_steps SET status = 'running', attempts = attempts + 1, started_at = COALESCE(started_at, ?)
             WHERE job_id = ? AND position = ? RETURNING attempts",
        )?
        .query_row(params![now, lease.job_id, start.position], |r| r.get(0))?;
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO step_attempts (job_id, position, step, attempt, job_attempt, worker, command, stdin_preview, started_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )?
        .query_row(
            params![
                lease.job_id,
                start.position,
                start.step,
                attempt,
                lease.attempt,
                lease.owner,
                start.command,
                start.stdin_preview,
                now
            ],
            |r| r.get(0),
        )?;
    let detail = format!("{} attempt {attempt}: {}", start.step, start.command);
    event(
        tx,
        &lease.job_id,
        "step_started",
        Some(lease.attempt),
        Some(&lease.owner),
        Some(&detail),
    )?;
    Ok(id)
}

/// Takes `locks` and records that the attempt starts (the caller fenced). When a lock is held
/// by another job, nothing of this is kept (a nested savepoint) and `Err((name, holder))`.
fn start_locked(
    tx: &Connection,
    lease: &Lease,
    start: &AttemptStart,
    locks: &[String],
    lock_for: Duration,
) -> Result<std::result::Result<i64, (String, String)>> {
    control(tx, "SAVEPOINT start")?;
    if let Some(busy) = take_locks(tx, lease, locks, lock_for)? {
        control(tx, "ROLLBACK TO start")?;
        control(tx, "RELEASE start")?;
        return Ok(Err(busy));
    }
    let id = record_start(tx, lease, start)?;
    control(tx, "RELEASE start")?;
    Ok(Ok(id))
}

/// Starts the attempt parked longest for locks among `free`, fenced on its own lease, in
/// the caller's transaction. A waiter whose lease is lost is dropped from the queue (it
/// hears so and tries itself) and the next one is tried.
fn hand_off(tx: &Connection, parking: &Parking, free: &[String]) -> Result<Option<HandedOff>> {
    while let Some(waiter) = parking.take(free) {
        if !fence(tx, &waiter.lease)? {
            continue;
        }
        let started = start_locked(
            tx,
            &waiter.lease,
            &waiter.start,
            &waiter.locks,
            waiter.lock_for,
        )?;
        if let Ok(id) = started {
            return Ok(Some(waiter.started(id)));
        }
    }
    Ok(None)
}

/// Records a whole attempt that ran nothing, and what follows for its job (the caller fenced).
fn record_whole(
    tx: &Connection,
    lease: &Lease,
    start: &AttemptStart,
    (attempt, step, job): &(AttemptEnd, StepEnd, JobEnd),
    ttl: Duration,
) -> Result<()> {
    let id = record_start(tx, lease, start)?;
    end_attempt(tx, lease, id, attempt, step)?;
    end_job(tx, lease, job, ttl)
}

/// Records how an attempt ended and what that means for its step.
fn end_attempt(
    tx: &Connection,
    lease: &Lease,
    attempt_id: i64,
    attempt: &AttemptEnd,
    step: &StepEnd,
) -> Result<()> {
    let now = now_ms();
    let (position, name, step_attempt): (i64, String, i64) = tx
        .prepare_cached(
            "UPDATE step_attempts SET outcome = ?, error_kind = ?, exit_code = ?, stdout = ?, stderr = ?,
                    finished_at = ?, duration_ms = ?
             WHERE id = ? AND job_id = ? RETURNING position, step, attempt",
        )?
        .query_row(
            params![
                // An attempt still running has no outcome yet.
                (attempt.outcome != AttemptOutcome::Running).then(|| attempt.outcome.as_str()),
                attempt.error_kind.as_ref().map(ErrorKind::as_str),
                attempt.exit_code,
                attempt.stdout,
                attempt.stderr,
                now,
                attempt.duration_ms,
                attempt_id,
                lease.job_id
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
    let (status, output, counted) = match step {
        StepEnd::Succeeded { output } => (StepStatus::Succeeded, output.as_deref(), false),
        StepEnd::Pending { counted } => (StepStatus::Pending, None, *counted),
        StepEnd::Failed => (StepStatus::Failed, None, true),
        StepEnd::Canceled => (StepStatus::Canceled, None, false),
    };
    tx.prepare_cached(
        "UPDATE job_steps SET status = ?1, exit_code = ?2, output = COALESCE(?3, output),
                failures = failures + ?4, finished_at = CASE WHEN ?8 THEN ?5 END
         WHERE job_id = ?6 AND position = ?7",
    )?
    .execute(params![
        status.as_str(),
        attempt.exit_code,
        output,
        i64::from(counted),
        now,
        lease.job_id,
        position,
        status.is_final()
    ])?;
    let detail = step_finished_detail(&name, step_attempt, attempt);
    event(
        tx,
        &lease.job_id,
        "step_finished",
        Some(lease.attempt),
        Some(&lease.owner),
        Some(&detail),
    )
}

/// The first statement of every fenced transaction: it writes the job row only if this lease
/// still holds.
pub(super) fn fence(tx: &Connection, lease: &Lease) -> Result<bool> {
    let done = tx
        .prepare_cached(
            "UPDATE jobs SET updated_at = ? WHERE id = ? AND lease_owner = ? AND attempt = ? AND status = 'running'",
        )?
        .execute(params![now_ms(), lease.job_id, lease.owner, lease.attempt])?;
    Ok(done == 1)
}

fn end_job(tx: &Connection, lease: &Lease, end: &JobEnd, ttl: Duration) -> Result<()> {
    let now = now_ms();
    let (id, owner, attempt) = (
        &lease.job_id,
        Some(lease.owner.as_str()),
        Some(lease.attempt),
    );
    match end {
        JobEnd::Continue => {}
        JobEnd::Requeue { reason } => {
            super::lease::interrupt_attempts(tx, id)?;
            super::lease::requeue(tx, id)?;
            super::lease::delete_locks(tx, id)?;
            event(tx, id, "interrupted", attempt, owner, Some(reason))?;
        }
        JobEnd::Retry { delay, reason } => {
            let due = super::RetryDue {
                at: now + ms(*delay),
                delay_ms: ms(*delay),
            };
            tx.prepare_cached(
                "UPDATE jobs SET status = 'queued', run_at = ?, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
            )?
            .execute(params![due.at, id])?;
            let detail = format!("retry in {:.1}s: {reason}", delay.as_secs_f64());
            super::insert_event(
                tx,
                id,
                "retry_scheduled",
                attempt,
                owner,
                Some(&detail),
                Some(due),
            )?;
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
            tx.prepare_cached(
                "UPDATE jobs SET status = ?, summary = ?, error = ?, finished_at = ?, current_step = NULL,
                        lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = ?",
            )?
            .execute(params![status.as_str(), summary, error, now, id])?;
            tx.prepare_cached(
                "UPDATE job_steps SET status = ? WHERE job_id = ? AND status = 'pending'",
            )?
            .execute(params![rest.as_str(), id])?;
            // A password the client chose is not needed once the job succeeded; a generated one
            // stays retrievable for the TTL.
            tx.prepare_cached(
                "UPDATE job_secrets SET expires_at = ?,
                        password = CASE WHEN ? AND generated = 0 THEN NULL ELSE password END
                 WHERE job_id = ?",
            )?
            .execute(params![now + ms(ttl), status == JobStatus::Succeeded, id])?;
            super::lease::delete_locks(tx, id)?;
            if status == JobStatus::Canceled {
                event(tx, id, "canceled", attempt, owner, Some(summary))?;
            }
            event(
                tx,
                id,
                "finished",
                attempt,
                owner,
                Some(&format!("{status}: {summary}")),
            )?;
        }
    }
    Ok(())
}
