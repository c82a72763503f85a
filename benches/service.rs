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
//! its one database and spreads the end-to-end submissions over them. The stored-jobs phases
//! load SQLite only so far.
//!
//! Every phase is bounded in time. The figures are printed as a table and written as JSON to
//! `target/bench-results.json` (or `$CARGO_TARGET_DIR/bench-results.json`).
//!
//! Without `--bench` on the command line (as when `cargo test --benches` runs it), it does
//! nothing, so it never runs as a test.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use everestctl_api::domain::{Operators, Resources};
use everestctl_api::everest::{argv, quota_manifest};
use everestctl_api::exec::{self, CommandSpec, ExecLimits};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[path = "../tests/common/bulk.rs"]
mod bulk;
// The PostgreSQL cluster of `--backend postgres`, started as the tests start theirs; the
// bench uses only part of it.
#[allow(dead_code)]
#[path = "../tests/common/pg.rs"]
mod pg;

const SERVICE_BIN: &str = env!("CARGO_BIN_EXE_everestctl-api");
const KEY: &str = "bench-key-0123456789abcdef";
/// Bound on every single HTTP request of the load generator.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `everestctl` for the jobs instance: the confirmation lines of `accounts create` and
/// `namespaces add` (`src/everest/confirm.rs`), with shell builtins only.
const FAKE_EVERESTCTL: &str = r#"#!/bin/sh
# Benchmark fake: prints the success line the service checks for; builtins only.
case "$1 $2" in
"accounts create") printf "✅ User '%s' has been created successfully\n\n" "$4" ;;
"namespaces add") printf "✅  Provisioning database namespace '%s'\n" "$3" ;;
*) printf 'bench fake everestctl: unsupported: %s\n' "$*" >&2; exit 1 ;;
esac
"#;

/// `kubectl apply -n NS -f -`: reads the manifest from stdin (builtins only) and exits 0.
const FAKE_KUBECTL: &str = r#"#!/bin/sh
# Benchmark fake: drains the manifest on stdin; builtins only.
case "$1" in
apply)
  while read -r _; do :; done
  printf 'resourcequota/everest-quota configured\nlimitrange/everest-limits configured\n' ;;
*) printf 'bench fake kubectl: unsupported: %s\n' "$*" >&2; exit 1 ;;
esac
"#;

/// `everestctl` for the API instance: the one job its single worker claims never ends, so
/// the worker pool stays out of the way of the submissions.
const BLOCKING_EVERESTCTL: &str = "#!/bin/sh\nexec sleep 3600\n";

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
        let figures = run_once(&options, &client_rt, run, stored.as_ref())?;
        print_table(&format!("run {run}"), std::slice::from_ref(&figures));
        let noise = figures.get("other_cpu_pct").copied().unwrap_or(0.0);
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
        print_table(&format!("median of {} runs", runs.len()), &runs);
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
    write_results(&options, &runs, &discarded, stored.as_ref())?;
    Ok(())
}

// ---- options ----------------------------------------------------------------------------------

struct Options {
    workers: usize,
    clients: usize,
    jobs: usize,
    duration: Duration,
    warmup: Duration,
    client_threads: usize,
    runs: usize,
    e2e_timeout: Duration,
    profile: Option<Profiler>,
    keep: bool,
    max_noise: f64,
    retries: usize,
    service_env: Vec<(String, String)>,
    stored_jobs: usize,
    out: PathBuf,
    backend: Backend,
    /// Services of the jobs instance sharing its database (PostgreSQL only).
    replicas: usize,
}

/// Which store the services run on (`--backend`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Sqlite,
    /// A private PostgreSQL 15 cluster started the way the tests start theirs
    /// (`tests/common/pg.rs`), a fresh database per service instance.
    Postgres,
}

/// The run's temp dir (fakes, databases, service logs), kept with `--keep`.
struct Sandbox {
    dir: Option<tempfile::TempDir>,
    keep: bool,
}

impl Sandbox {
    fn path(&self) -> &Path {
        self.dir.as_ref().expect("sandbox dir").path()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take().filter(|_| self.keep) {
            eprintln!("   kept {}", dir.keep().display());
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Profiler {
    Strace,
    Perf,
}

impl Options {
    const HELP: &'static str = "cargo bench --bench service [-- OPTIONS]

  --runs N            repeat the whole benchmark N times and report medians (1)
  --workers N         WORKER_CONCURRENCY of the jobs instance and spawn-floor parallelism (4,
                      the service's default)
  --clients N         concurrent keep-alive HTTP clients (64)
  --jobs N            jobs of the end-to-end phase (10000)
  --duration S        seconds of each time-bound phase: ceilings, submit, polls (10); each
                      spawn floor takes half of it
  --warmup S          unmeasured seconds before each time-bound phase (1)
  --client-threads N  threads of the load generator's runtime (1)
  --e2e-timeout S     bound on the end-to-end phase, submissions included (180); jobs not
                      finished by then are left out of the end-to-end figures
  --profile P         attach `strace` (-c -f) or `perf` (record) to the service during the
                      submit, end-to-end and poll phases; output in target/bench-profile/.
                      Profiled figures are slower: do not record them.
  --max-noise PCT     a run during which other processes used more than PCT % of the
                      machine's CPU is discarded and run again (10)
  --retries N         at most N runs are discarded that way (as many as --runs)
  --service-env K=V   extra environment for every service (repeatable; it wins over the
                      benchmark's own settings), e.g. to try a knob
  --stored-jobs N     finished jobs (with their steps, attempts, events and secrets) loaded
                      once, before the first run, into a database on which every run
                      repeats the submit and poll phases, to compare them with the empty
                      database (1000000: a load of 1-2 minutes, 4.5 GiB of temp disk and
                      twice that while loading; 0 skips those phases)
  --keep              keep the temp dirs (databases api/bench.db, jobs/bench.db and
                      stored/bench.db, logs)
  --out FILE          JSON results (target/bench-results.json)
  --backend B         sqlite (the default) or postgres: a private PostgreSQL 15 cluster started
                      as the tests start theirs (as root, with the Debian binaries), a fresh
                      database per instance; its server's CPU is reported apart
  --replicas N        services of the jobs instance sharing its database, the end-to-end
                      submissions spread round-robin over them (1; more needs postgres)";

    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let mut o = Options {
            // The service's default WORKER_CONCURRENCY: more workers than cores, because each
            // step of a job waits for the commit that records its start before it runs.
            workers: DEFAULT_WORKERS,
            clients: 64,
            jobs: 10_000,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            client_threads: 1,
            runs: 1,
            e2e_timeout: Duration::from_secs(180),
            profile: None,
            keep: false,
            max_noise: 10.0,
            retries: 0,
            service_env: Vec::new(),
            stored_jobs: 1_000_000,
            out: target.join("bench-results.json"),
            backend: Backend::Sqlite,
            replicas: 1,
        };
        let retries_given = args.iter().any(|a| a == "--retries");
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .with_context(|| format!("{arg} needs a value (see --help)"))
            };
            let count = |v: &String| -> anyhow::Result<usize> {
                let n: usize = v
                    .parse()
                    .with_context(|| format!("{arg} {v}: not a count"))?;
                ensure!(n > 0, "{arg} must be at least 1");
                Ok(n)
            };
            let secs = |v: &String| -> anyhow::Result<Duration> {
                let s: f64 = v
                    .parse()
                    .with_context(|| format!("{arg} {v}: not seconds"))?;
                ensure!(s.is_finite() && s >= 0.0, "{arg} must be >= 0");
                Ok(Duration::from_secs_f64(s))
            };
            match arg.as_str() {
                "--bench" => {}
                "--runs" => o.runs = count(value()?)?,
                "--workers" => o.workers = count(value()?)?,
                "--clients" => o.clients = count(value()?)?,
                "--jobs" => o.jobs = count(value()?)?,
                "--duration" => o.duration = secs(value()?)?,
                "--warmup" => o.warmup = secs(value()?)?,
                "--client-threads" => o.client_threads = count(value()?)?,
                "--e2e-timeout" => o.e2e_timeout = secs(value()?)?,
                "--profile" => {
                    o.profile = Some(match value()?.as_str() {
                        "strace" => Profiler::Strace,
                        "perf" => Profiler::Perf,
                        other => bail!("--profile {other}: use strace or perf"),
                    })
                }
                "--out" => o.out = PathBuf::from(value()?),
                "--keep" => o.keep = true,
                "--service-env" => {
                    let v = value()?;
                    let (k, v) = v
                        .split_once('=')
                        .with_context(|| format!("{arg} {v}: use KEY=VALUE"))?;
                    o.service_env.push((k.to_string(), v.to_string()));
                }
                "--max-noise" => {
                    o.max_noise = value()?
                        .parse()
                        .with_context(|| format!("{arg}: not a percentage"))?
                }
                "--retries" => {
                    o.retries = value()?
                        .parse()
                        .with_context(|| format!("{arg}: not a count"))?
                }
                "--stored-jobs" => {
                    o.stored_jobs = value()?
                        .parse()
                        .with_context(|| format!("{arg}: not a count"))?
                }
                "--backend" => {
                    o.backend = match value()?.as_str() {
                        "sqlite" => Backend::Sqlite,
                        "postgres" => Backend::Postgres,
                        other => bail!("--backend {other}: use sqlite or postgres"),
                    }
                }
                "--replicas" => o.replicas = count(value()?)?,
                other => bail!("unknown argument {other:?} (see --help)"),
            }
        }
        ensure!(!o.duration.is_zero(), "--duration must be above 0");
        ensure!(
            o.replicas == 1 || o.backend == Backend::Postgres,
            "--replicas above 1 needs --backend postgres (SQLite is one process per file)"
        );
        if o.backend == Backend::Postgres && !args.iter().any(|a| a == "--stored-jobs") {
            o.stored_jobs = 0;
        }
        ensure!(
            o.stored_jobs == 0 || o.backend == Backend::Sqlite,
            "--stored-jobs loads SQLite only so far: use --stored-jobs 0 with --backend postgres"
        );
        if !retries_given {
            o.retries = o.runs;
        }
        Ok(o)
    }
}

/// The service's default `WORKER_CONCURRENCY` (`src/config/raw.rs`).
const DEFAULT_WORKERS: usize = 4;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// ---- figures ----------------------------------------------------------------------------------

/// One run's figures by name (see [`TABLE`]).
type Figures = BTreeMap<String, f64>;

/// A line of the summary table: key, label, unit, target (`>=` or `<=` a value).
struct Row {
    key: &'static str,
    label: &'static str,
    target: Option<(char, f64)>,
}

const fn row(key: &'static str, label: &'static str, target: Option<(char, f64)>) -> Row {
    Row { key, label, target }
}

const TABLE: &[Row] = &[
    row(
        "ceiling_healthz_rps",
        "load generator ceiling: GET /healthz, req/s",
        None,
    ),
    row("ceiling_healthz_p99_ms", "  GET /healthz p99, ms", None),
    row(
        "ceiling_loadgen_cpu_us",
        "  load generator CPU per request, µs",
        None,
    ),
    row(
        "ceiling_service_cpu_us",
        "  service CPU per GET /healthz, µs",
        None,
    ),
    row(
        "ceiling_bare_rps",
        "load generator ceiling: bare axum in the bench, req/s",
        None,
    ),
    row(
        "submit_rps",
        "submit: accepted jobs/s (workers blocked)",
        Some(('>', 5000.0)),
    ),
    row("submit_p50_ms", "  submit p50, ms", None),
    row("submit_p99_ms", "  submit p99, ms", Some(('<', 20.0))),
    row("submit_errors", "  submit errors (non-202)", None),
    row(
        "submit_service_cpu_us",
        "  service CPU per submit, µs",
        None,
    ),
    row(
        "submit_loadgen_cpu_us",
        "  load generator CPU per submit, µs",
        None,
    ),
    row(
        "polls_rps",
        "status polls: GET /jobs/{id} (queued jobs), req/s",
        Some(('>', 15000.0)),
    ),
    row("polls_p50_ms", "  polls p50, ms", None),
    row("polls_p99_ms", "  polls p99, ms", Some(('<', 10.0))),
    row("polls_service_cpu_us", "  service CPU per poll, µs", None),
    row(
        "polls_loadgen_cpu_us",
        "  load generator CPU per poll, µs",
        None,
    ),
    row(
        "vm_hwm_api_mib",
        "  VmHWM of this API instance after submit + polls, MiB",
        None,
    ),
    row(
        "stored_jobs",
        "stored finished jobs in the database (--stored-jobs)",
        None,
    ),
    row(
        "stored_submit_rps",
        "submit with the stored jobs: jobs/s (workers blocked)",
        None,
    ),
    row(
        "stored_submit_p50_ms",
        "  submit p50 with the stored jobs, ms",
        None,
    ),
    row(
        "stored_submit_p99_ms",
        "  submit p99 with the stored jobs, ms",
        None,
    ),
    row(
        "stored_submit_errors",
        "  submit errors with the stored jobs (non-202)",
        None,
    ),
    row(
        "stored_submit_service_cpu_us",
        "  service CPU per submit with the stored jobs, µs",
        None,
    ),
    row(
        "stored_submit_rps_ratio",
        "  jobs/s: stored / empty database (within 20 %)",
        Some(('>', 0.8)),
    ),
    row(
        "stored_submit_p50_ratio",
        "  p50: stored / empty database (within 20 %)",
        Some(('<', 1.2)),
    ),
    row(
        "stored_submit_p99_ratio",
        "  p99: stored / empty database (within 20 %)",
        Some(('<', 1.2)),
    ),
    row(
        "stored_polls_rps",
        "status polls with the stored jobs: GET /jobs/{id}, req/s",
        None,
    ),
    row(
        "stored_polls_p50_ms",
        "  polls p50 with the stored jobs, ms",
        None,
    ),
    row(
        "stored_polls_p99_ms",
        "  polls p99 with the stored jobs, ms",
        None,
    ),
    row(
        "stored_polls_service_cpu_us",
        "  service CPU per poll with the stored jobs, µs",
        None,
    ),
    row(
        "stored_polls_rps_ratio",
        "  req/s: stored / empty database (within 20 %)",
        Some(('>', 0.8)),
    ),
    row(
        "stored_polls_p50_ratio",
        "  p50: stored / empty database (within 20 %)",
        Some(('<', 1.2)),
    ),
    row(
        "stored_polls_p99_ratio",
        "  p99: stored / empty database (within 20 %)",
        Some(('<', 1.2)),
    ),
    row(
        "vm_hwm_stored_mib",
        "  VmHWM of the instance on the stored jobs, MiB",
        None,
    ),
    row(
        "e2e_jobs_per_s",
        "end to end: jobs/s, first submit to last finished",
        None,
    ),
    row(
        "floor_jobs_per_s",
        "  spawn floor (std::process loop), jobs/s",
        None,
    ),
    row(
        "floor_exec_jobs_per_s",
        "  spawn floor (the service's exec::run), jobs/s",
        None,
    ),
    row(
        "e2e_pct_of_floor",
        "  end to end / spawn floor, %",
        Some(('>', 80.0)),
    ),
    row("e2e_finished", "  jobs finished within the bound", None),
    row("e2e_succeeded", "  jobs succeeded", None),
    row(
        "e2e_submit_rps",
        "  submit rate while workers run, jobs/s",
        None,
    ),
    row(
        "e2e_submit_p99_ms",
        "  submit p99 while workers run, ms",
        None,
    ),
    row(
        "e2e_service_cpu_ms_per_job",
        "  service CPU per job (own), ms",
        None,
    ),
    row(
        "e2e_cli_cpu_ms_per_job",
        "  fake CLI CPU per job (3 runs), ms",
        None,
    ),
    row(
        "e2e_db_cpu_ms_per_job",
        "  PostgreSQL server CPU per job, ms",
        None,
    ),
    row(
        "floor_cpu_ms_per_job",
        "  CPU per job in the std floor (bench + CLIs), ms",
        None,
    ),
    row(
        "floor_exec_cpu_ms_per_job",
        "  CPU per job in the exec::run floor (bench + CLIs), ms",
        None,
    ),
    row(
        "vm_hwm_mib",
        "peak RSS (VmHWM) after the end-to-end jobs, MiB",
        Some(('<', 40.0)),
    ),
    row(
        "db_bytes_per_job",
        "database (db + wal) per job, bytes",
        None,
    ),
    row(
        "db_checkpointed_bytes_per_job",
        "  db after clean shutdown per job, bytes",
        None,
    ),
    row(
        "events_per_job",
        "  job_events rows per succeeded job",
        None,
    ),
    row(
        "other_cpu_pct",
        "CPU used by other processes (max over phases), %",
        Some(('<', 10.0)),
    ),
];

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn medians(runs: &[Figures]) -> Figures {
    let mut out = Figures::new();
    for key in runs.iter().flat_map(|r| r.keys()) {
        if out.contains_key(key) {
            continue;
        }
        let mut values: Vec<f64> = runs.iter().filter_map(|r| r.get(key).copied()).collect();
        out.insert(key.clone(), median(&mut values));
    }
    out
}

fn print_table(title: &str, runs: &[Figures]) {
    let med = medians(runs);
    println!();
    println!("{title}");
    let spread = runs.len() > 1;
    println!(
        "{:<56} {:>11} {:>23} {:>10}  met",
        "figure",
        if spread { "median" } else { "value" },
        if spread { "min .. max" } else { "" },
        "target"
    );
    for r in TABLE {
        let Some(v) = med.get(r.key) else { continue };
        let range = if spread {
            let vals: Vec<f64> = runs.iter().filter_map(|f| f.get(r.key).copied()).collect();
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{} .. {}", fmt(lo), fmt(hi))
        } else {
            String::new()
        };
        let (target, met) = match r.target {
            Some(('>', t)) => (format!(">= {}", fmt(t)), if *v >= t { "yes" } else { "NO" }),
            Some((_, t)) => (format!("<= {}", fmt(t)), if *v <= t { "yes" } else { "NO" }),
            None => (String::new(), ""),
        };
        println!(
            "{:<56} {:>11} {:>23} {:>10}  {}",
            r.label,
            fmt(*v),
            range,
            target,
            met
        );
    }
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn write_results(
    options: &Options,
    runs: &[Figures],
    discarded: &[Figures],
    stored: Option<&StoredDb>,
) -> anyhow::Result<()> {
    let doc = json!({
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "command": std::iter::once("cargo bench --bench service --".to_string())
            .chain(std::env::args().skip(1).filter(|a| a != "--bench"))
            .collect::<Vec<_>>()
            .join(" "),
        "commit": git(&["rev-parse", "HEAD"]),
        "uncommitted_changes": git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        "machine": {"cores": cores(), "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default().trim()},
        "config": {
            "workers": options.workers, "clients": options.clients, "jobs": options.jobs,
            "duration_s": options.duration.as_secs_f64(), "warmup_s": options.warmup.as_secs_f64(),
            "client_threads": options.client_threads, "runs": options.runs,
            "e2e_timeout_s": options.e2e_timeout.as_secs_f64(), "max_noise_pct": options.max_noise,
            "backend": format!("{:?}", options.backend).to_lowercase(), "replicas": options.replicas,
            "service_env": options.service_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "profiled": options.profile.is_some(), "stored_jobs": options.stored_jobs,
        },
        "stored_database": stored.map(|d| json!({
            "jobs": d.jobs, "load_s": d.load_s, "bytes": d.bytes, "sampled_ids": d.sample.len(),
        })),
        "targets": TABLE.iter().filter_map(|r| r.target.map(|(op, t)| {
            (r.key.to_string(), json!(format!("{} {}", if op == '>' { ">=" } else { "<=" }, t)))
        })).collect::<serde_json::Map<_, _>>(),
        "median": medians(runs),
        "runs": runs,
        "discarded_runs": discarded,
    });
    if let Some(dir) = options.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&options.out, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("cannot write {}", options.out.display()))?;
    println!("\nresults written to {}", options.out.display());
    Ok(())
}

/// The output of a git command in this crate's folder, if git and a repository are there.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

// ---- one run ----------------------------------------------------------------------------------

fn run_once(
    o: &Options,
    rt: &tokio::runtime::Runtime,
    run: usize,
    stored: Option<&StoredDb>,
) -> anyhow::Result<Figures> {
    let mut f = Figures::new();
    let sandbox = tempfile::Builder::new()
        .prefix("everestctl-api-bench-")
        .tempdir()?;
    let sandbox = Sandbox {
        dir: Some(sandbox),
        keep: o.keep,
    };
    let bin = write_fakes(sandbox.path())?;
    let client = http_client(o.clients)?;

    // API instance: the worker pool is blocked by a command that never returns.
    {
        let db = Db::fresh(o, rt, sandbox.path(), &format!("api_{run}"))?;
        let mut svc = Service::start(sandbox.path(), "api", db, &api_env(&bin), &o.service_env)?;
        rt.block_on(svc.wait_healthy(&client))?;

        eprintln!("   ceiling: GET /healthz, {} clients", o.clients);
        let url: Arc<str> = svc.url("/healthz").into();
        let before = Cpu::sample(&[svc.pid()]);
        let r = rt.block_on(drive(o, None, get_op(&client, url, 200)));
        let cpu = Cpu::sample(&[svc.pid()]).since(&before);
        note_noise(&mut f, "the /healthz ceiling", &cpu);
        r.check("GET /healthz")?;
        f.insert("ceiling_healthz_rps".into(), r.rate());
        f.insert("ceiling_healthz_p99_ms".into(), r.pct(99.0));
        f.insert(
            "ceiling_loadgen_cpu_us".into(),
            cpu.bench * 1e6 / r.total() as f64,
        );
        f.insert(
            "ceiling_service_cpu_us".into(),
            cpu.service * 1e6 / r.total() as f64,
        );

        eprintln!("   ceiling: bare axum server in the bench process");
        let bare = rt.block_on(bare_ceiling(o))?;
        f.insert("ceiling_bare_rps".into(), bare);

        let phase = Phase {
            o,
            rt,
            client: &client,
            svc: &svc,
            run,
        };
        eprintln!("   submit: POST /bootstrap/users, {} clients", o.clients);
        let ids = phase.submit(&mut f, "submit", "submit", "s")?;
        eprintln!(
            "   polls: GET /jobs/{{id}} over {} queued jobs, {} clients",
            ids.len(),
            o.clients
        );
        ensure!(!ids.is_empty(), "no job ids to poll");
        phase.polls(&mut f, "polls", "polls", Arc::new(ids))?;
        f.insert(
            "vm_hwm_api_mib".into(),
            svc.memory()?.hwm_kib as f64 / 1024.0,
        );
        svc.stop(Duration::from_secs(30))?;
    }

    // The same instance on the database with the stored jobs.
    if let Some(stored) = stored {
        let mut svc = Service::start_at(
            Db::Sqlite(stored.db.clone()),
            sandbox.path().join("stored.log"),
            &api_env(&bin),
            &o.service_env,
        )?;
        rt.block_on(svc.wait_healthy(&client))?;
        let phase = Phase {
            o,
            rt,
            client: &client,
            svc: &svc,
            run,
        };
        f.insert("stored_jobs".into(), stored.jobs as f64);
        eprintln!(
            "   submit with {} stored jobs: POST /bootstrap/users, {} clients",
            stored.jobs, o.clients
        );
        let submitted =
            phase.submit(&mut f, "stored_submit", "submit with the stored jobs", "l")?;
        let ids = stored.poll_ids(submitted);
        eprintln!(
            "   polls with {} stored jobs: GET /jobs/{{id}} over {} ids (stored and just \
             submitted), {} clients",
            stored.jobs,
            ids.len(),
            o.clients
        );
        phase.polls(
            &mut f,
            "stored_polls",
            "polls with the stored jobs",
            Arc::new(ids),
        )?;
        f.insert(
            "vm_hwm_stored_mib".into(),
            svc.memory()?.hwm_kib as f64 / 1024.0,
        );
        svc.stop(Duration::from_secs(30))?;
        for (stored_key, empty_key, ratio_key) in [
            ("stored_submit_rps", "submit_rps", "stored_submit_rps_ratio"),
            (
                "stored_submit_p50_ms",
                "submit_p50_ms",
                "stored_submit_p50_ratio",
            ),
            (
                "stored_submit_p99_ms",
                "submit_p99_ms",
                "stored_submit_p99_ratio",
            ),
            ("stored_polls_rps", "polls_rps", "stored_polls_rps_ratio"),
            (
                "stored_polls_p50_ms",
                "polls_p50_ms",
                "stored_polls_p50_ratio",
            ),
            (
                "stored_polls_p99_ms",
                "polls_p99_ms",
                "stored_polls_p99_ratio",
            ),
        ] {
            f.insert(ratio_key.into(), f[stored_key] / f[empty_key]);
        }
        rt.block_on(stored.reset())?;
    }

    // Jobs instance: fast fakes, WORKER_CONCURRENCY = --workers; --replicas services on one
    // database.
    let db = Db::fresh(o, rt, sandbox.path(), &format!("jobs_{run}"))?;
    let mut replicas = Vec::with_capacity(o.replicas);
    for n in 0..o.replicas {
        let name = if n == 0 {
            "jobs".to_string()
        } else {
            format!("jobs-{n}")
        };
        replicas.push(Service::start(
            sandbox.path(),
            &name,
            db.clone(),
            &[
                (
                    "EVERESTCTL_BIN",
                    bin.join("everestctl").display().to_string(),
                ),
                ("KUBECTL_BIN", bin.join("kubectl").display().to_string()),
                ("WORKER_CONCURRENCY", o.workers.to_string()),
                // Each replica its own private folder (they share the run's temp dir).
                (
                    "PRIVATE_TMP_DIR",
                    sandbox
                        .path()
                        .join(format!("{name}-tmp"))
                        .display()
                        .to_string(),
                ),
            ],
            &o.service_env,
        )?);
    }
    for svc in &replicas {
        rt.block_on(svc.wait_healthy(&client))?;
    }
    let pids: Vec<u32> = replicas.iter().map(Service::pid).collect();
    let svc = &replicas[0];
    let floor_duration = o.duration / 2;

    eprintln!("   spawn floor: std::process, parallelism {}", o.workers);
    let before = Cpu::sample(&[]);
    let (floor, floor_elapsed) = spawn_floor_std(&bin, o.workers, floor_duration)?;
    let floor_cpu = Cpu::sample(&[]).since(&before);
    note_noise(&mut f, "the spawn floor", &floor_cpu);
    f.insert(
        "floor_jobs_per_s".into(),
        floor as f64 / floor_elapsed.as_secs_f64(),
    );
    f.insert(
        "floor_cpu_ms_per_job".into(),
        (floor_cpu.bench + floor_cpu.bench_children) * 1e3 / floor as f64,
    );
    eprintln!("   spawn floor: exec::run, parallelism {}", o.workers);
    let before = Cpu::sample(&[]);
    let (floor_exec, elapsed) = spawn_floor_exec(&bin, o.workers, floor_duration)?;
    let exec_cpu = Cpu::sample(&[]).since(&before);
    note_noise(&mut f, "the exec::run floor", &exec_cpu);
    f.insert(
        "floor_exec_jobs_per_s".into(),
        floor_exec as f64 / elapsed.as_secs_f64(),
    );
    f.insert(
        "floor_exec_cpu_ms_per_job".into(),
        (exec_cpu.bench + exec_cpu.bench_children) * 1e3 / floor_exec as f64,
    );

    eprintln!(
        "   end to end: {} bootstrap jobs (bound {:?})",
        o.jobs, o.e2e_timeout
    );
    let phase_start = Instant::now();
    let profiler = Profile::attach(o.profile, svc.pid(), run, "e2e")?;
    let before = Cpu::sample(&pids);
    let first_submit_ms = epoch_ms();
    let submits = rt.block_on(drive(
        o,
        Some(o.jobs),
        submit_op(&client, &replicas, "e", None),
    ));
    submits.check("end-to-end submit")?;
    let remaining = o.e2e_timeout.saturating_sub(phase_start.elapsed());
    let finished = rt.block_on(wait_finished(
        &client,
        &replicas,
        submits.ok,
        remaining,
        first_submit_ms,
    ))?;
    let cpu = Cpu::sample(&pids).since(&before);
    note_noise(&mut f, "end to end", &cpu);
    profiler.finish()?;
    let mem = svc.memory()?;
    let db = rt.block_on(db_facts(&svc.db))?;
    ensure!(db.finished > 0, "no job finished");
    let done_ms = db.last_finished_ms.unwrap_or(finished);
    eprintln!(
        "     jobs stored from +{} ms to +{} ms, last finished at +{} ms after the first submit",
        db.first_created_ms - first_submit_ms,
        db.last_created_ms - first_submit_ms,
        done_ms - first_submit_ms
    );
    let seconds = (done_ms - first_submit_ms) as f64 / 1e3;
    let jobs = db.finished as f64;
    f.insert("e2e_jobs_per_s".into(), jobs / seconds);
    f.insert(
        "e2e_pct_of_floor".into(),
        100.0 * f["e2e_jobs_per_s"] / f["floor_jobs_per_s"],
    );
    f.insert("e2e_finished".into(), jobs);
    f.insert("e2e_succeeded".into(), db.succeeded as f64);
    f.insert("e2e_submit_rps".into(), submits.rate());
    f.insert("e2e_submit_p99_ms".into(), submits.pct(99.0));
    f.insert(
        "e2e_service_cpu_ms_per_job".into(),
        cpu.service * 1e3 / jobs,
    );
    f.insert(
        "e2e_cli_cpu_ms_per_job".into(),
        cpu.service_children * 1e3 / jobs,
    );
    if o.backend == Backend::Postgres {
        f.insert("e2e_db_cpu_ms_per_job".into(), cpu.db * 1e3 / jobs);
    }
    f.insert(
        "events_per_job".into(),
        db.events as f64 / db.succeeded.max(1) as f64,
    );
    let complete = db.finished == submits.ok as i64;
    if db.succeeded != db.finished || db.finished != submits.ok as i64 {
        eprintln!(
            "   warning: {} of {} jobs succeeded (statuses: {:?}); first failure: {}",
            db.succeeded, submits.ok, db.statuses, db.first_error
        );
    }
    f.insert("vm_hwm_mib".into(), mem.hwm_kib as f64 / 1024.0);
    eprintln!(
        "   after {} finished jobs: VmHWM {} KiB, VmRSS {} KiB",
        db.finished, mem.hwm_kib, mem.rss_kib
    );
    // The database's size on disk: SQLite's file and WAL (PostgreSQL's files are the server's).
    let file = svc.db.file().map(Path::to_path_buf);
    if let Some(file) = &file {
        let (db_bytes, wal_bytes) = (file_size(file), file_size(&wal_of(file)));
        // Per job only when every job finished: queued jobs are smaller than finished ones.
        if complete {
            f.insert(
                "db_bytes_per_job".into(),
                (db_bytes + wal_bytes) as f64 / submits.ok as f64,
            );
        }
        eprintln!("   db {db_bytes} B, wal {wal_bytes} B");
    }
    for svc in &mut replicas {
        svc.stop(Duration::from_secs(60))?;
    }
    if let Some(file) = &file
        && complete
    {
        let checkpointed = file_size(file) + file_size(&wal_of(file));
        f.insert(
            "db_checkpointed_bytes_per_job".into(),
            checkpointed as f64 / submits.ok as f64,
        );
    }
    Ok(f)
}

/// The fake CLIs in `dir/bin`; returns that folder.
fn write_fakes(dir: &Path) -> anyhow::Result<PathBuf> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    for (name, text) in [
        ("everestctl", FAKE_EVERESTCTL),
        ("kubectl", FAKE_KUBECTL),
        ("everestctl-blocking", BLOCKING_EVERESTCTL),
    ] {
        write_executable(&bin.join(name), text)?;
    }
    Ok(bin)
}

/// Environment of the API instance (on the empty and on the stored-jobs database): the worker
/// pool is blocked by a command that never returns, and the retention is 100 years, so that
/// the pruner deletes none of the stored jobs.
fn api_env(bin: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "EVERESTCTL_BIN",
            bin.join("everestctl-blocking").display().to_string(),
        ),
        ("KUBECTL_BIN", bin.join("kubectl").display().to_string()),
        ("WORKER_CONCURRENCY", "1".into()),
        ("SUBPROCESS_TIMEOUT", "3600".into()),
        ("SHUTDOWN_GRACE_SECONDS", "0".into()),
        ("KILL_GRACE_SECONDS", "0".into()),
        ("JOB_RETENTION_DAYS", "36500".into()),
    ]
}

/// What the submit and poll phases need; the same phases run on the empty database and on the
/// one with the stored jobs.
struct Phase<'a> {
    o: &'a Options,
    rt: &'a tokio::runtime::Runtime,
    client: &'a reqwest::Client,
    svc: &'a Service,
    run: usize,
}

impl Phase<'_> {
    /// `POST /bootstrap/users` (usernames `prefix` and a sequence number) for `--duration`;
    /// figures `{key}_rps`, `_p50_ms`, `_p99_ms`, `_errors`, `_service_cpu_us` and
    /// `_loadgen_cpu_us`. Returns the ids of the accepted jobs.
    fn submit(
        &self,
        f: &mut Figures,
        key: &str,
        what: &str,
        prefix: &'static str,
    ) -> anyhow::Result<Vec<String>> {
        let ids = Arc::new(Mutex::new(Vec::new()));
        let op = submit_op(
            self.client,
            std::slice::from_ref(self.svc),
            prefix,
            Some(ids.clone()),
        );
        self.measure(f, key, what, op)?;
        let ids = std::mem::take(&mut *ids.lock().expect("ids"));
        Ok(ids)
    }

    /// `GET /jobs/{id}` over `ids` for `--duration`; figures `{key}_rps`, `_p50_ms`, `_p99_ms`,
    /// `_service_cpu_us` and `_loadgen_cpu_us`.
    fn polls(
        &self,
        f: &mut Figures,
        key: &str,
        what: &str,
        ids: Arc<Vec<String>>,
    ) -> anyhow::Result<()> {
        let op = poll_op(self.client, self.svc, ids);
        self.measure(f, key, what, op)?;
        Ok(())
    }

    fn measure<F, Fut>(&self, f: &mut Figures, key: &str, what: &str, op: F) -> anyhow::Result<()>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let pid = self.svc.pid();
        let profiler = Profile::attach(self.o.profile, pid, self.run, key)?;
        let before = Cpu::sample(&[pid]);
        let r = self.rt.block_on(drive(self.o, None, op));
        let cpu = Cpu::sample(&[pid]).since(&before);
        note_noise(f, what, &cpu);
        profiler.finish()?;
        r.check(what)?;
        f.insert(format!("{key}_rps"), r.rate());
        f.insert(format!("{key}_p50_ms"), r.pct(50.0));
        f.insert(format!("{key}_p99_ms"), r.pct(99.0));
        f.insert(format!("{key}_errors"), r.errors as f64);
        f.insert(
            format!("{key}_service_cpu_us"),
            cpu.service * 1e6 / r.total() as f64,
        );
        f.insert(
            format!("{key}_loadgen_cpu_us"),
            cpu.bench * 1e6 / r.total() as f64,
        );
        Ok(())
    }
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn wal_of(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    p.into()
}

// ---- the service ------------------------------------------------------------------------------

/// Where a service keeps its jobs.
#[derive(Clone, Debug)]
enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Db {
    /// A fresh database for instance `name` of the run in `dir`: `dir/name/bench.db`, or a new
    /// database of the PostgreSQL cluster.
    fn fresh(
        o: &Options,
        rt: &tokio::runtime::Runtime,
        dir: &Path,
        name: &str,
    ) -> anyhow::Result<Db> {
        Ok(match o.backend {
            Backend::Sqlite => Db::Sqlite(dir.join(name).join("bench.db")),
            Backend::Postgres => {
                // `database` returns None (having said why) where PostgreSQL cannot run.
                let db = rt
                    .block_on(pg::database(&format!("bench_{name}")))
                    .context("--backend postgres: PostgreSQL 15 cannot run here")?;
                Db::Postgres(db.url)
            }
        })
    }

    fn url(&self) -> String {
        match self {
            Db::Sqlite(path) => format!("sqlite://{}", path.display()),
            Db::Postgres(url) => url.clone(),
        }
    }

    /// The SQLite file, for the figures that are about it.
    fn file(&self) -> Option<&Path> {
        match self {
            Db::Sqlite(path) => Some(path),
            Db::Postgres(_) => None,
        }
    }
}

struct Service {
    child: Child,
    base: String,
    db: Db,
    log: PathBuf,
}

impl Service {
    /// The service on `db`, logging to `dir/name.log`.
    fn start(
        dir: &Path,
        name: &str,
        db: Db,
        env: &[(&str, String)],
        extra_env: &[(String, String)],
    ) -> anyhow::Result<Service> {
        let log = dir.join(format!("{name}.log"));
        Service::start_at(db, log, env, extra_env)
    }

    fn start_at(
        db: Db,
        log: PathBuf,
        env: &[(&str, String)],
        extra_env: &[(String, String)],
    ) -> anyhow::Result<Service> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // HOME: the folder of the log, i.e. the run's temp dir.
        let home = log.parent().unwrap_or(Path::new("/"));
        let mut cmd = Command::new(SERVICE_BIN);
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home)
            .env("ADMIN_API_KEYS", format!("bench:{KEY}"))
            .env("BIND_ADDR", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", db.url())
            .env("RBAC_MODE", "skip")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {SERVICE_BIN}"))?;
        let mut svc = Service {
            child,
            base: format!("http://127.0.0.1:{port}"),
            db,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = svc.child.try_wait()? {
                bail!("the service exited ({status}) at start: {}", svc.log_tail());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(svc);
            }
            if Instant::now() > deadline {
                bail!("the service did not listen within 30s: {}", svc.log_tail());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    async fn wait_healthy(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("the service is not ready: {}", self.log_tail())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Memory {
            hwm_kib: field("VmHWM:"),
            rss_kib: field("VmRSS:"),
        })
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    fn stop(&mut self, bound: Duration) -> anyhow::Result<()> {
        signal(self.pid(), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "the service exited with {status}: {}",
                    self.log_tail()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the service did not stop within {bound:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

struct Memory {
    hwm_kib: u64,
    rss_kib: u64,
}

/// CPU seconds (user + system) of the service, of its waited-for children, of this process and
/// its children, and of the whole machine (`/proc/stat`), with the wall-clock time.
struct Cpu {
    /// Of the service processes (every replica).
    service: f64,
    service_children: f64,
    bench: f64,
    bench_children: f64,
    /// Of the PostgreSQL server's processes (the postmaster counts its ended backends).
    db: f64,
    machine: f64,
    wall: Duration,
    at: Instant,
}

impl Cpu {
    /// (own, waited-for children) CPU seconds from `/proc/<pid>/stat` (USER_HZ is 100 on Linux).
    fn of(pid: &str) -> (f64, f64) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<f64> = after
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let get = |i: usize| fields.get(i).copied().unwrap_or(0.0) / 100.0;
        // After the command: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
        (get(11) + get(12), get(13) + get(14))
    }

    /// Busy CPU seconds of all CPUs: user, nice, system, irq, softirq, steal.
    fn machine() -> f64 {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let line = stat.lines().next().unwrap_or_default();
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        [0, 1, 2, 5, 6, 7]
            .iter()
            .map(|&i| v.get(i).copied().unwrap_or(0.0))
            .sum::<f64>()
            / 100.0
    }

    /// CPU seconds of every `postgres` process, its ended children included.
    fn postgres() -> f64 {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return 0.0;
        };
        dir.filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .filter(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
            })
            .map(|e| {
                let (own, children) = Cpu::of(&e.file_name().to_string_lossy());
                own + children
            })
            .sum()
    }

    fn sample(pids: &[u32]) -> Cpu {
        let (mut service, mut service_children) = (0.0, 0.0);
        for pid in pids {
            let (own, children) = Cpu::of(&pid.to_string());
            service += own;
            service_children += children;
        }
        let (bench, bench_children) = Cpu::of("self");
        Cpu {
            service,
            service_children,
            bench,
            bench_children,
            db: Cpu::postgres(),
            machine: Cpu::machine(),
            wall: Duration::ZERO,
            at: Instant::now(),
        }
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            service: self.service - before.service,
            service_children: self.service_children - before.service_children,
            bench: self.bench - before.bench,
            bench_children: self.bench_children - before.bench_children,
            db: self.db - before.db,
            machine: self.machine - before.machine,
            wall: self.at - before.at,
            at: self.at,
        }
    }

    /// Share of the machine's CPU capacity used by anything but the service, this benchmark
    /// and their children (other processes, kernel threads such as the journal), in %.
    fn other_pct(&self) -> f64 {
        let ours =
            self.service + self.service_children + self.bench + self.bench_children + self.db;
        let capacity = self.wall.as_secs_f64() * cores() as f64;
        (100.0 * (self.machine - ours) / capacity).max(0.0)
    }
}

/// Records the CPU used by other processes during a phase; warns when the machine was not quiet.
fn note_noise(f: &mut Figures, phase: &str, cpu: &Cpu) {
    let pct = cpu.other_pct();
    let max = f.entry("other_cpu_pct".into()).or_insert(0.0);
    *max = max.max(pct);
    if pct > 10.0 {
        eprintln!(
            "     warning: {pct:.0}% of the machine's CPU went to other processes during {phase}: \
             the figures are not trustworthy"
        );
    }
}

/// A profiler attached to the service for one phase (`--profile`).
struct Profile(Option<Child>);

impl Profile {
    fn attach(
        which: Option<Profiler>,
        pid: u32,
        run: usize,
        phase: &str,
    ) -> anyhow::Result<Profile> {
        let Some(which) = which else {
            return Ok(Profile(None));
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-profile");
        std::fs::create_dir_all(&dir)?;
        let pid = pid.to_string();
        let mut cmd = match which {
            Profiler::Strace => {
                let mut c = Command::new("strace");
                let out = dir.join(format!("strace-{phase}-run{run}.txt"));
                c.args(["-c", "-f", "-o"]).arg(&out).args(["-p", &pid]);
                eprintln!("   profiling with strace into {}", out.display());
                c
            }
            Profiler::Perf => {
                let mut c = Command::new("perf");
                let out = dir.join(format!("perf-{phase}-run{run}.data"));
                c.args(["record", "-F", "999", "-g", "-o"])
                    .arg(&out)
                    .args(["-p", &pid]);
                eprintln!("   profiling with perf into {}", out.display());
                c
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the profiler")?;
        // Give it time to attach to every thread.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Profile(Some(child)))
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if let Some(child) = self.0.as_mut() {
            signal(child.id(), nix::sys::signal::Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    bail!("the profiler did not stop");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            self.0 = None;
        }
        Ok(())
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---- load generator ---------------------------------------------------------------------------

fn http_client(clients: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// What one phase of load gave.
struct LoadResult {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    /// Sorted latencies of the measured requests, in microseconds.
    latencies_us: Vec<u32>,
}

impl LoadResult {
    fn total(&self) -> u64 {
        (self.ok + self.errors).max(1)
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Percentile `p` (nearest rank) in milliseconds.
    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.latencies_us.len()) - 1;
        f64::from(self.latencies_us[i]) / 1e3
    }

    /// Fails the phase if nothing succeeded; reports errors otherwise.
    fn check(&self, what: &str) -> anyhow::Result<()> {
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
async fn drive<F, Fut>(o: &Options, limit: Option<usize>, op: F) -> LoadResult
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
fn get_op(
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
fn submit_op(
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
fn poll_op(
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
async fn bare_ceiling(o: &Options) -> anyhow::Result<f64> {
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
async fn wait_finished(
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

/// What the database of the jobs instance says after the end-to-end phase (read-only).
struct DbFacts {
    finished: i64,
    succeeded: i64,
    statuses: Vec<(String, i64)>,
    last_finished_ms: Option<i64>,
    first_created_ms: i64,
    last_created_ms: i64,
    events: i64,
    first_error: String,
}

async fn db_facts(db: &Db) -> anyhow::Result<DbFacts> {
    use sqlx::Connection;
    match db {
        Db::Sqlite(path) => {
            let url = format!("sqlite://{}?mode=ro", path.display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await?;
            let facts = db_facts_of::<sqlx::Sqlite>(&mut conn).await;
            conn.close().await?;
            facts
        }
        Db::Postgres(url) => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let facts = db_facts_of::<sqlx::Postgres>(&mut conn).await;
            conn.close().await?;
            facts
        }
    }
}

/// The same questions on either backend's connection (the SQL is the same on both).
async fn db_facts_of<DB>(conn: &mut <DB as sqlx::Database>::Connection) -> anyhow::Result<DbFacts>
where
    DB: sqlx::Database,
    for<'c> &'c mut <DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    String: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    usize: sqlx::ColumnIndex<<DB as sqlx::Database>::Row>,
{
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status")
            .fetch_all(&mut *conn)
            .await?;
    let count = |names: &[&str]| -> i64 {
        statuses
            .iter()
            .filter(|(s, _)| names.contains(&s.as_str()))
            .map(|(_, n)| n)
            .sum()
    };
    let (last_finished_ms, first_created_ms, last_created_ms): (Option<i64>, i64, i64) =
        sqlx::query_as("SELECT MAX(finished_at), MIN(created_at), MAX(created_at) FROM jobs")
            .fetch_one(&mut *conn)
            .await?;
    let events: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_events WHERE job_id IN (SELECT id FROM jobs WHERE status = 'succeeded')",
    )
    .fetch_one(&mut *conn)
    .await?;
    // `error` is JSON text on SQLite and jsonb on PostgreSQL: compared as text on both.
    let first_error: Option<String> =
        sqlx::query_scalar("SELECT CAST(error AS TEXT) FROM jobs WHERE status = 'failed' LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
    Ok(DbFacts {
        finished: count(&["succeeded", "failed", "canceled"]),
        succeeded: count(&["succeeded"]),
        statuses: statuses.clone(),
        last_finished_ms,
        first_created_ms,
        last_created_ms,
        events,
        first_error: first_error.unwrap_or_default(),
    })
}

// ---- stored jobs ------------------------------------------------------------------------------

/// At most this many ids of stored jobs are sampled for the polls.
const STORED_SAMPLE: usize = 100_000;

/// The database with `--stored-jobs` finished jobs, built once per invocation in its own temp
/// dir (kept with `--keep`).
struct StoredDb {
    _sandbox: Sandbox,
    db: PathBuf,
    jobs: usize,
    /// `created_at` of the newest stored job: newer jobs were submitted by a run.
    loaded_until_ms: i64,
    /// Ids of stored jobs drawn uniformly at random, in random order.
    sample: Vec<String>,
    /// Seconds to load the jobs, checkpoint and fsync the file.
    load_s: f64,
    /// Size of the database (and WAL) after the load.
    bytes: u64,
}

impl StoredDb {
    /// Lets the service create the database and apply its migrations, stops it, loads the jobs
    /// and fsyncs the file.
    fn build(o: &Options, rt: &tokio::runtime::Runtime) -> anyhow::Result<StoredDb> {
        let sandbox = Sandbox {
            dir: Some(
                tempfile::Builder::new()
                    .prefix("everestctl-api-bench-stored-")
                    .tempdir()?,
            ),
            keep: o.keep,
        };
        let bin = write_fakes(sandbox.path())?;
        eprintln!("== stored jobs: the service creates the database and applies its migrations");
        let db = sandbox.path().join("stored").join("bench.db");
        {
            let file = Db::Sqlite(db.clone());
            let mut svc = Service::start(
                sandbox.path(),
                "stored",
                file,
                &api_env(&bin),
                &o.service_env,
            )?;
            rt.block_on(svc.wait_healthy(&http_client(1)?))?;
            svc.stop(Duration::from_secs(30))?;
        }
        eprintln!("   loading {} finished jobs", o.stored_jobs);
        let started = Instant::now();
        rt.block_on(load_stored_jobs(&db, o.stored_jobs, epoch_ms()))?;
        // Without this the kernel writes the loaded file back during the measurements, and
        // every fsync of the service (one per submission) waits behind that writeback.
        std::fs::File::open(&db)?.sync_all()?;
        let load_s = started.elapsed().as_secs_f64();
        let bytes = file_size(&db) + file_size(&wal_of(&db));
        let (loaded_until_ms, sample) = rt.block_on(sample_stored(&db, o.stored_jobs))?;
        eprintln!(
            "   loaded and fsynced in {load_s:.1} s: database {:.0} MiB; {} ids sampled for the \
             polls",
            bytes as f64 / 1_048_576.0,
            sample.len()
        );
        Ok(StoredDb {
            _sandbox: sandbox,
            db,
            jobs: o.stored_jobs,
            loaded_until_ms,
            sample,
            load_s,
            bytes,
        })
    }

    /// The ids the polls spread over: the sample of stored jobs and a random share of the jobs
    /// just `submitted` in proportion to their number (so that each job in the database is
    /// equally likely), in random order.
    fn poll_ids(&self, mut submitted: Vec<String>) -> Vec<String> {
        use rand::seq::SliceRandom;
        let mut rng = rand::rng();
        let share = self.sample.len() as f64 * submitted.len() as f64 / self.jobs as f64;
        submitted.shuffle(&mut rng);
        submitted.truncate((share.round() as usize).max(1));
        let mut ids = self.sample.clone();
        ids.append(&mut submitted);
        ids.shuffle(&mut rng);
        ids
    }

    /// After a run's phases (the service stopped): deletes the jobs the run submitted (their
    /// steps, attempts, events and secrets go with them, `ON DELETE CASCADE`) and their locks,
    /// gives the freed pages back, fsyncs, and checks that every stored job is still there.
    async fn reset(&self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let started = Instant::now();
        let url = format!("sqlite://{}", self.db.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await?;
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut conn)
            .await?;
        let deleted = sqlx::query("DELETE FROM jobs WHERE created_at > ?")
            .bind(self.loaded_until_ms)
            .execute(&mut conn)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM resource_locks")
            .execute(&mut conn)
            .await?;
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(&mut conn)
            .await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await?;
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        std::fs::File::open(&self.db)?.sync_all()?;
        eprintln!(
            "   stored jobs: the {deleted} jobs of this run deleted again in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        ensure!(
            left == self.jobs as i64,
            "{left} of the {} stored jobs are left: the service deleted some (is \
             JOB_RETENTION_DAYS overridden with --service-env?)",
            self.jobs
        );
        Ok(())
    }
}

/// Loads `jobs` finished jobs, created over the 89 days before `now` (within any retention of
/// 90 days or more), in one transaction: the load of `tests/scale.rs` (5,000 users, two admin
/// keys, 92 % succeeded / 5 % failed / 3 % canceled, each job with 4 steps, 4 attempts,
/// 11 events and a purged secret), without its jobs older than 90 days.
async fn load_stored_jobs(db: &Path, jobs: usize, now: i64) -> anyhow::Result<()> {
    use sqlx::Connection;
    const DAY: i64 = 86_400_000;
    let n = i64::try_from(jobs)?;
    let step = (88 * DAY / n).max(1);
    let created = format!("{now} - 89 * {DAY} + i * {step}");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    let statements = bulk::load_statements(n, &created);
    for sql in &statements {
        let t = Instant::now();
        sqlx::query(sql).execute(&mut conn).await?;
        let head: String = sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        eprintln!("     {head:<40} {:>7.1} s", t.elapsed().as_secs_f64());
    }
    conn.close().await?;
    Ok(())
}

/// Checks the number of stored jobs; returns the newest `created_at` and up to `STORED_SAMPLE`
/// ids drawn uniformly at random.
async fn sample_stored(db: &Path, jobs: usize) -> anyhow::Result<(i64, Vec<String>)> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    let (count, until): (i64, i64) = sqlx::query_as("SELECT COUNT(*), MAX(created_at) FROM jobs")
        .fetch_one(&mut conn)
        .await?;
    ensure!(
        count == jobs as i64,
        "{count} jobs in the loaded database, not {jobs}"
    );
    let sample: Vec<String> = sqlx::query_scalar("SELECT id FROM jobs ORDER BY random() LIMIT ?")
        .bind(STORED_SAMPLE as i64)
        .fetch_all(&mut conn)
        .await?;
    conn.close().await?;
    Ok((until, sample))
}

// ---- spawn floor ------------------------------------------------------------------------------

/// The three commands of a bootstrap job with RBAC skipped, as the service builds them.
fn bootstrap_commands(bin: &Path) -> [CommandSpec; 3] {
    let (user, password) = ("floor0000001", "S3cret-password-of-24-chars");
    let ops = Operators {
        mongodb: false,
        postgresql: true,
        mysql: false,
    };
    let resources = Resources {
        cpu_cores: 2,
        ram_mb: 2048,
        disk_gb: 20,
        max_databases: None,
    };
    let timeout = Duration::from_secs(60);
    let everestctl = bin.join("everestctl").display().to_string();
    let kubectl = bin.join("kubectl").display().to_string();
    [
        CommandSpec::new(&everestctl, argv::accounts_create(user, password), timeout)
            .with_secret(password),
        CommandSpec::new(
            &everestctl,
            argv::namespaces_add(user, &ops, false, false),
            timeout,
        ),
        CommandSpec::new(&kubectl, argv::kubectl_apply(user), timeout)
            .with_stdin(quota_manifest(user, &resources).into_bytes()),
    ]
}

/// A tight loop per thread (`parallelism` threads) running the three commands with
/// `std::process` (stdin fed, stdout and stderr captured, exit status checked) for `duration`.
/// Returns the number of complete triples and the elapsed time.
fn spawn_floor_std(
    bin: &Path,
    parallelism: usize,
    duration: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let commands = bootstrap_commands(bin);
    let started = Instant::now();
    let deadline = started + duration;
    let failed = AtomicBool::new(false);
    let done: anyhow::Result<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..parallelism)
            .map(|_| {
                let (commands, failed) = (&commands, &failed);
                scope.spawn(move || -> anyhow::Result<u64> {
                    let mut n = 0;
                    while Instant::now() < deadline && !failed.load(Ordering::Relaxed) {
                        for spec in commands {
                            if let Err(e) = run_std(spec) {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("floor thread"))
            .collect()
    });
    let elapsed = started.elapsed();
    let total = done?.iter().sum();
    eprintln!(
        "     std floor: {total} jobs ({} commands) in {:.2}s",
        total * 3,
        elapsed.as_secs_f64()
    );
    Ok((total, elapsed))
}

fn run_std(spec: &CommandSpec) -> anyhow::Result<()> {
    let mut child = Command::new(&spec.program)
        .args(&spec.args)
        .env("NO_COLOR", "1")
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), &spec.stdin) {
        pipe.write_all(bytes)?;
    }
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success() && !out.stdout.is_empty(),
        "{} failed: {} {}",
        spec.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Like [`spawn_floor_std`], with the service's own `exec::run` (new session, process group,
/// async capture) on a runtime with one thread per core, `parallelism` tasks.
fn spawn_floor_exec(
    bin: &Path,
    parallelism: usize,
    duration: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let commands = Arc::new(bootstrap_commands(bin));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .enable_all()
        .build()?;
    let started = Instant::now();
    let deadline = started + duration;
    let total: anyhow::Result<u64> = rt.block_on(async move {
        let limits = ExecLimits {
            max_output_chars: 20_000,
            kill_grace: Duration::from_secs(5),
            pass_env: Default::default(),
        };
        let mut tasks = Vec::new();
        for _ in 0..parallelism {
            let commands = commands.clone();
            let limits = limits.clone();
            tasks.push(tokio::spawn(async move {
                let cancel = CancellationToken::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    for spec in commands.iter() {
                        let out = exec::run(spec, &limits, &cancel).await?;
                        ensure!(out.success(), "{} failed: {}", out.command, out.stderr);
                    }
                    n += 1;
                }
                Ok(n)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        Ok(total)
    });
    let elapsed = started.elapsed();
    let total = total?;
    eprintln!(
        "     exec::run floor: {total} jobs ({} commands) in {:.2}s",
        total * 3,
        elapsed.as_secs_f64()
    );
    Ok((total, elapsed))
}
