//! Named resource locks, held by a job under its lease.

use std::time::Duration;

use sqlx::SqliteConnection;

use super::lease::delete_locks;
use super::{Lease, Result, Store, Write, ms, now_ms};

impl Store {
    /// Releases every lock the job holds.
    pub async fn unlock_all(&self, job_id: &str) -> Result<()> {
        let job_id = job_id.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                delete_locks(conn, &job_id).await?;
                Ok(Write::Keep(()))
            })
        })
        .await
    }
}

/// Takes all of `names` for the job of `lease`, one by one. A lock that is free, expired or
/// already held by the same job is taken; taking all of a step's locks at once means no job
/// ever holds one lock while waiting for another, so there is no deadlock.
///
/// The first busy lock is returned as `(name, holder)`, and the
/// caller must then discard the transaction's changes.
pub(super) async fn take_locks(
    tx: &mut SqliteConnection,
    lease: &Lease,
    names: &[String],
    duration: Duration,
) -> Result<Option<(String, String)>> {
    let now = now_ms();
    for name in names {
        let taken = sqlx::query(
            "INSERT INTO resource_locks (name, job_id, owner, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET job_id = excluded.job_id, owner = excluded.owner,
                    expires_at = excluded.expires_at
             WHERE resource_locks.expires_at <= ?5 OR resource_locks.job_id = excluded.job_id",
        )
        .bind(name)
        .bind(&lease.job_id)
        .bind(&lease.owner)
        .bind(now + ms(duration))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() == 0 {
            let holder: String =
                sqlx::query_scalar("SELECT job_id FROM resource_locks WHERE name = ?")
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
            return Ok(Some((name.clone(), holder)));
        }
    }
    Ok(None)
}
