//! Audit events written on behalf of the HTTP layer.

#[allow(unused_imports)]
use super::{PgStore, Result};

impl PgStore {
    pub async fn record_credentials_read(
        &self,
        job_id: &str,
        by: &str,
        request_id: &str,
    ) -> Result<()> {
        todo!("{job_id} {by} {request_id}")
    }
}
