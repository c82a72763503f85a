//! The load generator: keep-alive clients driving one kind of request, and what it gave.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::options::Options;
use crate::service::Service;
use crate::{KEY, epoch_ms};

/// Bound on every single HTTP request of the load generator.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn http_client(clients: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// What one phase of load gave.
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Sorted latencies of the measured requests, in microseconds.
    pub latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn total(&self) -> u64 {
        (self.ok + self.errors).max(1)
    }

    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Percentile `p` (nearest rank) in milliseconds.
    pub fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.latencies_us.len()) - 1;
        f64::from(self.latencies_us[i]) / 1e3
    }

    /// Fails the phase if nothing succeeded; reports errors otherwise.
    pub fn check(&self, what: &str) -> anyhow::Result<()> {
        eprintln!(
            "     {what}: {} ok, {} errors in {:.2}s: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
            self.ok,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.pct(50.0),
            self.pct(99.0)
        );
        if let Some(e) = &self.first_error {
            eprintln!("     {what}: first error: {e}");
        }
        ensure!(self.ok > 0, "{what}: no request succeeded");
        Ok(())
    }
}

/// Runs `op(sequence number)` from `o.clients` concurrent clients: for `o.warmup` unmeasured,
/// then for `o.duration` (time-bound), or until `limit` requests were sent (count-bound, no
/// warm-up, bounded by `o.e2e_timeout`).
pub async fn drive<F, Fut>(o: &Options, limit: Option<usize>, op: F) -> LoadResult
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let seq = Arc::new(AtomicUsize::new(0));
    let (warmup, bound) = match limit {
        Some(_) => (Duration::ZERO, o.e2e_timeout),
        None => (o.warmup, o.duration),
    };
    let measure_from = Instant::now() + warmup;
    let deadline = measure_from + bound;
    let mut tasks = Vec::with_capacity(o.clients);
    for _ in 0..o.clients {
        let (op, seq) = (op.clone(), seq.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 14);
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            loop {
                let start = Instant::now();
                if start >= deadline {
                    break;
                }
                let n = seq.fetch_add(1, Ordering::Relaxed);
                if limit.is_some_and(|limit| n >= limit) {
                    break;
                }
                let result = op(n).await;
                if start < measure_from {
                    continue;
                }
                latencies.push(u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX));
                match result {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (latencies, ok, errors, first_error)
        }));
    }
    let mut all = LoadResult {
        ok: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (latencies, ok, errors, first_error) = task.await.expect("load task");
        all.latencies_us.extend(latencies);
        all.ok += ok;
        all.errors += errors;
        if all.first_error.is_none() {
            all.first_error = first_error;
        }
    }
    all.elapsed = measure_from.elapsed();
    all.latencies_us.sort_unstable();
    all
}

/// `GET url`, expecting `status`; the body is read so that the connection is reused.
pub fn get_op(
    client: &reqwest::Client,
    url: Arc<str>,
    status: u16,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
+ Send
+ Sync
+ 'static {
    let client = client.clone();
    move |_| {
        let request = client.get(&*url).header("X-Admin-Key", KEY);
        Box::pin(async move {
            let r = request.send().await.map_err(|e| e.to_string())?;
            let code = r.status().as_u16();
            let body = r.bytes().await.map_err(|e| e.to_string())?;
            if code == status {
                Ok(())
            } else {
                Err(format!("{code}: {}", String::from_utf8_lossy(&body)))
            }
        })
    }
}

/// `POST /bootstrap/users` with a distinct username per sequence number; expects 202. With
/// `ids`, the job ids are collected.
pub fn submit_op(
    client: &reqwest::Client,
    services: &[Service],
    prefix: &'static str,
    ids: Option<Arc<Mutex<Vec<String>>>>,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
+ Send
+ Sync
+ 'static {
    let client = client.clone();
    let urls: Vec<Arc<str>> = services
        .iter()
        .map(|svc| svc.url("/bootstrap/users").into())
        .collect();
    move |n| {
        // Round-robin over the services (replicas of one database).
        let url = &urls[n % urls.len()];
        // Usernames double as namespaces: lower case letters and digits.
        let body = format!(
            r#"{{"username":"{prefix}{n:07}","operators":{{"postgresql":true}},"resources":{{"cpu_cores":2,"ram_mb":2048,"disk_gb":20}}}}"#
        );
        let request = client
            .post(&**url)
            .header("X-Admin-Key", KEY)
            .header("Content-Type", "application/json")
            .body(body);
        let ids = ids.clone();
        Box::pin(async move {
            let r = request.send().await.map_err(|e| e.to_string())?;
            let code = r.status().as_u16();
            let body = r.bytes().await.map_err(|e| e.to_string())?;
            if code != 202 {
                return Err(format!("{code}: {}", String::from_utf8_lossy(&body)));
            }
            if let Some(ids) = ids {
                let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                let id = v["job_id"].as_str().ok_or("202 without job_id")?;
                ids.lock().expect("ids").push(id.to_string());
            }
            Ok(())
        })
    }
}

/// `GET /jobs/{id}` over `ids`, each client walking the list from its own offset.
pub fn poll_op(
    client: &reqwest::Client,
    svc: &Service,
    ids: Arc<Vec<String>>,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
+ Send
+ Sync
+ 'static {
    let urls: Arc<Vec<Arc<str>>> = Arc::new(
        ids.iter()
            .map(|id| svc.url(&format!("/jobs/{id}")).into())
            .collect(),
    );
    let client = client.clone();
    move |n| {
        // Consecutive sequence numbers go to different clients: spread them over the jobs.
        let url = urls[n.wrapping_mul(7919) % urls.len()].clone();
        get_op(&client, url, 200)(n)
    }
}

/// The same client against a bare axum server in this process (own single-thread runtime):
/// what the load generator can do when the server costs almost nothing.
pub async fn bare_ceiling(o: &Options) -> anyhow::Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server_stop = stop.clone();
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let app = axum::Router::new().route(
                "/healthz",
                axum::routing::get(|| async { axum::Json(json!({"status": "ok"})) }),
            );
            tokio::select! {
                served = async { axum::serve(listener, app).await } => served?,
                () = server_stop.cancelled() => {}
            }
            anyhow::Ok(())
        })?;
        // Dropping the runtime ends the connection tasks still open.
        drop(rt);
        Ok(())
    });
    let client = http_client(o.clients)?;
    let url: Arc<str> = format!("http://{addr}/healthz").into();
    let r = drive(o, None, get_op(&client, url, 200)).await;
    stop.cancel();
    server.join().expect("bare server thread")?;
    r.check("bare axum")?;
    Ok(r.rate())
}

/// Waits until the service counted `jobs` finished jobs (`jobs_finished_total`); returns the
/// wall-clock time (ms) when it saw them.
pub async fn wait_finished(
    client: &reqwest::Client,
    services: &[Service],
    jobs: u64,
    bound: Duration,
    started_ms: i64,
) -> anyhow::Result<i64> {
    let deadline = Instant::now() + bound;
    let mut next_report = Instant::now() + Duration::from_secs(5);
    loop {
        // Each replica counts the jobs it finished.
        let mut finished = 0.0;
        for svc in services {
            let text = client
                .get(svc.url("/metrics"))
                .header("X-Admin-Key", KEY)
                .send()
                .await?
                .text()
                .await?;
            finished += text
                .lines()
                .filter(|l| l.starts_with("jobs_finished_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        if finished as u64 >= jobs {
            return Ok(epoch_ms());
        }
        if Instant::now() > deadline {
            eprintln!(
                "   warning: only {finished} of {jobs} jobs finished within the bound; \
                 the end-to-end rate counts those (raise --e2e-timeout for all of them)"
            );
            return Ok(epoch_ms());
        }
        if Instant::now() >= next_report {
            let s = (epoch_ms() - started_ms) as f64 / 1e3;
            eprintln!(
                "     {finished} jobs finished after {s:.1}s ({:.0}/s)",
                finished / s
            );
            next_report += Duration::from_secs(5);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
