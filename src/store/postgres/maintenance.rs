//! Maintenance that one replica at a time runs: retention and secret expiry.

#[allow(unused_imports)]
use super::{PgStore, Result};

impl PgStore {
    pub async fn prune_finished_before(&self, cutoff_ms: i64, batch: u32) -> Result<u64> {
        todo!("{cutoff_ms} {batch} {}", self.me)
    }

    pub async fn purge_expired_secrets(&self) -> Result<u64> {
        todo!()
    }
}
