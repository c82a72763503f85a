//! The retention pruner: a background task that deletes jobs that finished more than
//! `JOB_RETENTION_DAYS` ago, with their steps, attempts, events and secrets, and then gives
//! the freed space back to the file system.
//!
//! It deletes in small batches, one short transaction each, pausing between them, so that the
//! database's single write lock is never held for long: submissions and workers interleave
//! with the pruner instead of waiting for it.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError, now_ms};

/// How the pruner paces itself.
#[derive(Debug, Clone)]
pub struct Pacing {
    /// Jobs deleted per transaction.
    pub batch: u32,
    /// Pages given back per `PRAGMA incremental_vacuum`.
    pub vacuum_pages: u32,
    /// Least pause between two batches (or two vacuum steps), so that other writers go first;
    /// the pause is at least as long as the batch took, so the pruner never holds the write
    /// lock more than half of the time, whatever the disk.
    pub pause: Duration,
    /// Time between two passes.
    pub every: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            // About 5 ms per batch (and per vacuum step) on the reference machine; 100 jobs
            // took 10 ms and 500 took 50 ms, which showed in the submissions' tail latency.
            // A waiting writer polls the lock at growing intervals (SQLite's busy handler, up
            // to 50 ms in its first quarter second): a shorter pause lets the pruner take the
            // lock again before it looks. See BENCHMARKS.md.
            batch: 50,
            vacuum_pages: 200,
            pause: Duration::from_millis(50),
            every: Duration::from_secs(3600),
        }
    }
}

/// Prunes at start, then every `pacing.every`, until `stop` is cancelled.
pub async fn run(store: Store, retention: Duration, pacing: Pacing, stop: CancellationToken) {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        let cutoff = now_ms().saturating_sub(retention_ms);
        match prune(&store, cutoff, &pacing, &stop).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "finished jobs past their retention deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot prune old jobs; trying again later"),
        }
        if !pause(&stop, pacing.every).await {
            return;
        }
    }
}

/// One pass: deletes every job finished before `cutoff_ms`, batch by batch, then reclaims the
/// free pages. Returns how many jobs were deleted; stops early (between two transactions)
/// when `stop` is cancelled.
pub async fn prune(
    store: &Store,
    cutoff_ms: i64,
    pacing: &Pacing,
    stop: &CancellationToken,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let started = Instant::now();
        let deleted = store.prune_finished_before(cutoff_ms, pacing.batch).await?;
        total += deleted;
        if deleted < u64::from(pacing.batch) {
            break;
        }
        if !pause(stop, pacing.pause.max(started.elapsed())).await {
            return Ok(total);
        }
    }
    let mut free = i64::MAX;
    loop {
        let started = Instant::now();
        let left = store.reclaim_space(pacing.vacuum_pages).await?;
        // No progress means the file cannot shrink (a database created without
        // auto_vacuum=INCREMENTAL): nothing more to do.
        if left == 0 || left >= free {
            break;
        }
        free = left;
        if !pause(stop, pacing.pause.max(started.elapsed())).await {
            break;
        }
    }
    Ok(total)
}

/// Sleeps for `d`; `false` when `stop` was cancelled first.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
