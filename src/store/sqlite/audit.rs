//! Audit events written on behalf of the HTTP layer.

use super::{Result, SqliteStore, Write, event};

impl SqliteStore {
    /// Records in the job's history that the key named `by` was shown the job's generated
    /// password, in the request `request_id` (`credentials_read`, detail
    /// `by <name>; request <id>`). Returns once the event is committed.
    pub async fn record_credentials_read(
        &self,
        job_id: &str,
        by: &str,
        request_id: &str,
    ) -> Result<()> {
        let id = job_id.to_string();
        let detail = format!("by {by}; request {request_id}");
        self.write(move |conn| {
            event(conn, &id, "credentials_read", None, None, Some(&detail))?;
            Ok(Write::Keep(()))
        })
        .await
    }
}
