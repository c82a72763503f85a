//! Resource locks (`everest-accounts`, `everest-rbac`, `namespace:<ns>`) exclusive across
//! replicas: rows with an owner, a token and an expiry rather than advisory locks, which vanish
//! silently with their connection while the holder keeps running (no fencing) and break behind
//! poolers in transaction mode.

/// Takes lock `$1` for job `$2` of worker `$3` for `$4` milliseconds, if it is free or its
/// holder's lease expired; returns the new token, or no row when the lock is held.
///
/// The condition of the `DO UPDATE` tests the *existing* row (`resource_locks.expires_at`), not
/// `EXCLUDED`: testing the proposed row would let anyone take a live lock. A new token at every
/// take means the previous holder's renew and release (which name their token) change nothing.
/// Several locks are taken in name order, so two jobs cannot each hold what the other waits for.
pub const LOCK_TAKE_SQL: &str =
    "INSERT INTO resource_locks (name, job_id, owner, token, expires_at)
 VALUES ($1, $2, $3, gen_random_uuid(), now_ms() + $4)
 ON CONFLICT (name) DO UPDATE
    SET job_id = EXCLUDED.job_id, owner = EXCLUDED.owner, token = EXCLUDED.token,
        expires_at = EXCLUDED.expires_at
  WHERE resource_locks.expires_at < now_ms()
 RETURNING token";

/// Extends lock `$1` held by `$2` with token `$3` to `$4` milliseconds from now; 0 rows means
/// the lock was lost (expired and taken by someone else).
pub const LOCK_RENEW_SQL: &str = "UPDATE resource_locks SET expires_at = now_ms() + $4
 WHERE name = $1 AND owner = $2 AND token = $3";

/// Releases lock `$1` held by `$2` with token `$3`; 0 rows means it was no longer theirs.
pub const LOCK_RELEASE_SQL: &str =
    "DELETE FROM resource_locks WHERE name = $1 AND owner = $2 AND token = $3";

impl super::PgStore {
    pub async fn unlock_all(&self, job_id: &str) -> super::Result<()> {
        todo!("{job_id}")
    }
}
