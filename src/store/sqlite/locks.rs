//! Named resource locks, held by a job under its lease.

use std::time::Duration;

use rusqlite::{Connection, params};

use super::{Lease, Result, SqliteStore, Write, ms, now_ms};

/// Deletes the locks of job `?1` held by `?2` while the job is still held by that lease
/// (`?2`, claim `?3`).
const UNLOCK_SQL: &str = "DELETE FROM resource_locks WHERE job_id = ?1 AND owner = ?2
    AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND lease_owner = ?2 AND attempt = ?3)";

impl SqliteStore {
    /// Releases every lock the job holds under `lease`, if the job still names it.
    pub async fn unlock_all(&self, lease: &Lease) -> Result<()> {
        let lease = lease.clone();
        self.write_releasing_locks(move |conn| {
            conn.prepare_cached(UNLOCK_SQL)?.execute(params![
                lease.job_id,
                lease.owner,
                lease.attempt
            ])?;
            Ok(Write::Keep(()))
        })
        .await
    }
}

/// Takes all of `names` for the job of `lease`, one by one. A lock that is free, expired or
/// already held by the same job is taken; taking all of a step's locks at once means no job
/// ever holds one lock while waiting for another, so there is no deadlock.
///
/// The first busy lock is returned as `(name, holder)`, and the caller must then discard the
/// transaction's changes.
pub(super) fn take_locks(
    tx: &Connection,
    lease: &Lease,
    names: &[String],
    duration: Duration,
) -> Result<Option<(String, String)>> {
    let now = now_ms();
    let mut take = tx.prepare_cached(
        "INSERT INTO resource_locks (name, job_id, owner, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET job_id = excluded.job_id, owner = excluded.owner,
                expires_at = excluded.expires_at
         WHERE resource_locks.expires_at <= ?5 OR resource_locks.job_id = excluded.job_id",
    )?;
    for name in names {
        let taken = take.execute(params![
            name,
            lease.job_id,
            lease.owner,
            now + ms(duration),
            now
        ])?;
        if taken == 0 {
            let holder: String = tx
                .prepare_cached("SELECT job_id FROM resource_locks WHERE name = ?")?
                .query_row([name], |r| r.get(0))?;
            return Ok(Some((name.clone(), holder)));
        }
    }
    Ok(None)
}
