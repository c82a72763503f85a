//! Who holds a job.

/// Proof that a worker holds a job: every fenced write names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: String,
    pub owner: String,
    /// The job's claim counter at the time of this claim.
    pub attempt: i64,
}

/// A job found leased by a previous process of this host and put back in the queue.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub job_id: String,
    pub previous_owner: String,
}
