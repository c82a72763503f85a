//! Claiming jobs, keeping and losing leases, and recovering after a crash.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::read::read_job_with_steps;
use super::{
    Claimed, Lease, RecordedCommand, Recovered, Result, SqliteStore, StoreError, Write, event, ms,
    now_ms,
};

/// Takes the job that is due first (queued and due, or running with an expired lease): `?1` the
/// worker, `?2` the lease's expiry, `?3` now. Both candidates are read through partial indexes
/// (`jobs_due`, `jobs_leased`), named with `INDEXED BY`: without statistics SQLite would rather
/// read every queued (or running) job through `jobs_status_created` and sort them.
/// `history::plan_tests` checks the plan.
pub(super) const CLAIM_SQL: &str =
    "UPDATE jobs SET status = 'running', attempt = attempt + 1, previous_owner = lease_owner,
        lease_owner = ?1, lease_expires_at = ?2, started_at = COALESCE(started_at, ?3),
        updated_at = ?3
 WHERE id = (SELECT id FROM (
        SELECT id, due FROM (SELECT id, run_at AS due FROM jobs INDEXED BY jobs_due
            WHERE status = 'queued' AND run_at <= ?3 ORDER BY run_at, id LIMIT 1)
        UNION ALL
        SELECT id, due FROM (SELECT id, lease_expires_at AS due FROM jobs INDEXED BY jobs_leased
            WHERE status = 'running' AND lease_expires_at <= ?3 ORDER BY lease_expires_at LIMIT 1)
     ) ORDER BY due LIMIT 1)
 RETURNING id, attempt, previous_owner";

/// The earliest `run_at` of a queued job or lease expiry of a running one (first entries of the
/// same partial indexes).
pub(super) const NEXT_DUE_SQL: &str = "SELECT MIN(t) FROM (
    SELECT MIN(run_at) AS t FROM jobs INDEXED BY jobs_due WHERE status = 'queued'
    UNION ALL
    SELECT MIN(lease_expires_at) FROM jobs INDEXED BY jobs_leased WHERE status = 'running')";

impl SqliteStore {
    /// Claims the job that is due first (queued and due, or running with an expired lease) with
    /// one atomic `UPDATE … RETURNING`, and loads what the worker needs to run it.
    pub async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<Claimed>> {
        let worker = worker.to_string();
        let claimed = self
            .write(move |conn| claim(conn, worker, lease).map(Write::Keep))
            .await?;
        if let Some(claimed) = &claimed {
            self.changed(&claimed.lease.job_id);
        }
        Ok(claimed)
    }

    /// Extends the lease and the job's resource locks; `false` means the lease was lost
    /// (expired and taken, or the job left `running`).
    pub async fn renew(&self, lease: &Lease, duration: Duration) -> Result<bool> {
        let lease = lease.clone();
        self.write(move |conn| {
            let until = now_ms() + ms(duration);
            let done = conn
                .prepare_cached(
                    "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND attempt = ? AND status = 'running'",
                )?
                .execute(params![until, lease.job_id, lease.owner, lease.attempt])?;
            if done != 1 {
                return Ok(Write::Keep(false));
            }
            conn.prepare_cached(
                "UPDATE resource_locks SET expires_at = ? WHERE job_id = ? AND owner = ?",
            )?
            .execute(params![until, lease.job_id, lease.owner])?;
            Ok(Write::Keep(true))
        })
        .await
    }

    /// Puts back in the queue, at once, the jobs that earlier processes of this host left
    /// running: their owner is dead, so there is no need to wait for the lease to expire.
    pub async fn recover_host(&self, host_prefix: &str, me: &str) -> Result<Vec<Recovered>> {
        let (host_prefix, me) = (host_prefix.to_string(), me.to_string());
        let recovered = self
            .write(move |conn| recover(conn, &host_prefix, &me).map(Write::Keep))
            .await?;
        recovered.iter().for_each(|r| self.changed(&r.job_id));
        Ok(recovered)
    }

    /// The recorded commands of the unfinished (or interrupted) attempts of the jobs that earlier
    /// processes of this host left running: they may still run, and must be stopped before
    /// [`Store::recover_host`] puts their jobs back in the queue.
    pub async fn commands_left_by_host(
        &self,
        host_prefix: &str,
        me: &str,
    ) -> Result<Vec<RecordedCommand>> {
        let (host_prefix, me) = (host_prefix.to_string(), me.to_string());
        self.write(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT a.job_id, a.worker, a.pid, a.pid_start FROM jobs j JOIN step_attempts a ON a.job_id = j.id
                 WHERE j.status = 'running' AND substr(j.lease_owner, 1, length(?1)) = ?1
                   AND j.lease_owner <> ?2 AND a.pid IS NOT NULL
                   AND (a.outcome IS NULL OR a.outcome = 'interrupted')",
            )?;
            let rows = statement
                .query_map(params![host_prefix, me], recorded_command)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Write::Keep(rows))
        })
        .await
    }

    /// How many jobs are queued and how many are running.
    pub async fn queue_counts(&self) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE status = 'queued'),
                    (SELECT COUNT(*) FROM jobs WHERE status = 'running')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// The earliest time something becomes claimable (a queued job's `run_at` or a lease expiry).
    pub async fn next_due(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(NEXT_DUE_SQL)
            .fetch_one(&self.pool)
            .await?)
    }
}

/// Marks the job's unfinished attempts `interrupted` and their steps `pending` again.
pub(super) fn interrupt_attempts(tx: &Connection, job_id: &str) -> Result<usize> {
    let now = now_ms();
    let done = tx
        .prepare_cached(
            "UPDATE step_attempts SET outcome = 'interrupted', error_kind = 'interrupted', finished_at = ?1,
                    duration_ms = ?1 - started_at
             WHERE job_id = ?2 AND outcome IS NULL",
        )?
        .execute(params![now, job_id])?;
    tx.prepare_cached(
        "UPDATE job_steps SET status = 'pending' WHERE job_id = ? AND status = 'running'",
    )?
    .execute([job_id])?;
    Ok(done)
}

/// Returns a job to the queue, due now, without an owner.
pub(super) fn requeue(tx: &Connection, job_id: &str) -> Result<()> {
    tx.prepare_cached(
        "UPDATE jobs SET status = 'queued', run_at = ?1, lease_owner = NULL, lease_expires_at = NULL,
                updated_at = ?1
         WHERE id = ?2",
    )?
    .execute(params![now_ms(), job_id])?;
    Ok(())
}

/// Drops the resource locks a job holds; returns their names.
pub(super) fn delete_locks(tx: &Connection, job_id: &str) -> Result<Vec<String>> {
    let names = tx
        .prepare_cached("DELETE FROM resource_locks WHERE job_id = ? RETURNING name")?
        .query_map([job_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(names)
}

fn claim(tx: &Connection, worker: String, lease: Duration) -> Result<Option<Claimed>> {
    let now = now_ms();
    let claimed: Option<(String, i64, Option<String>)> = tx
        .prepare_cached(CLAIM_SQL)?
        .query_row(params![worker, now + ms(lease), now], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((job_id, attempt, previous_owner)) = claimed else {
        return Ok(None);
    };
    let mut left_running = Vec::new();
    if let Some(previous) = &previous_owner {
        left_running = commands_left(tx, &job_id)?;
        let interrupted = interrupt_attempts(tx, &job_id)?;
        let detail = format!(
            "lease of {previous} expired; {interrupted} running attempt(s) marked interrupted"
        );
        event(
            tx,
            &job_id,
            "lease_expired",
            Some(attempt - 1),
            Some(previous),
            Some(&detail),
        )?;
    }
    let detail = match &previous_owner {
        Some(previous) => format!(
            "claim {attempt}, taking over from {previous}; lease {:.1}s",
            lease.as_secs_f64()
        ),
        None => format!("claim {attempt}; lease {:.1}s", lease.as_secs_f64()),
    };
    event(
        tx,
        &job_id,
        "claimed",
        Some(attempt),
        Some(&worker),
        Some(&detail),
    )?;
    let (job, steps) = read_job_with_steps(tx, &job_id)?
        .ok_or_else(|| StoreError::Corrupt(format!("claimed job {job_id} cannot be read")))?;
    let password: Option<String> = tx
        .prepare_cached(
            "SELECT password FROM job_secrets WHERE job_id = ? AND (expires_at IS NULL OR expires_at > ?)",
        )?
        .query_row(params![job_id, now], |r| r.get(0))
        .optional()?
        .flatten();
    let lease = Lease {
        job_id,
        owner: worker,
        attempt,
    };
    Ok(Some(Claimed {
        lease,
        job,
        steps,
        password,
        taken_over: previous_owner.is_some(),
        left_running,
    }))
}

/// The recorded commands of the job's attempts that did not end (or ended interrupted, their
/// command not waited for).
fn commands_left(tx: &Connection, job_id: &str) -> Result<Vec<RecordedCommand>> {
    Ok(tx
        .prepare_cached(
            "SELECT job_id, worker, pid, pid_start FROM step_attempts
             WHERE job_id = ? AND pid IS NOT NULL AND (outcome IS NULL OR outcome = 'interrupted')",
        )?
        .query_map([job_id], recorded_command)?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

fn recorded_command(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordedCommand> {
    Ok(RecordedCommand {
        job_id: r.get(0)?,
        worker: r.get(1)?,
        pid: r.get(2)?,
        start_time: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
    })
}

fn recover(tx: &Connection, host_prefix: &str, me: &str) -> Result<Vec<Recovered>> {
    let rows = tx
        .prepare_cached(
            "SELECT id, lease_owner, attempt FROM jobs WHERE status = 'running'
               AND substr(lease_owner, 1, length(?1)) = ?1 AND lease_owner <> ?2",
        )?
        .query_map(params![host_prefix, me], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut recovered = Vec::with_capacity(rows.len());
    for (job_id, owner, attempt) in rows {
        let interrupted = interrupt_attempts(tx, &job_id)?;
        requeue(tx, &job_id)?;
        delete_locks(tx, &job_id)?;
        let detail = format!(
            "previous process {owner} stopped; {interrupted} running attempt(s) marked interrupted; resuming at the first unfinished step"
        );
        event(
            tx,
            &job_id,
            "recovered",
            Some(attempt),
            Some(me),
            Some(&detail),
        )?;
        recovered.push(Recovered {
            job_id,
            previous_owner: owner,
        });
    }
    Ok(recovered)
}
