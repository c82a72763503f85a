//! Claiming jobs and keeping leases, across replicas.

#[allow(unused_imports)]
use super::{Claimed, Lease, PgStore, Result};

impl PgStore {
    pub async fn claim(&self, worker: &str, lease: std::time::Duration) -> Result<Option<Claimed>> {
        todo!("{worker} {lease:?}")
    }

    pub async fn renew(&self, lease: &Lease, duration: std::time::Duration) -> Result<bool> {
        todo!("{lease:?} {duration:?}")
    }

    pub async fn queue_counts(&self) -> Result<(i64, i64)> {
        todo!()
    }

    pub async fn next_due(&self) -> Result<Option<i64>> {
        todo!()
    }
}
