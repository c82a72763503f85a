//! Maintenance that one replica at a time runs: retention and secret expiry.
//!
//! # The leader
//!
//! The `leader` table holds at most one row: the replica (`PgStore::me`) that runs
//! maintenance until `expires_at` (database clock), and `term`, which grows whenever another
//! replica takes over. There is no heartbeat of its own: every maintenance call is one
//! transaction whose first statement takes or renews the leadership ([`lead`]), and which runs
//! its `DELETE` or `UPDATE` only if this replica is the leader; otherwise it changes nothing
//! and answers 0.
//!
//! - The upsert takes the row when there is none, renews it when it is ours, and takes it
//!   over when it expired; any other replica's live row is left alone.
//! - It leaves the row locked until the transaction ends, whether it took it or not
//!   (`ON CONFLICT DO UPDATE` locks the conflicting row before it tests the `WHERE`). So two
//!   replicas never run a maintenance statement at once: the second one's upsert waits for
//!   the first one's commit, and then finds the row renewed by someone else. And a leader
//!   paused past its expiry cannot write after a successor was elected: the check and the
//!   write are one transaction that holds the row. The wait is bounded (a lock timeout):
//!   a replica that finds the row locked for longer is not the leader this time.
//! - The secret purge runs at least every minute on every replica, so a live leader renews
//!   well within [`LEADER_LEASE`] and stays leader; when it dies (or is closed) the first call
//!   of another replica after the lease ran out takes over. Maintenance pauses meanwhile, which
//!   is harmless: it is not urgent.

use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{Postgres, Transaction};

use super::{PgStore, Result, ms};

/// How long a leadership lasts unless renewed.
pub(super) const LEADER_LEASE: Duration = Duration::from_secs(120);

/// Makes replica `$1` the leader for `$2` milliseconds if there is none, it is already, or
/// the leadership expired; returns the term, or no row when another replica leads. The `WHERE`
/// tests the existing row (`leader.…`), not `EXCLUDED`: testing the proposed row would let
/// anyone take a live leadership.
const LEAD_SQL: &str = "INSERT INTO leader (id, term, owner, expires_at)
 VALUES (true, 1, $1, now_ms() + $2)
 ON CONFLICT (id) DO UPDATE
    SET term = CASE WHEN leader.owner = EXCLUDED.owner THEN leader.term ELSE leader.term + 1 END,
        owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
  WHERE leader.owner = EXCLUDED.owner OR leader.expires_at < now_ms()
 RETURNING term";

/// Bounds every lock wait of a maintenance transaction (a batch takes milliseconds): a replica
/// waits for another's maintenance transaction as long as one normally lasts, not as long as
/// one that hangs (its replica paused with the transaction open).
const LOCK_TIMEOUT_SQL: &str = "SET LOCAL lock_timeout = '5s'";

/// Deletes the oldest jobs that finished before `$1`, at most `$2` of them; steps, attempts,
/// events and secrets go with them (`ON DELETE CASCADE`). The pick reads the partial index
/// `jobs_prunable` in order. It is a CTE, not `id IN (SELECT … LIMIT)`, which the planner may
/// run more than once; `FOR UPDATE` re-checks the status of a row that changed since the
/// snapshot (a retry that just committed makes it queued: not picked), and `SKIP LOCKED`
/// leaves a job that a retry holds right now to the next batch.
const PRUNE_SQL: &str = "WITH old AS (
    SELECT id FROM jobs
     WHERE status IN ('succeeded', 'failed', 'canceled') AND finished_at < $1
     ORDER BY finished_at
     LIMIT $2
     FOR UPDATE SKIP LOCKED
)
DELETE FROM jobs USING old WHERE jobs.id = old.id";

/// Erases the passwords whose time is up, on the database clock.
const PURGE_SQL: &str =
    "UPDATE job_secrets SET password = NULL WHERE password IS NOT NULL AND expires_at <= now_ms()";

/// Takes or renews the maintenance leadership for replica `me`, in the caller's transaction
/// `tx`, whose first statements these must be; `Some(term)` when `me` leads. The leader row
/// stays locked until `tx` ends (see the module's header): run the maintenance statement in
/// `tx`, then commit. `None`: another replica leads, or is in a maintenance transaction that
/// outlasted the lock timeout; roll `tx` back (after a timeout it can run nothing more). For
/// every maintenance task (the rescue of expired leases too).
pub(super) async fn lead(tx: &mut PgConnection, me: &str) -> Result<Option<i64>> {
    sqlx::query(LOCK_TIMEOUT_SQL).execute(&mut *tx).await?;
    let term = sqlx::query_scalar(LEAD_SQL)
        .bind(me)
        .bind(ms(LEADER_LEASE))
        .fetch_optional(tx)
        .await;
    match term {
        Err(e) if lock_not_available(&e) => Ok(None),
        term => Ok(term?),
    }
}

/// Ends `me`'s maintenance lease, if it holds it.
pub(super) async fn resign(pool: &sqlx::PgPool, me: &str) -> Result<()> {
    sqlx::query("DELETE FROM leader WHERE owner = $1")
        .bind(me)
        .execute(pool)
        .await?;
    Ok(())
}

impl PgStore {
    /// Deletes up to `batch` jobs that finished (succeeded, failed or canceled) before
    /// `cutoff_ms`, oldest first, with their steps, attempts, events and secret, in one
    /// transaction, if this replica is the maintenance leader. Queued and running jobs are
    /// never deleted, however old. Returns how many jobs were deleted (0 when not the leader):
    /// fewer than `batch` means that none is left.
    pub async fn prune_finished_before(&self, cutoff_ms: i64, batch: u32) -> Result<u64> {
        let Some(mut tx) = self.as_leader().await? else {
            return Ok(0);
        };
        let done = sqlx::query(PRUNE_SQL)
            .bind(cutoff_ms)
            .bind(i64::from(batch))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(done)
    }

    /// Erases passwords whose time is up, if this replica is the maintenance leader; returns
    /// how many were erased (0 when not the leader).
    pub async fn purge_expired_secrets(&self) -> Result<u64> {
        let Some(mut tx) = self.as_leader().await? else {
            return Ok(0);
        };
        let done = sqlx::query(PURGE_SQL)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(done)
    }

    /// A transaction in which this replica leads (see [`lead`]), or `None`: another replica
    /// leads, and nothing was changed.
    async fn as_leader(&self) -> Result<Option<Transaction<'static, Postgres>>> {
        let mut tx = self.pool.begin().await?;
        if lead(&mut tx, &self.me).await?.is_some() {
            return Ok(Some(tx));
        }
        // Ends the wait of the next replica's upsert now rather than when the connection is
        // next used.
        tx.rollback().await?;
        Ok(None)
    }
}

/// Whether `e` is PostgreSQL's `lock_not_available` (a `lock_timeout` ran out).
fn lock_not_available(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "55P03")
}
