//! Wake-ups from the other replicas: `LISTEN` on one connection of its own.

use sqlx::postgres::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store::notify::Notifier;

/// Starts the listener task; it runs until `stop`.
pub(super) fn spawn(pool: PgPool, notifier: Notifier, stop: CancellationToken) {
    let _ = (pool, notifier, stop);
}
