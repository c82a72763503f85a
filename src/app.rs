//! Assembles the service: database, worker pool and HTTP server, with a shutdown future.
//! `main` and the tests both start it through [`serve`].

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Database, Settings};
use crate::http::{self, AppState};
use crate::store::postgres::PgOptions;
use crate::store::{Store, WalTruncation};
use crate::worker::Worker;

/// The private folder this process alone writes its temp files in, held while it runs (on
/// SQLite the store's instance lock covers it; on PostgreSQL it has a lock of its own).
pub struct Exclusive {
    _lock: Option<File>,
    pub private_dir: PathBuf,
}

/// Opens the database (running migrations): SQLite under its instance lock, PostgreSQL shared.
/// Prepares the private temp folder that no other process uses.
pub async fn open_store(settings: &Settings) -> anyhow::Result<(Store, Exclusive)> {
    match &settings.database {
        Database::Sqlite { path } => {
            let store = Store::open(path)
                .await
                .with_context(|| format!("cannot open the database {}", path.display()))?;
            // Under the store's instance lock: no other process of this service uses the folder.
            let private_dir = settings.private_tmp_dir.clone();
            prepare_private_dir(&private_dir)?;
            Ok((
                store,
                Exclusive {
                    _lock: None,
                    private_dir,
                },
            ))
        }
        Database::Postgres { url, pool_size } => {
            // Several replicas may share a host and its PRIVATE_TMP_DIR: each takes a folder of
            // its own in it (see `private_folder`).
            let (lock, private_dir) = private_folder(&settings.private_tmp_dir)?;
            let options = PgOptions {
                pool_size: *pool_size,
            };
            let store = Store::open_postgres(url.expose(), options)
                .await
                .context("cannot open the PostgreSQL database")?;
            Ok((
                store,
                Exclusive {
                    _lock: Some(lock),
                    private_dir,
                },
            ))
        }
    }
}

fn prepare_private_dir(dir: &Path) -> anyhow::Result<()> {
    crate::worker::prepare_private_dir(dir)
        .with_context(|| format!("cannot prepare PRIVATE_TMP_DIR {}", dir.display()))
}

/// Takes a folder of this process's own under `base`: `base/<pid>`, locked by `base/<pid>.lock`
/// while the process lives. Folders whose lock nobody holds belong to processes that are gone
/// (their temp files may hold secrets): they are removed first.
fn private_folder(base: &Path) -> anyhow::Result<(File, PathBuf)> {
    prepare_dir_only(base)?;
    for entry in std::fs::read_dir(base)
        .with_context(|| format!("cannot read PRIVATE_TMP_DIR {}", base.display()))?
    {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        let Ok(file) = File::options().write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() {
            let _ = std::fs::remove_dir_all(path.with_extension(""));
            let _ = std::fs::remove_file(&path);
        }
    }
    let dir = base.join(std::process::id().to_string());
    let lock_path = dir.with_extension("lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.try_lock()
        .map_err(|_| anyhow::anyhow!("{} is held by another process", lock_path.display()))?;
    prepare_private_dir(&dir)?;
    Ok((lock, dir))
}

/// Creates `dir` (mode 0700) without emptying it.
fn prepare_dir_only(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create PRIVATE_TMP_DIR {}", dir.display()))
}

/// Runs the service on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Before anything is counted (recovery below counts).
    crate::telemetry::install();
    let mut settings = settings;
    let (store, exclusive) = open_store(&settings).await?;
    // The worker writes its temp files in the folder this process holds.
    settings.private_tmp_dir = exclusive.private_dir.clone();
    let settings = Arc::new(settings);
    // Submits here notify it; on PostgreSQL so do other replicas' submits (through the store).
    let wake = store.job_queued();
    let worker = Worker::new(store.clone(), settings.clone(), wake.clone());
    let recovered = worker
        .recover()
        .await
        .context("cannot recover interrupted jobs")?;
    tracing::info!(worker.id = worker.id(), recovered, addr = %listener.local_addr()?, "everestctl-api started");

    let state = AppState::new(store.clone(), settings.clone(), wake.clone());
    let stop = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(stop.clone()));
    let purge_task = tokio::spawn(purge_secrets(
        store.clone(),
        settings.credentials_ttl,
        stop.clone(),
    ));
    let prune_task = tokio::spawn(crate::retention::run(
        store.clone(),
        Duration::from_secs(u64::from(settings.job_retention_days) * 86_400),
        crate::retention::Pacing::default(),
        stop.clone(),
    ));

    // On shutdown: refuse new jobs, stop claiming, let the worker drain while reads are still
    // served, and only then stop the HTTP server.
    let shutting_down = state.shutting_down.clone();
    let streams = state.shutdown.clone();
    let drained = CancellationToken::new();
    let drained_signal = drained.clone();
    let stop_on_signal = stop.clone();
    let worker_task = tokio::spawn(async move {
        worker_task.await.ok();
        drained_signal.cancel();
    });
    let (max_connections, fd_limit) =
        crate::server::connection_cap(settings.max_connections, settings.worker_concurrency);
    let limits = crate::server::Limits {
        header_timeout: settings.http_header_timeout,
        idle_timeout: settings.http_idle_timeout,
        max_connections,
    };
    tracing::info!(
        max_connections,
        open_file_limit = fd_limit,
        header_timeout_s = limits.header_timeout.as_secs(),
        idle_timeout_s = limits.idle_timeout.as_secs(),
        "connection limits"
    );
    if let Some(limit) = fd_limit
        && max_connections as u64 >= limit
    {
        tracing::warn!(
            max_connections,
            open_file_limit = limit,
            "MAX_CONNECTIONS is not below the open-file limit: accepts may fail with \
             'too many open files' before the cap is reached"
        );
    }
    let router = http::router(state);
    crate::server::serve(listener, router, limits, async move {
        shutdown.await;
        shutting_down.store(true, Ordering::Relaxed);
        streams.cancel();
        tracing::info!("shutting down: no new jobs are accepted or claimed");
        stop_on_signal.cancel();
        drained.cancelled().await;
    })
    .await;
    worker_task.await.ok();
    purge_task.abort();
    prune_task.abort();
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Erases expired passwords regularly.
async fn purge_secrets(store: Store, ttl: Duration, stop: CancellationToken) {
    let period = ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        match store.purge_expired_secrets().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired generated credentials erased"),
            Err(e) => tracing::warn!(error = %e, "cannot purge expired credentials"),
        }
        // Erased passwords (these, and chosen ones erased when their job succeeded) stay in the
        // WAL until it is truncated.
        match store.truncate_wal().await {
            Ok(WalTruncation::AlreadyEmpty | WalTruncation::Truncated) => {}
            Ok(WalTruncation::Busy) => tracing::warn!(
                "readers kept the database's WAL busy: erased credentials may stay in it until \
                 the next purge, which tries again"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot truncate the database's WAL"),
        }
    }
}
