//! The HTTP/1.1 accept loop: hyper connections with a header-read timeout, an idle timeout for
//! keep-alive connections and a cap on open connections, with graceful shutdown.
//!
//! hyper's own `header_read_timeout` starts again as soon as a response is written, so it
//! would also close idle keep-alive connections after the (short) header timeout; each
//! connection here is timed by its own task instead, from what its socket and its requests
//! report in [`Activity`].
//!
//! At the cap, the connection idle the longest (one with no request in flight: a keep-alive
//! connection between requests or one still sending its headers) is closed to make room, so
//! a fresh connection, such as a `/healthz` probe, is still served; a request in flight (a
//! long-poll) is never cut. Only when every connection has a request in flight does the loop
//! stop accepting until one ends (new connections wait in the listen backlog).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::telemetry::{self, ConnectionClosed};

/// The timeouts and the cap the server runs with.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest time from accepting a connection, or from the first byte of a further request
    /// on it, to that request's complete headers.
    pub header_timeout: Duration,
    /// Longest time a keep-alive connection may stay idle between requests.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// File descriptors kept for everything but connections: stdio, the listener, the runtime,
/// the database (a few files per SQLite connection) and the log.
const BASE_RESERVE: u64 = 128;
/// Pipes per running command (stdin, stdout, stderr), with some slack for its spawn.
const FDS_PER_COMMAND: u64 = 4;
/// Concurrent pass-through reads (`GET /accounts/list`...) reserved for.
const PASSTHROUGH_RESERVE: u64 = 64;
/// The derived cap never exceeds this, to bound the memory idle connections can hold.
pub const DERIVED_CAP_CEILING: usize = 8192;
/// The smallest derived cap, whatever the file limit says.
const DERIVED_CAP_FLOOR: usize = 16;

/// The connection cap: `configured` when set (non-zero), else derived from the soft
/// `RLIMIT_NOFILE`, which is first raised to the hard limit. Returns the cap and the soft
/// limit in effect.
pub fn connection_cap(configured: usize, worker_concurrency: usize) -> (usize, Option<u64>) {
    let limit = raise_fd_limit();
    if configured > 0 {
        return (configured, limit);
    }
    let derived = limit.map_or(DERIVED_CAP_CEILING, |soft| {
        derive_cap(soft, worker_concurrency)
    });
    (derived, limit)
}

/// The cap for a soft file limit: the limit less what the database, the commands' pipes and
/// the pass-through reads may need, within the floor and the ceiling.
pub fn derive_cap(soft_limit: u64, worker_concurrency: usize) -> usize {
    let reserve =
        BASE_RESERVE + FDS_PER_COMMAND * (worker_concurrency as u64 + PASSTHROUGH_RESERVE);
    let free = usize::try_from(soft_limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
    free.clamp(DERIVED_CAP_FLOOR, DERIVED_CAP_CEILING)
}

/// Raises the soft limit on open files to the hard limit (as most servers do) and returns the
/// soft limit then in effect, or `None` where it cannot be read.
fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, lets each
/// connection finish the request it is serving, and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let stop = CancellationToken::new();
    let stop_on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop_on_signal.cancel();
    });
    let registry = Arc::new(Registry::default());
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tasks = TaskTracker::new();
    let mut accept_errors = ErrorLog::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => break,
        };
        let (stream, remote) = match accepted {
            Ok(conn) => conn,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE and the like: make room and back off instead of spinning.
                accept_errors.warn(&e);
                registry.evict_oldest_idle();
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match make_room(&registry, &slots, &stop).await {
                Some(permit) => permit,
                None => break,
            },
        };
        let conn = Connection {
            activity: registry.add(),
            registry: registry.clone(),
            limits,
            remote,
            _permit: permit,
        };
        tasks.spawn(conn.run(stream, router.clone(), stop.clone()));
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

/// At the cap: closes the connection idle the longest and waits for a free slot; while every
/// connection has a request in flight, waits for one to end. `None` on shutdown.
async fn make_room(
    registry: &Registry,
    slots: &Arc<Semaphore>,
    stop: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    loop {
        registry.evict_oldest_idle();
        tokio::select! {
            permit = slots.clone().acquire_owned() => return permit.ok(),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stop.cancelled() => return None,
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Logs accept errors at most once a second, with how many were not logged.
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn warn(&mut self, e: &io::Error) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, suppressed = self.suppressed, "cannot accept a connection");
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// The open connections, for choosing one to close at the cap.
#[derive(Default)]
struct Registry {
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self) -> Arc<Activity> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(id));
        let mut open = self.lock();
        open.insert(id, activity.clone());
        telemetry::connections_open(open.len());
        activity
    }

    fn remove(&self, id: u64) {
        let mut open = self.lock();
        open.remove(&id);
        telemetry::connections_open(open.len());
    }

    /// Asks the connection idle the longest, among those without a request in flight, to
    /// close. Returns whether there was one.
    fn evict_oldest_idle(&self) -> bool {
        let open = self.lock();
        let oldest = open
            .values()
            .filter(|a| !a.evict.load(Ordering::Relaxed))
            .filter_map(|a| a.idle_since().map(|since| (since, a)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, activity)) => {
                activity.evict.store(true, Ordering::Relaxed);
                activity.changed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// What a connection's socket and requests report, for its timeouts and for eviction.
struct Activity {
    id: u64,
    state: Mutex<State>,
    /// Wakes the connection's task: its deadline moved earlier, or it is asked to close.
    changed: Notify,
    /// Set when the connection should close to make room (if it still has no request).
    evict: AtomicBool,
}

struct State {
    /// Requests being answered.
    in_flight: usize,
    /// When the request head being received started (the accept, for the first request).
    head_since: Option<Instant>,
    /// The last response written, while no request is in flight or being received.
    idle_since: Instant,
}

/// What a connection's task should do next.
enum Due {
    /// A request is in flight: nothing, however long it takes.
    Never,
    At(Instant, ConnectionClosed),
}

impl Activity {
    fn new(id: u64) -> Self {
        let now = Instant::now();
        Activity {
            id,
            state: Mutex::new(State {
                in_flight: 0,
                head_since: Some(now),
                idle_since: now,
            }),
            changed: Notify::new(),
            evict: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: between requests, they start the next request's head.
    fn on_read(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(Instant::now());
            drop(s);
            // The header timeout may end before the idle timeout would have.
            self.changed.notify_one();
        }
    }

    /// Bytes were written: a response still being sent keeps the connection from being idle.
    fn on_write(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_since.is_none() {
            s.idle_since = Instant::now();
        }
    }

    fn begin_request(self: &Arc<Self>) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.head_since = None;
        InFlight(self.clone())
    }

    fn end_request(&self) {
        let mut s = self.lock();
        s.in_flight -= 1;
        s.idle_since = Instant::now();
    }

    /// Since when this connection has had no request in flight (`None` while one is).
    fn idle_since(&self) -> Option<Instant> {
        let s = self.lock();
        (s.in_flight == 0).then(|| s.head_since.unwrap_or(s.idle_since))
    }

    fn due(&self, limits: &Limits) -> Due {
        let s = self.lock();
        if s.in_flight > 0 {
            Due::Never
        } else if let Some(since) = s.head_since {
            Due::At(
                since + limits.header_timeout,
                ConnectionClosed::HeaderTimeout,
            )
        } else {
            Due::At(
                s.idle_since + limits.idle_timeout,
                ConnectionClosed::IdleTimeout,
            )
        }
    }
}

/// A request in flight on its connection, until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// One accepted connection and what it holds: its slot under the cap and its registry entry.
struct Connection {
    activity: Arc<Activity>,
    registry: Arc<Registry>,
    limits: Limits,
    remote: SocketAddr,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, router: Router, stop: CancellationToken) {
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: self.activity.clone(),
        });
        let (activity, remote) = (self.activity.clone(), self.remote);
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = activity.begin_request();
            let mut req = req.map(Body::new);
            // What `into_make_service_with_connect_info::<SocketAddr>` would provide.
            req.extensions_mut().insert(ConnectInfo(remote));
            let router = router.clone();
            async move {
                let response = router.oneshot(req).await;
                drop(in_flight);
                response
            }
        });
        let mut conn = pin!(
            hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service)
        );
        let mut draining = false;
        loop {
            let due = self.activity.due(&self.limits);
            let deadline = async {
                match due {
                    Due::Never => std::future::pending().await,
                    Due::At(at, _) => tokio::time::sleep_until(at.into()).await,
                }
            };
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = self.activity.changed.notified() => {
                    if self.activity.evict.load(Ordering::Relaxed)
                        && self.activity.idle_since().is_some()
                    {
                        telemetry::connection_closed(ConnectionClosed::Evicted);
                        break;
                    }
                    // Not idle any more: it may be chosen again later.
                    self.activity.evict.store(false, Ordering::Relaxed);
                }
                _ = deadline => {
                    // Activity may have moved the deadline since it was computed.
                    if let Due::At(at, reason) = self.activity.due(&self.limits)
                        && at <= Instant::now()
                    {
                        telemetry::connection_closed(reason);
                        break;
                    }
                }
                _ = stop.cancelled(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.registry.remove(self.activity.id);
    }
}

/// The socket, reporting reads and writes to the connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_cap_leaves_room_for_the_database_and_the_commands() {
        // 128 + 4 × (4 workers + 64 reads) = 400 kept back.
        assert_eq!(derive_cap(1024, 4), 624);
        assert_eq!(derive_cap(1024, 100), 1024 - 128 - 4 * 164);
        assert_eq!(derive_cap(256, 4), DERIVED_CAP_FLOOR);
        assert_eq!(derive_cap(1 << 20, 4), DERIVED_CAP_CEILING);
    }
}
