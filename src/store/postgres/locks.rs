//! Resource locks (`everest-accounts`, `everest-rbac`, `namespace:<ns>`) exclusive across
//! replicas: rows naming the job and the lease owner that hold them, with an expiry, rather
//! than advisory locks, which vanish silently with their connection while the holder keeps
//! running and break behind poolers in transaction mode.
//!
//! A lock is only ever taken, renewed or released by a write fenced on its job's lease (or
//! with it: the renew), so the lease is the lock's fencing token: a worker that lost its lease
//! writes nothing, its locks included. A lock expires with the lease it was renewed with, so a
//! dead replica's locks free themselves.

use std::time::Duration;

use sqlx::postgres::PgConnection;

use super::{Lease, PgStore, Result, ms};

/// Takes lock `$1` for job `$2` of lease owner `$3` for `$4` milliseconds from the database's
/// now, if it is free, expired (at the database's now), or already held by the same job (a
/// worker that took the job over takes its previous owner's locks); otherwise nothing changes
/// and no row is affected.
///
/// The condition of the `DO UPDATE` tests the *existing* row (`resource_locks.…`), not
/// `EXCLUDED`: testing the proposed row would let anyone take a live lock. A refused take
/// still locks the existing row until the transaction ends, so its holder, read next, cannot
/// change meanwhile.
pub const LOCK_TAKE_SQL: &str = "INSERT INTO resource_locks (name, job_id, owner, expires_at)
 VALUES ($1, $2, $3, now_ms() + $4)
 ON CONFLICT (name) DO UPDATE
    SET job_id = EXCLUDED.job_id, owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at,
        wanted_by = NULL
  WHERE resource_locks.expires_at <= now_ms() OR resource_locks.job_id = EXCLUDED.job_id";

/// Deletes the locks of job `$1` held by `$2` while the job is still held by that lease
/// (`$2`, claim `$3`).
const UNLOCK_SQL: &str = "DELETE FROM resource_locks WHERE job_id = $1 AND owner = $2
    AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND lease_owner = $2 AND attempt = $3)";

impl PgStore {
    /// Releases every lock the job holds under `lease`, if the job still names it.
    pub async fn unlock_all(&self, lease: &Lease) -> Result<()> {
        let mut write = self.write(&lease.job_id).await?;
        let deleted = sqlx::query(UNLOCK_SQL)
            .bind(&lease.job_id)
            .bind(&lease.owner)
            .bind(lease.attempt)
            .execute(write.conn())
            .await?
            .rows_affected();
        if deleted > 0 {
            write.released();
        }
        write.commit(self).await
    }
}

/// Notes on lock `$1`, held by another replica than `$2`, that replica `$2` waits for it (see
/// [`release_locks`]). Only a change is written: a replica that keeps asking writes once per
/// holder.
const WANT_SQL: &str = "UPDATE resource_locks SET wanted_by = $2
  WHERE name = $1 AND owner <> $2 AND wanted_by IS DISTINCT FROM $2";

impl PgStore {
    /// Notes that `lease`'s replica waits for lock `name` (a hint, not fenced: it only keeps
    /// the holder's replica from handing the lock to its own waiters next).
    pub(super) async fn want_lock(&self, lease: &Lease, name: &str) -> Result<()> {
        sqlx::query(WANT_SQL)
            .bind(name)
            .bind(&lease.owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Drops the resource locks the job holds; returns each one's name and whether another replica
/// asked for it meanwhile. A lock no other replica asked for may be handed to a waiter of this
/// replica in the same transaction; one another replica asked for is left free for all, so
/// that the waiters of one replica cannot keep a lock from the others' for ever.
pub(super) async fn release_locks(
    conn: &mut PgConnection,
    job_id: &str,
) -> Result<Vec<(String, bool)>> {
    Ok(sqlx::query_as(
        "DELETE FROM resource_locks WHERE job_id = $1 RETURNING name, wanted_by IS NOT NULL",
    )
    .bind(job_id)
    .fetch_all(conn)
    .await?)
}

/// Takes all of `names` for the job of `lease`, one by one, in the given order (see
/// [`LOCK_TAKE_SQL`]); taking all of a step's locks at once means no job ever holds one lock
/// while waiting for another, so there is no deadlock.
///
/// The first busy lock is returned as `(name, holder job id)`, and the caller must then discard
/// the transaction's changes (the locks taken before it included).
pub(super) async fn take_locks(
    conn: &mut PgConnection,
    lease: &Lease,
    names: &[String],
    duration: Duration,
) -> Result<Option<(String, String)>> {
    for name in names {
        let taken = sqlx::query(LOCK_TAKE_SQL)
            .bind(name)
            .bind(&lease.job_id)
            .bind(&lease.owner)
            .bind(ms(duration))
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if taken == 0 {
            let holder: String =
                sqlx::query_scalar("SELECT job_id FROM resource_locks WHERE name = $1")
                    .bind(name)
                    .fetch_one(&mut *conn)
                    .await?;
            return Ok(Some((name.clone(), holder)));
        }
    }
    Ok(None)
}
