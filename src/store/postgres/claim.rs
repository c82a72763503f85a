//! Claiming due jobs across replicas.

/// Claims for worker `$1`, with a lease of `$2` milliseconds, the job that is due first: a
/// queued job whose `run_at` has come, or a running one whose lease expired (its owner is dead
/// or stuck: the claim takes it over, as on SQLite). Returns `(id, attempt, previous_owner)`;
/// `previous_owner` is the owner whose lease expired, `NULL` for a queued job.
///
/// Each candidate is the first row of its partial index (`jobs_due (run_at, id) WHERE status =
/// 'queued'`, `jobs_leased (lease_expires_at) WHERE status = 'running'`) read in order with
/// `FOR UPDATE SKIP LOCKED`: a row another claimer's open transaction has locked (or a fenced
/// write of its owner, which locks the job row) is skipped, not waited for, so concurrent
/// claimers get disjoint jobs and never block each other, and finished jobs, however many, cost
/// nothing. The earlier of the two is taken; the other stays locked until the claim commits,
/// which at worst makes a concurrent claimer take the next one. The picks are CTEs rather than
/// `WHERE id IN (SELECT … LIMIT)` subqueries because the planner may run such a subquery more
/// than once (as the inner side of a nested loop) and update more rows than the limit.
///
/// Times are the database's (`now_ms()`, the transaction's start): a lease is expired when its
/// expiry is not after the claim's time, and a live one is never matched. Under READ COMMITTED
/// a row locked after a concurrent renew committed is re-checked against its new expiry.
pub const CLAIM_SQL: &str = "WITH queued AS (
    SELECT id, run_at AS due FROM jobs
     WHERE status = 'queued' AND run_at <= now_ms()
     ORDER BY run_at, id
     LIMIT 1
     FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT id, lease_expires_at AS due FROM jobs
     WHERE status = 'running' AND lease_expires_at <= now_ms()
     ORDER BY lease_expires_at
     LIMIT 1
     FOR UPDATE SKIP LOCKED
), pick AS (
    SELECT id FROM (SELECT id, due FROM queued UNION ALL SELECT id, due FROM expired) AS due
     ORDER BY due
     LIMIT 1
)
UPDATE jobs
   SET status = 'running', attempt = jobs.attempt + 1, previous_owner = jobs.lease_owner,
       lease_owner = $1, lease_expires_at = now_ms() + $2,
       started_at = COALESCE(jobs.started_at, now_ms()), updated_at = now_ms()
  FROM pick
 WHERE jobs.id = pick.id
RETURNING jobs.id, jobs.attempt, jobs.previous_owner";

/// The delay, in milliseconds from the database's now (negative when already past), until the
/// earliest `run_at` of a queued job or lease expiry of a running one (the first entries of the
/// claim's partial indexes). A delay rather than a time: the caller adds its own clock, which
/// may differ from the database's.
pub(super) const NEXT_DUE_SQL: &str = "SELECT MIN(t) - now_ms() FROM (
    SELECT MIN(run_at) AS t FROM jobs WHERE status = 'queued'
    UNION ALL
    SELECT MIN(lease_expires_at) FROM jobs WHERE status = 'running') AS due";
