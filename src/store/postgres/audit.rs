//! Audit events written on behalf of the HTTP layer.

use super::{PgStore, Result};

impl PgStore {
    /// Records in the job's history that the key named `by` was shown the job's generated
    /// password, in the request `request_id` (`credentials_read`, detail
    /// `by <name>; request <id>`). Returns once the event is committed.
    pub async fn record_credentials_read(
        &self,
        job_id: &str,
        by: &str,
        request_id: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO job_events (job_id, at, type, detail)
             VALUES ($1, now_ms(), 'credentials_read', $2)",
        )
        .bind(job_id)
        .bind(format!("by {by}; request {request_id}"))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
