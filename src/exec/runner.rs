//! The `run` loop: spawn in a new process group, feed stdin, capture output, enforce the timeout
//! and cancellation, and leave no process of the group behind.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::capture::{Capture, read_stream};
use super::group::ProcessGroup;
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
    let started = Instant::now();
    let command = spec.display();
    let path = resolve_binary(&spec.program)?;
    if cancel.is_cancelled() {
        return Ok(ExecOutput {
            command,
            termination: Termination::Canceled,
            stdout: String::new(),
            stderr: String::new(),
            duration: started.elapsed(),
        });
    }

    let mut child = spawn(spec, &path)?;
    // Declared after `child` so that it drops first, while the leader is not yet reaped and the
    // group id therefore still designates our group.
    let mut group = ProcessGroup::new(child_pid(&child));
    tracing::debug!(%command, pid = child.id(), "spawned");

    let stop_reading = CancellationToken::new();
    let stdout = start_reader(child.stdout.take(), limits, &stop_reading);
    let stderr = start_reader(child.stderr.take(), limits, &stop_reading);
    let _stdin_writer = match (child.stdin.take(), &spec.stdin) {
        (Some(pipe), Some(bytes)) => Some(AbortOnDropHandle::new(tokio::spawn(feed_stdin(
            pipe,
            bytes.clone(),
        )))),
        _ => None,
    };

    let outcome = tokio::select! {
        status = child.wait() => Outcome::Exited(status),
        () = tokio::time::sleep(spec.timeout) => Outcome::TimedOut,
        () = cancel.cancelled() => Outcome::Canceled,
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
            (
                Termination::TimedOut,
                group.terminate(&mut child, limits.kill_grace).await,
            )
        }
        Outcome::Canceled => {
            tracing::info!(%command, "command canceled, terminating");
            (
                Termination::Canceled,
                group.terminate(&mut child, limits.kill_grace).await,
            )
        }
    };

    // Let the readers finish what is buffered in the pipes, but not wait for a grandchild that
    // keeps them open: after the drain window, kill the rest of the group and stop reading.
    let readers = async { tokio::join!(finish(stdout), finish(stderr)) };
    tokio::pin!(readers);
    let (stdout, stderr) = tokio::select! {
        captures = &mut readers => captures,
        () = tokio::time::sleep(DRAIN_WINDOW) => {
            tracing::debug!(%command, "output still open after the child exited, killing group");
            group.kill(false).await;
            stop_reading.cancel();
            readers.await
        }
    };
    group.kill(leader_reaped).await;

    let output = ExecOutput {
        command,
        termination,
        stdout: render(stdout, spec, limits),
        stderr: render(stderr, spec, limits),
        duration: started.elapsed(),
    };
    tracing::debug!(command = %output.command, termination = ?output.termination,
        duration = ?output.duration, "command finished");
    Ok(output)
}

fn spawn(spec: &CommandSpec, path: &Path) -> Result<Child, ExecError> {
    let mut command = tokio::process::Command::new(absolute(path));
    command
        .args(&spec.args)
        // The CLIs' colours are noise in stored output (we strip escapes anyway).
        .env("NO_COLOR", "1")
        .envs(super::child_env().iter().map(|(k, v)| (k, v)))
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
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

type Reader = AbortOnDropHandle<Capture>;

fn start_reader<R>(pipe: Option<R>, limits: &ExecLimits, stop: &CancellationToken) -> Option<Reader>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let capture = Capture::new(limits.max_output_chars);
    pipe.map(|pipe| AbortOnDropHandle::new(tokio::spawn(read_stream(pipe, capture, stop.clone()))))
}

async fn feed_stdin(mut pipe: ChildStdin, bytes: Vec<u8>) {
    // Errors (typically EPIPE: the child exited without reading everything) are not ours to
    // report; the child's exit status tells the story.
    if pipe.write_all(&bytes).await.is_ok() {
        let _ = pipe.shutdown().await;
    }
}

/// Waits for a reader's capture (`None` if there was no pipe or the reader panicked).
async fn finish(reader: Option<Reader>) -> Option<Capture> {
    reader?.await.ok()
}

fn render(capture: Option<Capture>, spec: &CommandSpec, limits: &ExecLimits) -> String {
    capture.map_or_else(String::new, |c| {
        c.render(&spec.secrets, limits.max_output_chars)
    })
}

fn termination_of(status: ExitStatus) -> Termination {
    match (status.code(), status.signal()) {
        (Some(code), _) => Termination::Exited(code),
        (None, Some(signal)) => Termination::Signaled(signal),
        // Unreachable on Unix: a reaped child either exited or was killed by a signal.
        (None, None) => Termination::Exited(-1),
    }
}
