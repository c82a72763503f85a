//! The `run` loop: spawn in a new process group, feed stdin, capture output, enforce the timeout
//! and cancellation, and leave no process of the group behind.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::capture::{Capture, read_stream};
use super::group::ProcessGroup;
use super::process::ProcessId;
use super::resolve::{resolve_binary, spawn_error};
use super::{CommandSpec, ExecError, ExecLimits, ExecOutput, Termination};

/// After the main child exits, how long its output pipes may stay open (held by a grandchild)
/// before the group is killed and reading stops.
pub const DRAIN_WINDOW: Duration = Duration::from_millis(500);

/// Why the wait for the main child ended.
enum Outcome {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Canceled,
}

/// Runs `spec` to completion and returns its cleaned output.
///
/// - Timeout and cancellation: SIGTERM to the whole process group, up to `limits.kill_grace` for
///   the child to exit, then SIGKILL. So a run lasts at most about
///   `timeout + kill_grace + DRAIN_WINDOW`.
/// - When the child exits, its output is read for at most [`DRAIN_WINDOW`] more (a background
///   grandchild may hold the pipes open); then the remaining group is SIGKILLed. No process of the
///   group is left running when this returns, nor when the returned future is dropped.
/// - A token already cancelled before spawning gives [`Termination::Canceled`] without spawning.
///
/// Errors only when the command could not be started; every started run gives an
/// [`ExecOutput`], whatever its [`Termination`].
pub async fn run(
    spec: &CommandSpec,
    limits: &ExecLimits,
    cancel: &CancellationToken,
) -> Result<ExecOutput, ExecError> {
    run_reporting(spec, limits, cancel, None).await
}

/// Like [`run`], and sends the started command's [`ProcessId`] to `report` right after spawn
/// (nothing is sent when no command starts, or when `/proc` cannot be read), so that the caller
/// can record it, concurrently with the run, and stop the command after a crash of this process.
pub async fn run_reporting(
    spec: &CommandSpec,
    limits: &ExecLimits,
    cancel: &CancellationToken,
    report: Option<oneshot::Sender<ProcessId>>,
) -> Result<ExecOutput, ExecError> {
    let started = Instant::now();
    let command = spec.display();
    let path = resolve_binary(&spec.program)?;
    if cancel.is_cancelled() {
        return Ok(ExecOutput {
            command,
            termination: Termination::Canceled,
            stdout: String::new(),
            stderr: String::new(),
            raw_stdout: None,
            raw_stderr: None,
            duration: started.elapsed(),
        });
    }

    let mut child = spawn(spec, limits, &path)?;
    // Declared after `child` so that it drops first, while the leader is not yet reaped and the
    // group id therefore still designates our group.
    let mut group = ProcessGroup::new(child_pid(&child));
    tracing::debug!(%command, pid = child.id(), "spawned");
    // Read now, while the child is not reaped, so that the pid is still certainly its own.
    if let (Some(report), Some(id)) = (report, ProcessId::of(child_pid(&child).as_raw())) {
        // A caller that stopped listening does not want it.
        let _ = report.send(id);
    }

    // The pipes are read and stdin is fed by this task itself (no task per pipe): for the short
    // runs of the CLIs, handing the work to other tasks cost more than the work.
    let stop_reading = CancellationToken::new();
    let io = pump(
        read_pipe(child.stdout.take(), limits, &stop_reading),
        read_pipe(child.stderr.take(), limits, &stop_reading),
        feed_stdin(child.stdin.take(), spec.stdin.as_deref()),
    );
    tokio::pin!(io);
    let mut captures = None;

    let timeout = tokio::time::sleep(spec.timeout);
    tokio::pin!(timeout);
    let outcome = loop {
        tokio::select! {
            status = child.wait() => break Outcome::Exited(status),
            () = &mut timeout => break Outcome::TimedOut,
            () = cancel.cancelled() => break Outcome::Canceled,
            done = &mut io, if captures.is_none() => captures = Some(done),
        }
    };
    let (termination, leader_reaped) = match outcome {
        Outcome::Exited(Ok(status)) => (termination_of(status), true),
        Outcome::Exited(Err(source)) => {
            group.kill(false).await;
            return Err(ExecError::Spawn {
                program: spec.program.clone(),
                source,
            });
        }
        Outcome::TimedOut => {
            tracing::warn!(%command, timeout = ?spec.timeout, "command timed out, terminating");
            let reaped = terminate(&mut group, &mut child, limits, &mut io, &mut captures).await;
            (Termination::TimedOut, reaped)
        }
        Outcome::Canceled => {
            tracing::info!(%command, "command canceled, terminating");
            let reaped = terminate(&mut group, &mut child, limits, &mut io, &mut captures).await;
            (Termination::Canceled, reaped)
        }
    };

    // Let the readers finish what is buffered in the pipes, but not wait for a grandchild that
    // keeps them open: after the drain window, kill the rest of the group and stop reading.
    let (stdout, stderr) = match captures {
        Some(done) => done,
        None => tokio::select! {
            // Output first: when it is already complete, the drain timer is never even armed.
            biased;
            done = &mut io => done,
            () = tokio::time::sleep(DRAIN_WINDOW) => {
                tracing::debug!(%command, "output still open after the child exited, killing group");
                group.kill(false).await;
                stop_reading.cancel();
                io.await
            }
        },
    };
    group.kill(leader_reaped).await;

    let output = ExecOutput {
        command,
        termination,
        stdout: render(stdout.as_ref(), &spec.secrets, limits),
        stderr: render(stderr.as_ref(), &spec.secrets, limits),
        raw_stdout: raw(stdout.as_ref(), spec, limits),
        raw_stderr: raw(stderr.as_ref(), spec, limits),
        duration: started.elapsed(),
    };
    tracing::debug!(command = %output.command, termination = ?output.termination,
        duration = ?output.duration, "command finished");
    Ok(output)
}

fn spawn(spec: &CommandSpec, limits: &ExecLimits, path: &Path) -> Result<Child, ExecError> {
    let env = super::env::build(
        std::env::vars_os(),
        &limits.pass_env,
        super::child_env(),
        &spec.env,
    );
    let mut command = tokio::process::Command::new(absolute(path));
    command
        .args(&spec.args)
        // Nothing of this process's environment but what `env::build` chose (no admin keys).
        .env_clear()
        .envs(env)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A new process group whose id is the child's pid, so that `group` can signal the child
        // and everything it starts. This (unlike setsid) needs no `pre_exec` hook, so std spawns
        // with posix_spawn, i.e. a vfork-style clone, instead of forking this whole process.
        // Do not add a `pre_exec`, uid/gid/groups or chroot setting: std would fork again.
        .process_group(0)
        // The group guard kills the group if `run` is dropped; this also kills the leader (and
        // lets tokio reap it) should the guard's signal ever fail.
        .kill_on_drop(true);
    // We signal and reap the group ourselves (see `group`).
    command
        .spawn()
        .map_err(|err| spawn_error(&spec.program, err))
}

/// `path` made absolute (against the current directory), without touching the file system.
///
/// std searches a bare name on the child's `PATH` itself, and forks to do so when that `PATH`
/// differs from ours; an absolute path is never searched, so it keeps std on posix_spawn.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn child_pid(child: &Child) -> Pid {
    // A freshly spawned, not yet awaited child always has a pid, and pids fit in i32.
    let pid = child.id().expect("a child that was not awaited has a pid");
    Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"))
}

/// Stops the group (see [`ProcessGroup::terminate`]) while still reading its output, so that a
/// child flushing on SIGTERM does not block on a full pipe. Returns whether the leader was reaped.
async fn terminate<F>(
    group: &mut ProcessGroup,
    child: &mut Child,
    limits: &ExecLimits,
    io: &mut Pin<&mut F>,
    captures: &mut Option<F::Output>,
) -> bool
where
    F: Future,
{
    let stopping = group.terminate(child, limits.kill_grace);
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            reaped = &mut stopping => return reaped,
            done = io.as_mut(), if captures.is_none() => *captures = Some(done),
        }
    }
}

/// Reads both output pipes to their end while feeding stdin. Completes when both readers are done,
/// whether or not stdin was written in full (the child may exit without reading it all).
async fn pump(
    stdout: impl Future<Output = Option<Capture>>,
    stderr: impl Future<Output = Option<Capture>>,
    stdin: impl Future<Output = ()>,
) -> (Option<Capture>, Option<Capture>) {
    let readers = async { tokio::join!(stdout, stderr) };
    tokio::pin!(readers, stdin);
    let mut fed = false;
    loop {
        tokio::select! {
            captures = &mut readers => return captures,
            () = &mut stdin, if !fed => fed = true,
        }
    }
}

/// Reads `pipe` to its end (`None` if there is no pipe).
async fn read_pipe<R>(
    pipe: Option<R>,
    limits: &ExecLimits,
    stop: &CancellationToken,
) -> Option<Capture>
where
    R: AsyncRead + Unpin,
{
    let capture = Capture::new(limits.max_output_chars);
    Some(read_stream(pipe?, capture, stop.clone()).await)
}

async fn feed_stdin(pipe: Option<ChildStdin>, bytes: Option<&[u8]>) {
    let (Some(mut pipe), Some(bytes)) = (pipe, bytes) else {
        return;
    };
    // Errors (typically EPIPE: the child exited without reading everything) are not ours to
    // report; the child's exit status tells the story.
    if pipe.write_all(bytes).await.is_ok() {
        let _ = pipe.shutdown().await;
    }
}

fn render(capture: Option<&Capture>, secrets: &[String], limits: &ExecLimits) -> String {
    capture.map_or_else(String::new, |c| c.render(secrets, limits.max_output_chars))
}

/// The text before withholding, only when there were secrets to withhold (else it is the same).
fn raw(capture: Option<&Capture>, spec: &CommandSpec, limits: &ExecLimits) -> Option<String> {
    let secrets = spec.secrets.iter().any(|s| !s.is_empty());
    secrets.then(|| render(capture, &[], limits))
}

fn termination_of(status: ExitStatus) -> Termination {
    match (status.code(), status.signal()) {
        (Some(code), _) => Termination::Exited(code),
        (None, Some(signal)) => Termination::Signaled(signal),
        // Unreachable on Unix: a reaped child either exited or was killed by a signal.
        (None, None) => Termination::Exited(-1),
    }
}
