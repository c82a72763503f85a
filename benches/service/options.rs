//! The command line (`--help`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};

/// What `cargo bench --bench service -- ...` asked for.
pub struct Options {
    pub workers: usize,
    pub clients: usize,
    pub jobs: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub client_threads: usize,
    pub runs: usize,
    pub e2e_timeout: Duration,
    pub profile: Option<Profiler>,
    pub keep: bool,
    pub max_noise: f64,
    pub retries: usize,
    pub service_env: Vec<(String, String)>,
    pub stored_jobs: usize,
    pub out: PathBuf,
    pub backend: Backend,
    /// Services of the jobs instance sharing its database (PostgreSQL only).
    pub replicas: usize,
}

/// Which store the services run on (`--backend`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    Sqlite,
    /// A private PostgreSQL 15 cluster started the way the tests start theirs
    /// (`tests/common/pg.rs`), a fresh database per service instance.
    Postgres,
}

/// The profiler `--profile` attaches to the service.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Profiler {
    Strace,
    Perf,
}

impl Options {
    pub const HELP: &'static str = "cargo bench --bench service [-- OPTIONS]

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
                      machine's CPU is discarded and run again (10); whatever this says, a
                      run above 10 % is flagged noisy in the table and the JSON
  --retries N         at most N runs are discarded that way (as many as --runs)
  --service-env K=V   extra environment for every service (repeatable; it wins over the
                      benchmark's own settings), e.g. to try a knob
  --stored-jobs N     finished jobs (with their steps, attempts, events and secrets) loaded
                      once, before the first run, into a database on which every run
                      repeats the submit and poll phases, to compare them with the empty
                      database; 0 skips those phases. SQLite: 1000000 by default, a load of
                      1-2 minutes, 4.5 GiB of temp disk and twice that while loading.
                      PostgreSQL: 0 by default; 1000000 is a load of about 4 minutes and
                      6.4 GiB in the cluster's temp dir
  --keep              keep the temp dirs (SQLite databases api_RUN/bench.db,
                      jobs_RUN/bench.db and stored/bench.db, logs)
  --out FILE          JSON results (target/bench-results.json)
  --backend B         sqlite (the default) or postgres: a private PostgreSQL 15 cluster started
                      as the tests start theirs (as root, with the Debian binaries), a fresh
                      database per instance; its server's CPU is reported apart
  --replicas N        services of the jobs instance sharing its database, the end-to-end
                      submissions spread round-robin over them (1; more needs postgres)";

    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
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
        if !retries_given {
            o.retries = o.runs;
        }
        Ok(o)
    }
}

/// The service's default `WORKER_CONCURRENCY` (`src/config/raw.rs`).
const DEFAULT_WORKERS: usize = 4;
