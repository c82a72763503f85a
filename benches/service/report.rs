//! The report: the targets, each a figure of the run against a limit measured in the same run;
//! the absolute figures, which hold for this machine only; and the JSON results.

use std::process::{Command, Stdio};

use anyhow::Context;
use serde_json::{Value, json};

use crate::cores;
use crate::figures::Figures;
use crate::options::{Backend, Options};
use crate::stored::StoredDb;

/// A run where other processes used more of the machine's CPU than this, in %, is flagged
/// noisy (whether `--max-noise` discards it or not).
pub const NOISE_LIMIT_PCT: f64 = 10.0;

/// A figure of a run, if its phase ran.
type Get = fn(&Figures) -> Option<f64>;

/// A target (issue 14): a figure divided by its limit, both measured in the same run.
struct Target {
    /// The ratio's field in the figures, i.e. its key in the JSON.
    key: &'static str,
    label: &'static str,
    figure: (Get, &'static str),
    /// What the figure is divided by, with its unit; `None` for an absolute bound.
    limit: Option<(&'static str, Get, &'static str)>,
    ratio: Get,
    /// How the ratio is printed: its unit, and the factor from the field's value to it.
    unit: &'static str,
    scale: f64,
    /// The bound on the ratio's field on SQLite and on PostgreSQL; `None`: information only.
    bound: Option<Bound>,
}

#[derive(Clone, Copy)]
enum Bound {
    AtLeast(f64, f64),
    AtMost(f64, f64),
}

impl Bound {
    /// The bound on `backend`: `(">=" or "<=", value)`.
    fn on(self, backend: Backend) -> (&'static str, f64) {
        let pick = |sqlite, postgres| match backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        };
        match self {
            Bound::AtLeast(s, p) => (">=", pick(s, p)),
            Bound::AtMost(s, p) => ("<=", pick(s, p)),
        }
    }

    fn met(self, backend: Backend, ratio: f64) -> bool {
        match self.on(backend) {
            (">=", bound) => ratio >= bound,
            (_, bound) => ratio <= bound,
        }
    }
}

const HEALTHZ_RATE: Option<(&str, Get, &str)> = Some((
    "GET /healthz rate",
    |f| Some(f.ceiling_healthz_rps),
    "req/s",
));

/// The targets of issue 14; the PostgreSQL bounds are those of one replica.
const TARGETS: &[Target] = &[
    Target {
        key: "submit_pct_of_healthz",
        label: "submit rate, workers blocked",
        figure: (|f| Some(f.submit_rps), "jobs/s"),
        limit: HEALTHZ_RATE,
        ratio: |f| f.submit_pct_of_healthz,
        unit: "%",
        scale: 1.0,
        bound: Some(Bound::AtLeast(50.0, 35.0)),
    },
    Target {
        key: "submit_p99_x_healthz",
        label: "submit p99",
        figure: (|f| Some(f.submit_p99_ms), "ms"),
        limit: Some(("GET /healthz p99", |f| Some(f.ceiling_healthz_p99_ms), "ms")),
        ratio: |f| f.submit_p99_x_healthz,
        unit: "×",
        scale: 1.0,
        bound: Some(Bound::AtMost(2.0, 2.0)),
    },
    Target {
        key: "e2e_submit_pct_of_submit",
        label: "submit rate while workers run",
        figure: (|f| Some(f.e2e_submit_rps), "jobs/s"),
        limit: Some((
            "submit rate, workers blocked",
            |f| Some(f.submit_rps),
            "jobs/s",
        )),
        ratio: |f| f.e2e_submit_pct_of_submit,
        unit: "%",
        scale: 1.0,
        bound: Some(Bound::AtLeast(80.0, 80.0)),
    },
    Target {
        key: "polls_pct_of_healthz",
        label: "polls rate, queued jobs",
        figure: (|f| Some(f.polls_rps), "req/s"),
        limit: HEALTHZ_RATE,
        ratio: |f| f.polls_pct_of_healthz,
        unit: "%",
        scale: 1.0,
        bound: Some(Bound::AtLeast(80.0, 60.0)),
    },
    Target {
        key: "e2e_pct_of_floor",
        label: "end to end",
        figure: (|f| Some(f.e2e_jobs_per_s), "jobs/s"),
        limit: Some((
            "spawn floor, std::process",
            |f| Some(f.floor_jobs_per_s),
            "jobs/s",
        )),
        ratio: |f| Some(f.e2e_pct_of_floor),
        unit: "%",
        scale: 1.0,
        bound: Some(Bound::AtLeast(80.0, 70.0)),
    },
    Target {
        key: "e2e_service_cpu_pct_of_cli",
        label: "service CPU per job",
        figure: (|f| Some(f.e2e_service_cpu_ms_per_job), "ms"),
        limit: Some((
            "fake CLIs' CPU per job",
            |f| Some(f.e2e_cli_cpu_ms_per_job),
            "ms",
        )),
        ratio: |f| f.e2e_service_cpu_pct_of_cli,
        unit: "%",
        scale: 1.0,
        bound: Some(Bound::AtMost(50.0, 50.0)),
    },
    Target {
        key: "e2e_service_db_cpu_pct_of_cli",
        label: "  service + PostgreSQL CPU per job",
        figure: (
            |f| Some(f.e2e_service_cpu_ms_per_job + f.e2e_db_cpu_ms_per_job?),
            "ms",
        ),
        limit: Some((
            "fake CLIs' CPU per job",
            |f| Some(f.e2e_cli_cpu_ms_per_job),
            "ms",
        )),
        ratio: |f| f.e2e_service_db_cpu_pct_of_cli,
        unit: "%",
        scale: 1.0,
        bound: None,
    },
    Target {
        key: "stored_submit_rps_ratio",
        label: "submit rate, stored jobs",
        figure: (|f| f.stored_submit_rps, "jobs/s"),
        limit: Some((
            "submit rate, empty database",
            |f| Some(f.submit_rps),
            "jobs/s",
        )),
        ratio: |f| f.stored_submit_rps_ratio,
        unit: "%",
        scale: 100.0,
        bound: Some(Bound::AtLeast(0.8, 0.8)),
    },
    Target {
        key: "stored_submit_p50_ratio",
        label: "  submit p50, stored jobs",
        figure: (|f| f.stored_submit_p50_ms, "ms"),
        limit: Some(("p50, empty database", |f| Some(f.submit_p50_ms), "ms")),
        ratio: |f| f.stored_submit_p50_ratio,
        unit: "×",
        scale: 1.0,
        bound: None,
    },
    Target {
        key: "stored_submit_p99_ratio",
        label: "  submit p99, stored jobs",
        figure: (|f| f.stored_submit_p99_ms, "ms"),
        limit: Some(("p99, empty database", |f| Some(f.submit_p99_ms), "ms")),
        ratio: |f| f.stored_submit_p99_ratio,
        unit: "×",
        scale: 1.0,
        bound: None,
    },
    Target {
        key: "stored_polls_rps_ratio",
        label: "polls rate, stored jobs",
        figure: (|f| f.stored_polls_rps, "req/s"),
        limit: Some(("polls rate, empty database", |f| Some(f.polls_rps), "req/s")),
        ratio: |f| f.stored_polls_rps_ratio,
        unit: "%",
        scale: 100.0,
        bound: Some(Bound::AtLeast(0.8, 0.8)),
    },
    Target {
        key: "stored_polls_p50_ratio",
        label: "  polls p50, stored jobs",
        figure: (|f| f.stored_polls_p50_ms, "ms"),
        limit: Some(("p50, empty database", |f| Some(f.polls_p50_ms), "ms")),
        ratio: |f| f.stored_polls_p50_ratio,
        unit: "×",
        scale: 1.0,
        bound: None,
    },
    Target {
        key: "stored_polls_p99_ratio",
        label: "  polls p99, stored jobs",
        figure: (|f| f.stored_polls_p99_ms, "ms"),
        limit: Some(("p99, empty database", |f| Some(f.polls_p99_ms), "ms")),
        ratio: |f| f.stored_polls_p99_ratio,
        unit: "×",
        scale: 1.0,
        bound: None,
    },
    Target {
        key: "vm_hwm_mib",
        label: "peak RSS after the end-to-end jobs",
        figure: (|f| Some(f.vm_hwm_mib), "MiB"),
        limit: None,
        ratio: |f| Some(f.vm_hwm_mib),
        unit: "MiB",
        scale: 1.0,
        bound: Some(Bound::AtMost(40.0, 40.0)),
    },
];

/// The absolute figures: this machine's only, for information.
#[rustfmt::skip]
const FIGURES: &[(&str, Get)] = &[
    ("load generator ceiling: GET /healthz, req/s", |f| Some(f.ceiling_healthz_rps)),
    ("  GET /healthz p99, ms", |f| Some(f.ceiling_healthz_p99_ms)),
    ("  load generator CPU per request, µs", |f| Some(f.ceiling_loadgen_cpu_us)),
    ("  service CPU per GET /healthz, µs", |f| Some(f.ceiling_service_cpu_us)),
    ("load generator ceiling: bare axum in the bench, req/s", |f| Some(f.ceiling_bare_rps)),
    ("submit: accepted jobs/s (workers blocked)", |f| Some(f.submit_rps)),
    ("  submit p50, ms", |f| Some(f.submit_p50_ms)),
    ("  submit p99, ms", |f| Some(f.submit_p99_ms)),
    ("  submit errors (non-202)", |f| Some(f.submit_errors)),
    ("  service CPU per submit, µs", |f| Some(f.submit_service_cpu_us)),
    ("  load generator CPU per submit, µs", |f| Some(f.submit_loadgen_cpu_us)),
    ("status polls: GET /jobs/{id} (queued jobs), req/s", |f| Some(f.polls_rps)),
    ("  polls p50, ms", |f| Some(f.polls_p50_ms)),
    ("  polls p99, ms", |f| Some(f.polls_p99_ms)),
    ("  service CPU per poll, µs", |f| Some(f.polls_service_cpu_us)),
    ("  load generator CPU per poll, µs", |f| Some(f.polls_loadgen_cpu_us)),
    ("  VmHWM of this API instance after submit + polls, MiB", |f| Some(f.vm_hwm_api_mib)),
    ("stored finished jobs in the database (--stored-jobs)", |f| f.stored_jobs),
    ("submit with the stored jobs: jobs/s (workers blocked)", |f| f.stored_submit_rps),
    ("  submit p50 with the stored jobs, ms", |f| f.stored_submit_p50_ms),
    ("  submit p99 with the stored jobs, ms", |f| f.stored_submit_p99_ms),
    ("  submit errors with the stored jobs (non-202)", |f| f.stored_submit_errors),
    ("  service CPU per submit with the stored jobs, µs", |f| f.stored_submit_service_cpu_us),
    ("status polls with the stored jobs: GET /jobs/{id}, req/s", |f| f.stored_polls_rps),
    ("  polls p50 with the stored jobs, ms", |f| f.stored_polls_p50_ms),
    ("  polls p99 with the stored jobs, ms", |f| f.stored_polls_p99_ms),
    ("  service CPU per poll with the stored jobs, µs", |f| f.stored_polls_service_cpu_us),
    ("  VmHWM of the instance on the stored jobs, MiB", |f| f.vm_hwm_stored_mib),
    ("end to end: jobs/s, first submit to last finished", |f| Some(f.e2e_jobs_per_s)),
    ("  spawn floor (std::process loop), jobs/s", |f| Some(f.floor_jobs_per_s)),
    ("  spawn floor (the service's exec::run), jobs/s", |f| Some(f.floor_exec_jobs_per_s)),
    ("  jobs finished within the bound", |f| Some(f.e2e_finished)),
    ("  jobs succeeded", |f| Some(f.e2e_succeeded)),
    ("  submit rate while workers run, jobs/s", |f| Some(f.e2e_submit_rps)),
    ("  submit p99 while workers run, ms", |f| Some(f.e2e_submit_p99_ms)),
    ("  service CPU per job (own), ms", |f| Some(f.e2e_service_cpu_ms_per_job)),
    ("  fake CLI CPU per job (3 runs), ms", |f| Some(f.e2e_cli_cpu_ms_per_job)),
    ("  PostgreSQL server CPU per job, ms", |f| f.e2e_db_cpu_ms_per_job),
    ("  CPU per job in the std floor (bench + CLIs), ms", |f| Some(f.floor_cpu_ms_per_job)),
    ("  CPU per job in the exec::run floor (bench + CLIs), ms", |f| Some(f.floor_exec_cpu_ms_per_job)),
    ("peak RSS (VmHWM) after the end-to-end jobs, MiB", |f| Some(f.vm_hwm_mib)),
    ("database (db + wal) per job, bytes", |f| f.db_bytes_per_job),
    ("  db after clean shutdown per job, bytes", |f| f.db_checkpointed_bytes_per_job),
    ("  job_events rows per succeeded job", |f| Some(f.events_per_job)),
];

/// Prints the targets and the figures of one run, or the medians of several with their range.
pub fn print_table(o: &Options, title: &str, runs: &[Figures]) {
    let med = Figures::median(runs);
    println!();
    println!("{title}");
    print_noise(runs, &med);
    print_targets(o, runs, &med);
    print_figures(runs, &med);
}

fn print_targets(o: &Options, runs: &[Figures], med: &Figures) {
    println!();
    println!(
        "targets ({}, {} replica(s)): each figure against a limit measured in the same run{}",
        backend_name(o.backend),
        o.replicas,
        if runs.len() > 1 {
            "; medians of the runs' ratios"
        } else {
            ""
        }
    );
    println!(
        "{:<36} {:>14}  {:<29} {:>14} {:>9}{} {:>11}  met",
        "figure",
        "value",
        "limit",
        "value",
        "ratio",
        range_head(runs),
        "target"
    );
    let with_unit =
        |v: Option<f64>, unit: &str| v.map_or(String::new(), |v| format!("{} {unit}", fmt(v)));
    for t in TARGETS {
        let Some(ratio) = (t.ratio)(med) else {
            continue;
        };
        let (limit, limit_value) = match t.limit {
            Some((label, get, unit)) => (label, with_unit(get(med), unit)),
            None => ("(absolute)", String::new()),
        };
        let (target, met) = match t.bound {
            Some(bound) => {
                let (op, b) = bound.on(o.backend);
                let met = bound.met(o.backend, ratio);
                let target = format!("{op} {} {}", fmt(b * t.scale), t.unit);
                (target, if met { "yes" } else { "NO" })
            }
            None => ("(info)".to_string(), ""),
        };
        println!(
            "{:<36} {:>14}  {:<29} {:>14} {:>9}{} {:>11}  {met}",
            t.label,
            with_unit((t.figure.0)(med), t.figure.1),
            limit,
            limit_value,
            with_unit(Some(ratio * t.scale), t.unit),
            range(runs, t.ratio, t.scale),
            target,
        );
    }
}

fn print_figures(runs: &[Figures], med: &Figures) {
    println!();
    println!("absolute figures (this machine's only, for information)");
    let value_head = if runs.len() > 1 { "median" } else { "value" };
    println!("{:<56} {value_head:>11}{}", "figure", range_head(runs));
    for (label, get) in FIGURES {
        let Some(v) = get(med) else { continue };
        println!("{:<56} {:>11}{}", label, fmt(v), range(runs, *get, 1.0));
    }
}

/// With several runs, the head of the column of each figure's range.
fn range_head(runs: &[Figures]) -> String {
    if runs.len() > 1 {
        format!(" {:>17}", "min .. max")
    } else {
        String::new()
    }
}

/// With several runs, the range of a figure over them (times `scale`).
fn range(runs: &[Figures], get: Get, scale: f64) -> String {
    if runs.len() < 2 {
        return String::new();
    }
    let vals: Vec<f64> = runs.iter().filter_map(get).map(|v| v * scale).collect();
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(" {:>17}", format!("{} .. {}", fmt(lo), fmt(hi)))
}

/// The noise line: the CPU that other processes used, and whether that makes a run noisy.
fn print_noise(runs: &[Figures], med: &Figures) {
    let noisy = runs.iter().filter(|f| f.noisy()).count();
    if runs.len() == 1 {
        let pct = med.other_cpu_pct;
        if noisy > 0 {
            println!(
                "NOISY RUN: other processes used {pct:.1} % of the machine's CPU in a phase \
                 (more than {NOISE_LIMIT_PCT} %): the figures are not trustworthy"
            );
        } else {
            println!(
                "quiet run: other processes used at most {pct:.1} % of the machine's CPU in a \
                 phase (at most {NOISE_LIMIT_PCT} %)"
            );
        }
    } else if noisy > 0 {
        println!(
            "NOISY: {noisy} of {} runs had more than {NOISE_LIMIT_PCT} % of the machine's CPU \
             used by other processes in a phase (median {:.1} %): those figures are not \
             trustworthy",
            runs.len(),
            med.other_cpu_pct
        );
    } else {
        println!(
            "quiet runs: other processes used at most {NOISE_LIMIT_PCT} % of the machine's CPU \
             in every phase of every run (median of the runs' largest: {:.1} %)",
            med.other_cpu_pct
        );
    }
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
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

/// Writes the JSON results: the command, commit and machine, the configuration, the targets
/// and whether the medians meet them, every run's figures (each flagged `noisy` or not) and
/// their medians.
pub fn write_results(
    options: &Options,
    runs: &[Figures],
    discarded: &[Figures],
    stored: Option<&StoredDb>,
) -> anyhow::Result<()> {
    let median = Figures::median(runs);
    let targets = TARGETS
        .iter()
        .filter_map(|t| Some((t, t.bound?.on(options.backend))));
    let doc = json!({
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "command": std::iter::once("cargo bench --bench service --".to_string())
            .chain(std::env::args().skip(1).filter(|a| a != "--bench"))
            .collect::<Vec<_>>()
            .join(" "),
        "commit": git(&["rev-parse", "HEAD"]),
        "uncommitted_changes": git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        "machine": {"cores": cores(), "nproc": cores(), "cpu_model": cpu_model(),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()},
        "config": {
            "workers": options.workers, "clients": options.clients, "jobs": options.jobs,
            "duration_s": options.duration.as_secs_f64(), "warmup_s": options.warmup.as_secs_f64(),
            "client_threads": options.client_threads, "runs": options.runs,
            "e2e_timeout_s": options.e2e_timeout.as_secs_f64(), "max_noise_pct": options.max_noise,
            "backend": backend_name(options.backend), "replicas": options.replicas,
            "service_env": options.service_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "profiled": options.profile.is_some(), "stored_jobs": options.stored_jobs,
        },
        "stored_database": stored.map(|d| json!({
            "jobs": d.jobs, "load_s": d.load_s, "bytes": d.bytes, "sampled_ids": d.sample.len(),
        })),
        "targets": targets.clone().map(|(t, (op, bound))| (t.key.to_string(), json!(format!("{op} {bound}"))))
            .collect::<serde_json::Map<_, _>>(),
        // Whether the medians meet each target (absent: its phase did not run).
        "met": targets.filter_map(|(t, _)| {
            let ratio = (t.ratio)(&median)?;
            Some((t.key.to_string(), json!(t.bound?.met(options.backend, ratio))))
        }).collect::<serde_json::Map<_, _>>(),
        "noise_limit_pct": NOISE_LIMIT_PCT,
        "noisy_runs": runs.iter().filter(|f| f.noisy()).count(),
        "median": median.json(),
        "runs": runs.iter().map(with_noise).collect::<Vec<_>>(),
        "discarded_runs": discarded.iter().map(with_noise).collect::<Vec<_>>(),
    });
    if let Some(dir) = options.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&options.out, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("cannot write {}", options.out.display()))?;
    println!("\nresults written to {}", options.out.display());
    Ok(())
}

/// A run's figures with `"noisy": true` or `false`.
fn with_noise(f: &Figures) -> Value {
    let mut map = f.json();
    map.insert("noisy".into(), f.noisy().into());
    Value::Object(map)
}

/// The first "model name" of `/proc/cpuinfo`.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
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
