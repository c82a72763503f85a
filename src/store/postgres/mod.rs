//! The PostgreSQL backend, for several replicas sharing one database: its schema
//! (`migrations/postgres/`) and the statements whose semantics the replicas rely on (the claim,
//! the resource locks), kept here as constants so that the backend and its tests run the same
//! text.
//!
//! Times that decide who may do what (leases, lock expiry, what is due) come from the database
//! clock through the schema's `now_ms()`, never from a replica's clock: replicas' clocks differ.

mod claim;
mod locks;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

pub use claim::CLAIM_SQL;
pub use locks::{LOCK_RELEASE_SQL, LOCK_RENEW_SQL, LOCK_TAKE_SQL};

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("PostgreSQL migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Applies the embedded migrations of `migrations/postgres/` to the database at `url` (any URL
/// form sqlx accepts, e.g. `postgres:///everest?host=/run/postgresql`).
///
/// Safe to call from several replicas at once: sqlx's migrator holds a session advisory lock
/// while it applies, so one replica migrates and the others then find nothing to do. That lock
/// belongs to a session, which is why this runs on a direct connection of its own and not on a
/// pooled one (behind a pooler in transaction mode a session lock stays on whichever server
/// connection it landed on).
pub async fn migrate(url: &str) -> Result<(), MigrateError> {
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(MigrateError::Connect)?;
    let applied = sqlx::migrate!("./migrations/postgres")
        .run_direct(&mut conn)
        .await;
    // Closing politely ends the session (and with it any lock) now rather than when the server
    // notices; a failure to close changes nothing about the migration's result.
    let _ = conn.close().await;
    applied.map_err(MigrateError::Migrate)
}
