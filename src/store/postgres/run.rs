//! Fenced writes of a worker running a job: attempts, step results and the job's end.

#[allow(unused_imports)]
use super::{
    AttemptEnd, AttemptEnding, AttemptStart, Finished, JobEnd, Lease, PgStore, Result, Started,
    StepEnd, Then,
};

impl PgStore {
    pub async fn begin_attempt(
        &self,
        lease: &Lease,
        start: AttemptStart,
        locks: &[String],
        lock_for: std::time::Duration,
    ) -> Result<Started> {
        todo!("{lease:?} {start:?} {locks:?} {lock_for:?}")
    }

    pub async fn record_attempt(
        &self,
        lease: &Lease,
        start: AttemptStart,
        attempt: &AttemptEnd,
        step: &StepEnd,
        job: &JobEnd,
        secret_ttl: std::time::Duration,
    ) -> Result<bool> {
        todo!("{lease:?} {start:?} {attempt:?} {step:?} {job:?} {secret_ttl:?}")
    }

    pub async fn finish_attempt_then(
        &self,
        lease: &Lease,
        ending: AttemptEnding,
        then: Then,
        secret_ttl: std::time::Duration,
    ) -> Result<Finished> {
        todo!("{lease:?} {ending:?} {then:?} {secret_ttl:?}")
    }

    pub async fn finish_job(
        &self,
        lease: &Lease,
        job: &JobEnd,
        secret_ttl: std::time::Duration,
    ) -> Result<bool> {
        todo!("{lease:?} {job:?} {secret_ttl:?}")
    }

    pub async fn record_command(
        &self,
        lease: &Lease,
        attempt_id: i64,
        pid: i32,
        start_time: u64,
    ) -> Result<bool> {
        todo!("{lease:?} {attempt_id} {pid} {start_time}")
    }

    pub async fn step_may_have_run(
        &self,
        job_id: &str,
        position: i64,
        before: i64,
    ) -> Result<bool> {
        todo!("{job_id} {position} {before}")
    }
}
