//! The PostgreSQL backend, for several replicas sharing one database: its schema
//! (`migrations/postgres/`) and the statements whose semantics the replicas rely on (the claim,
//! the resource locks), kept here as constants so that the backend and its tests run the same
//! text.
//!
//! Times that decide who may do what (leases, lock expiry, what is due) come from the database
//! clock through the schema's `now_ms()`, never from a replica's clock: replicas' clocks differ.
//!
//! Every worker write is one transaction whose first statement is the fence (`tx`); a write
//! that changes a job's status or current step, or releases resource locks, says so with
//! `pg_notify` in its transaction (delivered at commit to every replica, see `listen`) and to
//! this replica's [`Notifier`] after the commit.

mod audit;
mod claim;
mod control;
mod history;
mod lease;
mod listen;
mod locks;
mod maintenance;
mod overview;
mod read;
mod run;
mod submit;
mod tx;

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

pub use claim::CLAIM_SQL;
pub use listen::LISTENER_APPLICATION_NAME;
pub use locks::LOCK_TAKE_SQL;

use super::notify::Notifier;
// The neutral names the backend's modules use, as `super::…`.
#[allow(unused_imports)]
use super::{
    AttemptEnd, AttemptEnding, AttemptRecord, AttemptStart, CancelOutcome, Claimed, Cursor,
    EventRecord, Finished, History, IdempotencySecret, JobEnd, JobFilter, JobPage, JobRecord,
    Lease, NewJob, RecordedCommand, Result, RetryOutcome, SecretRecord, Started, StepEnd,
    StepRecord, StoreError, Submitted, Then, ms,
};

/// Settings of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections of this replica's pool (`DATABASE_POOL_SIZE`).
    pub pool_size: u32,
}

/// The PostgreSQL backend; cheap to clone.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Fed by this replica's commits and by `LISTEN` (see `listen`).
    notifier: Notifier,
    idempotency_secret: Arc<IdempotencySecret>,
    /// This replica's name in the maintenance election (see `maintenance`).
    me: Arc<str>,
    /// Stops the listener at close.
    stop: tokio_util::sync::CancellationToken,
}

/// How long a pooled connection may be waited for before the operation is `Unavailable`
/// (the API answers 503): short, so that a database that is down is reported, not waited out.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection idle for this long is pinged before use.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

impl PgStore {
    /// Applies the migrations (see [`migrate`]), opens the pool, reads (or creates) the
    /// idempotency secret and starts the listener.
    pub async fn open(url: &str, options: PgOptions) -> Result<Self> {
        migrate(url).await.map_err(|e| match e {
            MigrateError::Connect(e) => StoreError::unavailable(e),
            MigrateError::Migrate(e) => StoreError::Migrate(Box::new(e)),
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A connection that the server dropped (restart, pg_terminate_backend) is found
            // out before it is handed to an operation, which would otherwise fail once; but
            // only one that sat idle: a ping at every acquire is one more round trip for every
            // operation, and a connection used within the last second that fails once after a
            // restart answers 503, as the restart itself does.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await?;
        let idempotency_secret = idempotency_secret(&pool).await?;
        let notifier = Notifier::default();
        let stop = tokio_util::sync::CancellationToken::new();
        listen::spawn(
            &pool,
            listen::Wakers {
                notifier: notifier.clone(),
            },
            stop.clone(),
        );
        Ok(PgStore {
            pool,
            notifier,
            idempotency_secret: Arc::new(idempotency_secret),
            me: replica_name().into(),
            stop,
        })
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    pub fn idempotency_secret(&self) -> &IdempotencySecret {
        &self.idempotency_secret
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Gives up the maintenance lease (so that another replica takes it at once rather than
    /// when it expires), stops the listener and closes the pool.
    pub async fn close(&self) {
        self.stop.cancel();
        if let Err(e) = maintenance::resign(&self.pool, &self.me).await {
            tracing::debug!(error = %e, "cannot give up the maintenance lease; it expires");
        }
        self.pool.close().await;
    }
}

/// `<host>:<pid>:<random>`: unique among live replicas.
fn replica_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Reads the idempotency secret, creating it on the first open of the database. Replicas
/// opening a fresh database together insert at once: `ON CONFLICT DO NOTHING` keeps the first,
/// and every replica reads that one.
async fn idempotency_secret(pool: &PgPool) -> Result<IdempotencySecret> {
    use rand::RngCore;
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    sqlx::query(
        "INSERT INTO service_secrets (name, value) VALUES ('idempotency_hmac', $1)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&fresh[..])
    .execute(pool)
    .await?;
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT value FROM service_secrets WHERE name = 'idempotency_hmac'")
            .fetch_one(pool)
            .await?;
    IdempotencySecret::from_stored(stored)
}

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
