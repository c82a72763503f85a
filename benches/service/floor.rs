//! The spawn floor: the three commands of a bootstrap in a tight loop, with the same
//! parallelism as the workers, without the service.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::ensure;
use everestctl_api::domain::{Operators, Resources};
use everestctl_api::everest::{argv, quota_manifest};
use everestctl_api::exec::{self, CommandSpec, ExecLimits};
use tokio_util::sync::CancellationToken;

use crate::cores;

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
pub fn spawn_floor_std(
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
pub fn spawn_floor_exec(
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
