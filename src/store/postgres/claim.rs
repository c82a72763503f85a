//! Claiming due jobs across replicas.

/// Claims up to `$3` due queued jobs for worker `$1` with a lease of `$2` milliseconds, and
/// returns `(id, attempt, previous_owner)` of each.
///
/// The CTE picks the jobs with `FOR UPDATE SKIP LOCKED`: a job another claimer's open
/// transaction has locked is skipped, not waited for, so concurrent claimers get disjoint jobs
/// and never block each other. The pick is a CTE rather than a `WHERE id IN (SELECT … LIMIT)`
/// subquery because the planner may run such a subquery more than once (as the inner side of a
/// nested loop) and update more rows than the limit. It reads the partial index `jobs_due
/// (run_at, id) WHERE status = 'queued'` in order and stops after `$3` rows. Lease expiry and
/// start time are the database's clock. Expired leases are not taken back here: that is the
/// rescue's job, run by the maintenance leader.
pub const CLAIM_SQL: &str = "WITH due AS (
    SELECT id FROM jobs
     WHERE status = 'queued' AND run_at <= now_ms()
     ORDER BY run_at, id
     LIMIT $3
     FOR UPDATE SKIP LOCKED
)
UPDATE jobs
   SET status = 'running', attempt = jobs.attempt + 1, previous_owner = jobs.lease_owner,
       lease_owner = $1, lease_expires_at = now_ms() + $2,
       started_at = COALESCE(jobs.started_at, now_ms()), updated_at = now_ms()
  FROM due
 WHERE jobs.id = due.id
RETURNING jobs.id, jobs.attempt, jobs.previous_owner";
