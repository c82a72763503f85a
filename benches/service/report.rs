//! The table of figures and targets, and the JSON results.

use std::process::{Command, Stdio};

use anyhow::Context;
use serde_json::json;

use crate::cores;
use crate::figures::Figures;
use crate::options::Options;
use crate::stored::StoredDb;

/// A line of the summary table: label, the figure, and its target: the figure's JSON key,
/// `>` for "at least" or `<` for "at most", and the bound.
pub struct Row {
    label: &'static str,
    value: fn(&Figures) -> Option<f64>,
    target: Option<(&'static str, char, f64)>,
}

const fn row(
    label: &'static str,
    value: fn(&Figures) -> Option<f64>,
    target: Option<(&'static str, char, f64)>,
) -> Row {
    Row {
        label,
        value,
        target,
    }
}

const TABLE: &[Row] = &[
    row(
        "load generator ceiling: GET /healthz, req/s",
        |f| Some(f.ceiling_healthz_rps),
        None,
    ),
    row(
        "  GET /healthz p99, ms",
        |f| Some(f.ceiling_healthz_p99_ms),
        None,
    ),
    row(
        "  load generator CPU per request, µs",
        |f| Some(f.ceiling_loadgen_cpu_us),
        None,
    ),
    row(
        "  service CPU per GET /healthz, µs",
        |f| Some(f.ceiling_service_cpu_us),
        None,
    ),
    row(
        "load generator ceiling: bare axum in the bench, req/s",
        |f| Some(f.ceiling_bare_rps),
        None,
    ),
    row(
        "submit: accepted jobs/s (workers blocked)",
        |f| Some(f.submit_rps),
        Some(("submit_rps", '>', 5000.0)),
    ),
    row("  submit p50, ms", |f| Some(f.submit_p50_ms), None),
    row(
        "  submit p99, ms",
        |f| Some(f.submit_p99_ms),
        Some(("submit_p99_ms", '<', 20.0)),
    ),
    row("  submit errors (non-202)", |f| Some(f.submit_errors), None),
    row(
        "  service CPU per submit, µs",
        |f| Some(f.submit_service_cpu_us),
        None,
    ),
    row(
        "  load generator CPU per submit, µs",
        |f| Some(f.submit_loadgen_cpu_us),
        None,
    ),
    row(
        "status polls: GET /jobs/{id} (queued jobs), req/s",
        |f| Some(f.polls_rps),
        Some(("polls_rps", '>', 15000.0)),
    ),
    row("  polls p50, ms", |f| Some(f.polls_p50_ms), None),
    row(
        "  polls p99, ms",
        |f| Some(f.polls_p99_ms),
        Some(("polls_p99_ms", '<', 10.0)),
    ),
    row(
        "  service CPU per poll, µs",
        |f| Some(f.polls_service_cpu_us),
        None,
    ),
    row(
        "  load generator CPU per poll, µs",
        |f| Some(f.polls_loadgen_cpu_us),
        None,
    ),
    row(
        "  VmHWM of this API instance after submit + polls, MiB",
        |f| Some(f.vm_hwm_api_mib),
        None,
    ),
    row(
        "stored finished jobs in the database (--stored-jobs)",
        |f| f.stored_jobs,
        None,
    ),
    row(
        "submit with the stored jobs: jobs/s (workers blocked)",
        |f| f.stored_submit_rps,
        None,
    ),
    row(
        "  submit p50 with the stored jobs, ms",
        |f| f.stored_submit_p50_ms,
        None,
    ),
    row(
        "  submit p99 with the stored jobs, ms",
        |f| f.stored_submit_p99_ms,
        None,
    ),
    row(
        "  submit errors with the stored jobs (non-202)",
        |f| f.stored_submit_errors,
        None,
    ),
    row(
        "  service CPU per submit with the stored jobs, µs",
        |f| f.stored_submit_service_cpu_us,
        None,
    ),
    row(
        "  jobs/s: stored / empty database (within 20 %)",
        |f| f.stored_submit_rps_ratio,
        Some(("stored_submit_rps_ratio", '>', 0.8)),
    ),
    row(
        "  p50: stored / empty database (within 20 %)",
        |f| f.stored_submit_p50_ratio,
        Some(("stored_submit_p50_ratio", '<', 1.2)),
    ),
    row(
        "  p99: stored / empty database (within 20 %)",
        |f| f.stored_submit_p99_ratio,
        Some(("stored_submit_p99_ratio", '<', 1.2)),
    ),
    row(
        "status polls with the stored jobs: GET /jobs/{id}, req/s",
        |f| f.stored_polls_rps,
        None,
    ),
    row(
        "  polls p50 with the stored jobs, ms",
        |f| f.stored_polls_p50_ms,
        None,
    ),
    row(
        "  polls p99 with the stored jobs, ms",
        |f| f.stored_polls_p99_ms,
        None,
    ),
    row(
        "  service CPU per poll with the stored jobs, µs",
        |f| f.stored_polls_service_cpu_us,
        None,
    ),
    row(
        "  req/s: stored / empty database (within 20 %)",
        |f| f.stored_polls_rps_ratio,
        Some(("stored_polls_rps_ratio", '>', 0.8)),
    ),
    row(
        "  p50: stored / empty database (within 20 %)",
        |f| f.stored_polls_p50_ratio,
        Some(("stored_polls_p50_ratio", '<', 1.2)),
    ),
    row(
        "  p99: stored / empty database (within 20 %)",
        |f| f.stored_polls_p99_ratio,
        Some(("stored_polls_p99_ratio", '<', 1.2)),
    ),
    row(
        "  VmHWM of the instance on the stored jobs, MiB",
        |f| f.vm_hwm_stored_mib,
        None,
    ),
    row(
        "end to end: jobs/s, first submit to last finished",
        |f| Some(f.e2e_jobs_per_s),
        None,
    ),
    row(
        "  spawn floor (std::process loop), jobs/s",
        |f| Some(f.floor_jobs_per_s),
        None,
    ),
    row(
        "  spawn floor (the service's exec::run), jobs/s",
        |f| Some(f.floor_exec_jobs_per_s),
        None,
    ),
    row(
        "  end to end / spawn floor, %",
        |f| Some(f.e2e_pct_of_floor),
        Some(("e2e_pct_of_floor", '>', 80.0)),
    ),
    row(
        "  jobs finished within the bound",
        |f| Some(f.e2e_finished),
        None,
    ),
    row("  jobs succeeded", |f| Some(f.e2e_succeeded), None),
    row(
        "  submit rate while workers run, jobs/s",
        |f| Some(f.e2e_submit_rps),
        None,
    ),
    row(
        "  submit p99 while workers run, ms",
        |f| Some(f.e2e_submit_p99_ms),
        None,
    ),
    row(
        "  service CPU per job (own), ms",
        |f| Some(f.e2e_service_cpu_ms_per_job),
        None,
    ),
    row(
        "  fake CLI CPU per job (3 runs), ms",
        |f| Some(f.e2e_cli_cpu_ms_per_job),
        None,
    ),
    row(
        "  PostgreSQL server CPU per job, ms",
        |f| f.e2e_db_cpu_ms_per_job,
        None,
    ),
    row(
        "  CPU per job in the std floor (bench + CLIs), ms",
        |f| Some(f.floor_cpu_ms_per_job),
        None,
    ),
    row(
        "  CPU per job in the exec::run floor (bench + CLIs), ms",
        |f| Some(f.floor_exec_cpu_ms_per_job),
        None,
    ),
    row(
        "peak RSS (VmHWM) after the end-to-end jobs, MiB",
        |f| Some(f.vm_hwm_mib),
        Some(("vm_hwm_mib", '<', 40.0)),
    ),
    row(
        "database (db + wal) per job, bytes",
        |f| f.db_bytes_per_job,
        None,
    ),
    row(
        "  db after clean shutdown per job, bytes",
        |f| f.db_checkpointed_bytes_per_job,
        None,
    ),
    row(
        "  job_events rows per succeeded job",
        |f| Some(f.events_per_job),
        None,
    ),
    row(
        "CPU used by other processes (max over phases), %",
        |f| Some(f.other_cpu_pct),
        Some(("other_cpu_pct", '<', 10.0)),
    ),
];

/// Prints the figures of one run, or the medians of several with their range.
pub fn print_table(title: &str, runs: &[Figures]) {
    let med = Figures::median(runs);
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
        let Some(v) = (r.value)(&med) else { continue };
        let range = if spread {
            let vals: Vec<f64> = runs.iter().filter_map(r.value).collect();
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{} .. {}", fmt(lo), fmt(hi))
        } else {
            String::new()
        };
        let (target, met) = match r.target {
            Some((_, '>', t)) => (format!(">= {}", fmt(t)), if v >= t { "yes" } else { "NO" }),
            Some((_, _, t)) => (format!("<= {}", fmt(t)), if v <= t { "yes" } else { "NO" }),
            None => (String::new(), ""),
        };
        println!(
            "{:<56} {:>11} {:>23} {:>10}  {}",
            r.label,
            fmt(v),
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

pub fn write_results(
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
        "targets": TABLE.iter().filter_map(|r| r.target.map(|(key, op, t)| {
            (key.to_string(), json!(format!("{} {}", if op == '>' { ">=" } else { "<=" }, t)))
        })).collect::<serde_json::Map<_, _>>(),
        "median": Figures::median(runs).json(),
        "runs": runs.iter().map(Figures::json).collect::<Vec<_>>(),
        "discarded_runs": discarded.iter().map(Figures::json).collect::<Vec<_>>(),
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
