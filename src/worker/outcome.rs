//! How a job's attempts and the job itself end: attempt records without a command, the
//! failure record, metrics of finished jobs, and the retry backoff.

use std::time::Duration;

use rand::Rng;

use super::Shared;
use crate::domain::{AttemptOutcome, JobError, JobStatus};
use crate::store::{AttemptEnd, JobEnd, Lease, StoreError};

pub(super) fn succeeded_without_command() -> AttemptEnd {
    AttemptEnd {
        outcome: AttemptOutcome::Succeeded,
        error_kind: None,
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        duration_ms: 0,
    }
}

pub(super) fn failed_without_command(detail: &str) -> AttemptEnd {
    AttemptEnd {
        outcome: AttemptOutcome::Failed,
        error_kind: None,
        exit_code: None,
        stdout: String::new(),
        stderr: detail.to_string(),
        duration_ms: 0,
    }
}

pub(super) fn failed_end(error: &JobError) -> JobEnd {
    let summary = format!("Failed at {}: {}", error.step, error.detail);
    JobEnd::Failed {
        error: serde_json::to_string(error).expect("error serializes"),
        summary,
    }
}

/// Counts a job that reached a final status.
pub(super) fn record_finish(kind: &str, created_at: i64, job_end: &JobEnd) {
    let status = match job_end {
        JobEnd::Succeeded { .. } => JobStatus::Succeeded,
        JobEnd::Failed { .. } => JobStatus::Failed,
        JobEnd::Canceled { .. } => JobStatus::Canceled,
        JobEnd::Continue | JobEnd::Retry { .. } | JobEnd::Requeue { .. } => return,
    };
    let elapsed = u64::try_from(crate::store::now_ms() - created_at).unwrap_or(0);
    crate::telemetry::job_finished(kind, status, Duration::from_millis(elapsed));
}

/// Ends the job without an attempt; `meta` is its kind and submission time.
pub(super) async fn end(
    shared: &Shared,
    lease: &Lease,
    meta: (&str, i64),
    job_end: JobEnd,
) -> Result<(), StoreError> {
    let ttl = shared.settings.credentials_ttl;
    if shared.store.finish_job(lease, &job_end, ttl).await? {
        record_finish(meta.0, meta.1, &job_end);
    } else {
        tracing::warn!(job.id = %lease.job_id, "lease lost before the job could be ended");
    }
    shared.wake.notify_one();
    Ok(())
}

/// Exponential backoff with jitter: `base * 2^(n-1)`, capped, then scaled by a random factor
/// in [0.5, 1] so that many jobs failing together do not retry together.
pub(super) fn backoff(base: Duration, max: Duration, failures: i64) -> Duration {
    let exp = u32::try_from(failures.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(30);
    let raw = base.saturating_mul(2u32.saturating_pow(exp)).min(max);
    raw.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let (base, max) = (Duration::from_secs(2), Duration::from_secs(300));
        for _ in 0..50 {
            let d1 = backoff(base, max, 1);
            assert!(d1 >= Duration::from_secs(1) && d1 <= base);
            let d3 = backoff(base, max, 3);
            assert!(d3 >= Duration::from_secs(4) && d3 <= Duration::from_secs(8));
            assert!(backoff(base, max, 40) <= max);
        }
    }
}
