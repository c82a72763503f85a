//! Wake-ups from the other replicas: `LISTEN` on one connection of its own.
//!
//! Every write that changes a job's status or current step, releases resource locks or queues a
//! job sends `pg_notify` in its transaction; PostgreSQL delivers it at commit to every
//! listening session, this replica's included. The listener routes them to the [`Notifier`]
//! (and [`super::PgStore::queued`]).
//!
//! Notifications sent while the listener is not connected are lost. So whenever it (re)connects
//! or loses its connection, it wakes every lock waiter and the idle worker, which re-check;
//! change subscribers re-read on their own timer. A connection that died without telling (a
//! half-open TCP connection) is found by pinging through it when it was idle for a while. The
//! listener reconnects with a bounded backoff until the store is closed, counting reconnections
//! in `store_listener_reconnects_total`.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPool, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::store::notify::Notifier;

/// Channel of job changes; the payload is the job's id.
pub(super) const JOB_CHANGED: &str = "everest_job_changed";
/// Channel of lock releases (empty payload).
pub(super) const LOCKS_RELEASED: &str = "everest_locks_released";
/// Channel of jobs put in the queue (empty payload).
pub(super) const JOB_QUEUED: &str = "everest_job_queued";

/// The `application_name` of the listener's connection, to find it in `pg_stat_activity`.
pub const LISTENER_APPLICATION_NAME: &str = "everestctl-api listener";

/// How long the listener may stay silent before it pings its connection.
const IDLE_PING: Duration = Duration::from_secs(15);
/// How long a ping, a connection or a `LISTEN` may take before the connection counts as lost.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds of the wait between two failed attempts to connect.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Whom the listener wakes.
pub(super) struct Wakers {
    pub notifier: Notifier,
}

impl Wakers {
    fn route(&self, notification: &PgNotification) {
        match notification.channel() {
            JOB_CHANGED => self.notifier.changed(notification.payload()),
            LOCKS_RELEASED => self.notifier.locks_released(),
            JOB_QUEUED => self.notifier.job_queued(),
            _ => {}
        }
    }

    /// Notifications may have been missed: every waiter re-checks.
    fn missed(&self) {
        self.notifier.locks_released();
        self.notifier.job_queued();
    }
}

/// Starts the listener task, with the connection settings of `pool`; it runs until `stop`.
pub(super) fn spawn(pool: &PgPool, wakers: Wakers, stop: CancellationToken) {
    let options = pool
        .connect_options()
        .as_ref()
        .clone()
        .application_name(LISTENER_APPLICATION_NAME);
    tokio::spawn(run(options, wakers, stop));
}

async fn run(options: PgConnectOptions, wakers: Wakers, stop: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    let mut connected_before = false;
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            connected = connect(&options) => connected,
        };
        let (pool, mut listener) = match connected {
            Ok(connected) => connected,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "cannot listen for the other replicas' changes; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = MIN_BACKOFF;
        if connected_before {
            metrics::counter!("store_listener_reconnects_total").increment(1);
            tracing::info!("listening for the other replicas' changes again");
        }
        connected_before = true;
        // What was sent before the `LISTEN` (or while disconnected) is not coming.
        wakers.missed();
        let lost = listen(&mut listener, &wakers, &stop).await;
        drop(listener);
        // Closes the connection (returned to its pool when the listener was dropped) without
        // waiting here for a server that may not answer.
        tokio::spawn(async move { pool.close().await });
        let Some(why) = lost else {
            return;
        };
        tracing::warn!(reason = %why, "lost the connection that listens for the other replicas' changes; reconnecting");
        wakers.missed();
    }
}

/// A connection of its own (a pool of one, so that the listener holds none of the store's),
/// listening on every channel.
async fn connect(options: &PgConnectOptions) -> Result<(PgPool, PgListener), String> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(TIMEOUT)
        .test_before_acquire(false)
        .connect_lazy_with(options.clone());
    let listening = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        // A lost connection ends `listen`, which then reconnects with its own backoff.
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        listener
            .listen_all([JOB_CHANGED, LOCKS_RELEASED, JOB_QUEUED])
            .await?;
        Ok::<_, sqlx::Error>(listener)
    };
    let listener = match tokio::time::timeout(TIMEOUT * 2, listening).await {
        Ok(Ok(listener)) => listener,
        Ok(Err(e)) => {
            tokio::spawn(async move { pool.close().await });
            return Err(e.to_string());
        }
        Err(_) => {
            tokio::spawn(async move { pool.close().await });
            return Err("timed out".into());
        }
    };
    Ok((pool, listener))
}

/// Routes notifications until the connection is lost (`Some(why)`) or `stop` (`None`).
async fn listen(
    listener: &mut PgListener,
    wakers: &Wakers,
    stop: &CancellationToken,
) -> Option<String> {
    loop {
        // `try_recv` is cancel-safe while connected: a message is consumed only once whole.
        let next = tokio::select! {
            _ = stop.cancelled() => return None,
            next = tokio::time::timeout(IDLE_PING, listener.try_recv()) => next,
        };
        match next {
            Ok(Ok(Some(notification))) => wakers.route(&notification),
            Ok(Ok(None)) => return Some("connection closed".into()),
            Ok(Err(e)) => return Some(e.to_string()),
            Err(_idle) => {
                let ping = sqlx::query("SELECT 1").execute(&mut *listener);
                match tokio::time::timeout(TIMEOUT, ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Some(format!("ping failed: {e}")),
                    Err(_) => return Some("ping timed out".into()),
                }
            }
        }
    }
}
