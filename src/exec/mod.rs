//! Running one external command (the `everestctl` / `kubectl` CLIs) safely.
//!
//! The child gets its own process group (which we signal as a whole; it stays in this process's
//! session, see `docs/decisions.md`), stdin from the caller or `/dev/null`, and a minimal
//! environment (see [`env`]: never this service's own settings). Its output is captured with
//! bounded memory, then cleaned, truncated, and its lines with secrets withheld. This module
//! knows nothing about jobs:
//! callers map [`ExecOutput`] to their needs.

mod capture;
mod clean;
pub mod env;
mod group;
mod process;
mod resolve;
mod runner;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use clean::{MASK, WITHHELD, clean_output, redact, withhold};
pub use process::{Leftover, ProcessId, stop_leftover};
pub use resolve::resolve_binary;
pub use runner::{DRAIN_WINDOW, run, run_reporting};

/// One command to run: program, arguments, stdin, time limit, secrets and extra environment.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// A bare name (looked up on `PATH`) or a path (used as given).
    pub program: String,
    pub args: Vec<String>,
    /// Bytes written to the child's stdin, which is then closed; `None` means `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// Wall-clock limit, counted from spawn. See [`run`] for what happens when it passes.
    pub timeout: Duration,
    /// Strings replaced by [`MASK`] in the displayed command line; the lines of the captured
    /// output that contain one are replaced by [`WITHHELD`].
    pub secrets: Vec<String>,
    /// Extra environment variables, set last (over the base environment, see [`env`]).
    pub env: Vec<(String, String)>,
}

impl CommandSpec {
    /// A command with stdin from `/dev/null`, no secrets and no extra environment.
    pub fn new(program: impl Into<String>, args: Vec<String>, timeout: Duration) -> Self {
        Self {
            program: program.into(),
            args,
            stdin: None,
            timeout,
            secrets: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Feeds `bytes` to the child's stdin.
    pub fn with_stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }

    /// Adds a secret to redact (empty strings are ignored).
    pub fn with_secret(mut self, secret: impl Into<String>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// Adds an environment variable for the child.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The command line for logs and job records, with secrets redacted and elements quoted
    /// for a POSIX shell when needed, e.g. `everestctl accounts create -u alice -p ********`.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|arg| shell_quote(&redact(arg, &self.secrets)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Single-quotes `arg` if a shell would not read it back as one literal word. The mask's `*`s
/// do not count, so redacted arguments stay readable.
fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c);
    if !arg.is_empty() && arg.replace(MASK, "").chars().all(plain) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Environment added to every child of this process (after the variables passed on from this
/// process's environment, before [`CommandSpec::env`]). Set once at startup by the binary, for variables it computed itself
/// such as the in-cluster `KUBECONFIG` (`std::env::set_var` would need unsafe code).
static CHILD_ENV: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Sets the environment added to every command this process runs from now on. Only the first
/// call has an effect; it returns whether it was that call.
pub fn set_child_env(env: Vec<(String, String)>) -> bool {
    CHILD_ENV.set(env).is_ok()
}

/// The environment set by [`set_child_env`] (empty until then).
pub fn child_env() -> &'static [(String, String)] {
    CHILD_ENV.get().map_or(&[], Vec::as_slice)
}

/// Limits and environment applied to every run, from the caller's configuration.
#[derive(Debug, Clone)]
pub struct ExecLimits {
    /// Maximum chars kept per stream (stdout and stderr each), head and tail halves.
    pub max_output_chars: usize,
    /// After SIGTERM (timeout or cancellation), how long the child gets before SIGKILL.
    pub kill_grace: Duration,
    /// Names of variables of this process's environment passed on to the child besides
    /// [`env::BASE`] (the operator's allow-list; the caller vets it, see [`env`]).
    pub pass_env: Arc<[String]>,
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// Exited on its own with this code.
    Exited(i32),
    /// Killed by this signal, not by us (e.g. OOM killer, or it killed itself).
    Signaled(i32),
    /// Killed by us because [`CommandSpec::timeout`] passed.
    TimedOut,
    /// Killed by us (or never started) because the cancellation token fired.
    Canceled,
}

/// The result of a run that started (whatever its outcome).
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// The redacted command line, [`CommandSpec::display`].
    pub command: String,
    pub termination: Termination,
    /// Cleaned and truncated stdout, its lines with secrets withheld: what may be shown and stored.
    pub stdout: String,
    /// Cleaned and truncated stderr, its lines with secrets withheld.
    pub stderr: String,
    /// Cleaned and truncated stdout as the command printed it, secrets included, when the spec
    /// had secrets (`None`: the same as `stdout`). Only for matching: never show or store it.
    pub raw_stdout: Option<String>,
    /// The same for stderr.
    pub raw_stderr: Option<String>,
    /// From just before spawn until everything was cleaned up.
    pub duration: Duration,
}

impl ExecOutput {
    /// The exit code, if the child exited on its own.
    pub fn exit_code(&self) -> Option<i32> {
        match self.termination {
            Termination::Exited(code) => Some(code),
            _ => None,
        }
    }

    /// stdout as printed, for matching confirmations and errors (see [`ExecOutput::raw_stdout`]).
    pub fn matchable_stdout(&self) -> &str {
        self.raw_stdout.as_deref().unwrap_or(&self.stdout)
    }

    /// stderr as printed, for matching errors.
    pub fn matchable_stderr(&self) -> &str {
        self.raw_stderr.as_deref().unwrap_or(&self.stderr)
    }

    /// Whether the child exited on its own with code 0.
    pub fn success(&self) -> bool {
        self.termination == Termination::Exited(0)
    }
}

/// Why a command could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The binary does not exist (on `PATH` for bare names).
    #[error("{program}: {detail}")]
    NotFound { program: String, detail: String },
    /// The file exists but is not an executable file.
    #[error("{program}: permission denied (not an executable file)")]
    NotExecutable { program: String },
    /// Any other failure to start (or, rarely, to wait for) the process.
    #[error("{program}: failed to run: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(args: &[&str]) -> CommandSpec {
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        CommandSpec::new("everestctl", args, Duration::from_secs(1))
    }

    #[test]
    fn display_redacts_secrets() {
        let s =
            spec(&["accounts", "create", "-u", "alice", "-p", "hunter2"]).with_secret("hunter2");
        assert_eq!(
            s.display(),
            "everestctl accounts create -u alice -p ********"
        );
        let s = spec(&["--password=hunter2"]).with_secret("hunter2");
        assert_eq!(s.display(), "everestctl --password=********");
    }

    #[test]
    fn display_quotes_shell_metacharacters() {
        let s = spec(&["a b", "it's", "", "$HOME", "x*y", "ok-1.2/z"]);
        assert_eq!(
            s.display(),
            r"everestctl 'a b' 'it'\''s' '' '$HOME' 'x*y' ok-1.2/z"
        );
    }

    #[test]
    fn display_redacts_secret_with_spaces_without_quoting_it() {
        let s = spec(&["-p", "pass word"]).with_secret("pass word");
        assert_eq!(s.display(), "everestctl -p ********");
    }

    #[test]
    fn output_helpers() {
        let mut out = ExecOutput {
            command: String::new(),
            termination: Termination::Exited(0),
            stdout: String::new(),
            stderr: String::new(),
            raw_stdout: None,
            raw_stderr: None,
            duration: Duration::ZERO,
        };
        assert!(out.success());
        assert_eq!(out.exit_code(), Some(0));
        out.termination = Termination::TimedOut;
        assert!(!out.success());
        assert_eq!(out.exit_code(), None);
    }
}
