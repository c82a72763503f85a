//! Service benchmark (issue 7): the release binary of `everestctl-api` against fast fake CLIs.
//!
//! Run with `cargo bench --bench service` (options after `--`, see `--help`); `BENCHMARKS.md`
//! explains the phases and records the figures. Cargo builds the service binary with the bench
//! profile (which inherits `release`) and hands its path to this program as
//! `CARGO_BIN_EXE_everestctl-api`.
//!
//! Each run starts two services, each with a fresh database in a temp dir, and a third one on
//! the loaded database, all with `RBAC_MODE=skip`, `LOG_FORMAT=json` and `RUST_LOG=warn`:
//!
//! - *API instance*: the worker pool is blocked (`WORKER_CONCURRENCY=1` and an `everestctl`
//!   that never returns), so the API path and its durable commit are measured alone;
//!   `JOB_RETENTION_DAYS=36500`, so that the pruner deletes nothing. Phases:
//!   the load generator's ceiling (`GET /healthz`, and a bare axum server in this process),
//!   `POST /bootstrap/users` at `--clients` keep-alive clients, then `GET /jobs/{id}` over the
//!   jobs just submitted (all queued), at as many clients.
//! - *jobs instance*: `WORKER_CONCURRENCY=--workers` and fakes made of shell builtins. Phases:
//!   the spawn floor (a tight loop running the three commands of a bootstrap with the same
//!   parallelism, with `std::process`, and with the service's own `exec::run` for comparison),
//!   end to end (`--jobs` bootstraps submitted by `--clients` clients, until the last one
//!   finished), then memory and database size.
//! - *stored-jobs instance* (unless `--stored-jobs 0`): configured like the API instance, but on
//!   a database holding `--stored-jobs` finished jobs (default 1,000,000), loaded once per
//!   invocation before the first run. Phases: the same submit phase, then polls spread
//!   uniformly over the stored jobs (a random sample of their ids) and the ones just
//!   submitted; the figures are compared with those of the empty database. After the phases
//!   the jobs the run submitted are deleted again, so every run starts from the same database.
//!
//! With `--backend postgres` every instance runs on a fresh database of a private PostgreSQL 15
//! cluster, started as the tests start theirs (`tests/common/pg.rs`), and the server's CPU is
//! reported apart from the service's; `--replicas N` starts N services of the jobs instance on
//! its one database and spreads the end-to-end submissions over them. The stored jobs are then
//! loaded into a database of that cluster (none by default: `--stored-jobs` gives how many).
//!
//! Every phase is bounded in time. The figures are printed as a table and written as JSON to
//! `target/bench-results.json` (or `$CARGO_TARGET_DIR/bench-results.json`).
//!
//! Without `--bench` on the command line (as when `cargo test --benches` runs it), it does
//! nothing, so it never runs as a test.
//!
//! The modules, in the order of a run: `options` (the command line), `stored` (the database
//! with the stored jobs, loaded before the first run), `run` (one run: the instances and their
//! phases), which uses `service` (the service processes and their databases), `fakes` (the
//! fake CLIs), `load` (the load generator), `floor` (the spawn floor), `cpu` (CPU accounting
//! and noise) and `profile` (`--profile`); `figures` (one run's figures, medians) and `report`
//! (the table and the JSON).

mod cpu;
mod fakes;
mod figures;
mod floor;
mod load;
mod options;
mod profile;
mod report;
mod run;
mod service;
mod stored;

#[path = "../../tests/common/bulk.rs"]
mod bulk;
// The PostgreSQL cluster of `--backend postgres`, started as the tests start theirs; the
// bench uses only part of it.
#[allow(dead_code)]
#[path = "../../tests/common/pg.rs"]
mod pg;

use std::time::{SystemTime, UNIX_EPOCH};

use options::Options;
use stored::StoredDb;

const SERVICE_BIN: &str = env!("CARGO_BIN_EXE_everestctl-api");
const KEY: &str = "bench-key-0123456789abcdef";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", Options::HELP);
        return Ok(());
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("service benchmark: skipped (run it with `cargo bench --bench service`)");
        return Ok(());
    }
    let options = Options::parse(&args)?;
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: built without optimisations; the figures mean nothing (use `cargo bench`)"
        );
    }
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.client_threads)
        .enable_all()
        .build()?;
    eprintln!(
        "service benchmark: {} run(s), binary {SERVICE_BIN}, {} core(s), workers {}, \
         clients {}, client threads {}, {} jobs, phases of {:?}, {} stored jobs, backend {:?}, \
         {} replica(s)",
        options.runs,
        cores(),
        options.workers,
        options.clients,
        options.client_threads,
        options.jobs,
        options.duration,
        options.stored_jobs,
        options.backend,
        options.replicas
    );
    let stored = if options.stored_jobs > 0 {
        Some(StoredDb::build(&options, &client_rt)?)
    } else {
        None
    };
    let (mut runs, mut discarded) = (Vec::new(), Vec::new());
    let mut run = 0;
    while runs.len() < options.runs {
        run += 1;
        eprintln!(
            "== run {run} ({} of {} kept so far)",
            runs.len(),
            options.runs
        );
        let figures = run::run_once(&options, &client_rt, run, stored.as_ref())?;
        report::print_table(
            &options,
            &format!("run {run}"),
            std::slice::from_ref(&figures),
        );
        let noise = figures.other_cpu_pct;
        if noise > options.max_noise && discarded.len() < options.retries {
            println!(
                "run {run} discarded: {noise:.0}% of the machine's CPU went to other processes \
                 (--max-noise {}); running it again",
                options.max_noise
            );
            discarded.push(figures);
            continue;
        }
        runs.push(figures);
    }
    if runs.len() > 1 {
        report::print_table(&options, &format!("median of {} runs", runs.len()), &runs);
    }
    if let Some(stored) = &stored {
        println!(
            "\nstored jobs: {} finished jobs loaded in {:.1} s, database {:.0} MiB; polls \
             sampled {} of their ids",
            stored.jobs,
            stored.load_s,
            stored.bytes as f64 / 1_048_576.0,
            stored.sample.len()
        );
    }
    report::write_results(&options, &runs, &discarded, stored.as_ref())?;
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
