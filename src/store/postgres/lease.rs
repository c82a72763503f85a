//! Claiming jobs and keeping leases, across replicas.

use std::time::Duration;

use sqlx::postgres::PgConnection;

use super::claim::{CLAIM_SQL, NEXT_DUE_SQL};
use super::read::read_job_with_steps;
use super::{Claimed, Lease, PgStore, RecordedCommand, Result, StoreError, ms};

impl PgStore {
    /// Claims the job that is due first (queued and due, or running with an expired lease, see
    /// [`CLAIM_SQL`]) and, in the same transaction, does the bookkeeping of a takeover and loads
    /// what the worker needs to run it.
    pub async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<Claimed>> {
        let mut write = self.write("").await?;
        let claimed: Option<(String, i64, Option<String>)> = sqlx::query_as(CLAIM_SQL)
            .bind(worker)
            .bind(ms(lease))
            .fetch_optional(write.conn())
            .await?;
        let Some((job_id, attempt, previous_owner)) = claimed else {
            // Nothing was written: the transaction is rolled back as it is dropped.
            return Ok(None);
        };
        let mut write = write.about(&job_id);
        let mut left_running = Vec::new();
        if let Some(previous) = &previous_owner {
            left_running = commands_left(write.conn(), &job_id).await?;
            let interrupted = interrupt_attempts(write.conn(), &job_id).await?;
            let detail = format!(
                "lease of {previous} expired; {interrupted} running attempt(s) marked interrupted"
            );
            write
                .event(
                    "lease_expired",
                    Some(attempt - 1),
                    Some(previous),
                    Some(&detail),
                )
                .await?;
        }
        let detail = match &previous_owner {
            Some(previous) => format!(
                "claim {attempt}, taking over from {previous}; lease {:.1}s",
                lease.as_secs_f64()
            ),
            None => format!("claim {attempt}; lease {:.1}s", lease.as_secs_f64()),
        };
        write
            .event("claimed", Some(attempt), Some(worker), Some(&detail))
            .await?;
        let (job, steps) = read_job_with_steps(write.conn(), &job_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("claimed job {job_id} cannot be read")))?;
        let password: Option<String> = sqlx::query_scalar(
            "SELECT password FROM job_secrets
              WHERE job_id = $1 AND (expires_at IS NULL OR expires_at > now_ms())",
        )
        .bind(&job_id)
        .fetch_optional(write.conn())
        .await?
        .flatten();
        write.changed();
        write.commit(self).await?;
        Ok(Some(Claimed {
            lease: Lease {
                job_id,
                owner: worker.to_string(),
                attempt,
            },
            job,
            steps,
            password,
            taken_over: previous_owner.is_some(),
            left_running,
        }))
    }

    /// Extends the lease and the job's resource locks to `duration` from the database's now;
    /// `false` means the lease was lost: taken over, the job left `running`, or the lease
    /// already expired.
    ///
    /// Unlike SQLite, a lease that expired is lost even while no other worker took the job yet:
    /// across replicas its locks may already be another job's (they expire with the lease), and
    /// renewing would let this worker run on without them. A renewal that succeeds means the
    /// lease, hence every lock taken under it, was still live.
    pub async fn renew(&self, lease: &Lease, duration: Duration) -> Result<bool> {
        let mut write = self.write(&lease.job_id).await?;
        let held = sqlx::query(
            "UPDATE jobs SET lease_expires_at = now_ms() + $4
              WHERE id = $1 AND lease_owner = $2 AND attempt = $3 AND status = 'running'
                AND lease_expires_at > now_ms()",
        )
        .bind(&lease.job_id)
        .bind(&lease.owner)
        .bind(lease.attempt)
        .bind(ms(duration))
        .execute(write.conn())
        .await?
        .rows_affected()
            == 1;
        if !held {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE resource_locks SET expires_at = now_ms() + $3 WHERE job_id = $1 AND owner = $2",
        )
        .bind(&lease.job_id)
        .bind(&lease.owner)
        .bind(ms(duration))
        .execute(write.conn())
        .await?;
        write.commit(self).await?;
        Ok(true)
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

    /// The earliest time something becomes claimable (a queued job's `run_at` or a lease
    /// expiry), on this process's clock: the database's delay until then, from now here.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        let delay: Option<i64> = sqlx::query_scalar(NEXT_DUE_SQL)
            .fetch_one(&self.pool)
            .await?;
        Ok(delay.map(|d| crate::store::now_ms().saturating_add(d)))
    }
}

/// Marks the job's unfinished attempts `interrupted` and their steps `pending` again; returns
/// how many attempts were marked.
pub(super) async fn interrupt_attempts(conn: &mut PgConnection, job_id: &str) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE step_attempts SET outcome = 'interrupted', error_kind = 'interrupted',
                finished_at = now_ms(), duration_ms = now_ms() - started_at
          WHERE job_id = $1 AND outcome IS NULL",
    )
    .bind(job_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("UPDATE job_steps SET status = 'pending' WHERE job_id = $1 AND status = 'running'")
        .bind(job_id)
        .execute(conn)
        .await?;
    Ok(done)
}

/// Returns a job to the queue, due now, without an owner.
pub(super) async fn requeue(conn: &mut PgConnection, job_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET status = 'queued', run_at = now_ms(), lease_owner = NULL,
                lease_expires_at = NULL, updated_at = now_ms()
          WHERE id = $1",
    )
    .bind(job_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Drops the resource locks a job holds; returns whether it held any.
pub(super) async fn delete_locks(conn: &mut PgConnection, job_id: &str) -> Result<bool> {
    let deleted = sqlx::query("DELETE FROM resource_locks WHERE job_id = $1")
        .bind(job_id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(deleted > 0)
}

/// The recorded commands of the job's attempts that did not end (or ended interrupted, their
/// command not waited for).
async fn commands_left(conn: &mut PgConnection, job_id: &str) -> Result<Vec<RecordedCommand>> {
    let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT job_id, worker, pid, pid_start FROM step_attempts
          WHERE job_id = $1 AND pid IS NOT NULL AND (outcome IS NULL OR outcome = 'interrupted')",
    )
    .bind(job_id)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(job_id, worker, pid, start)| {
            Ok(RecordedCommand {
                pid: i32::try_from(pid).map_err(|_| {
                    StoreError::Corrupt(format!("the pid of a command of job {job_id} is {pid}"))
                })?,
                job_id,
                worker,
                start_time: start.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            })
        })
        .collect()
}
