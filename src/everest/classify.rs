//! Reading a finished command: its own error message, whether a retry may help, and which
//! known outcome it reports.
//!
//! Inputs are stdout/stderr **already cleaned** by the executor: ANSI sequences and `\r`
//! removed, every line right-trimmed (lipgloss right-pads multi-line errors).
//! Texts come from `everestctl.md` (§1, §2, §9) and `design.md` ("Retry classification").

pub use super::confirm::{Expect, confirms};

/// Removes the `❌` marker (and the spaces after it) that pretty mode puts before errors.
fn strip_cross(line: &str) -> &str {
    let line = line.trim();
    line.strip_prefix('❌').map_or(line, str::trim_start)
}

/// pflag's warning for `--operator.xtradb-cluster`; noise next to a real error.
fn is_deprecation_warning(line: &str) -> bool {
    line.starts_with("Flag --") && line.contains(" has been deprecated")
}

/// Cobra prints `Error: X`, the usage, then `main` prints `X` again: the message is `X`.
fn cobra_error(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Error: "))
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
}

/// `settings rbac validate` reports an invalid policy on stdout: `❌ Invalid` + detail lines.
fn rbac_invalid(stdout: &str) -> Option<String> {
    let mut lines = stdout.lines().skip_while(|l| l.trim() != "❌ Invalid");
    lines.next()?;
    let detail: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
    Some(if detail.is_empty() {
        "Invalid".to_owned()
    } else {
        detail.join("; ")
    })
}

/// The CLI's own error message (see the module docs for the input contract):
/// 1. a cobra error (`Error: X` + usage + `X`) gives `X`;
/// 2. `❌ Invalid` + detail on stdout (`settings rbac validate`) gives the detail;
/// 3. otherwise stderr without the leading `❌ `, blank lines (and the `xtradb-cluster`
///    deprecation warning, when something else is there) dropped, lines joined with `"; "`;
/// 4. otherwise the last non-empty line of stdout;
/// 5. otherwise `exited with code N and no output` (or a signal note when there is no code).
pub fn error_message(stdout: &str, stderr: &str, exit_code: Option<i32>) -> String {
    if let Some(msg) = cobra_error(stderr) {
        return msg;
    }
    if let Some(msg) = rbac_invalid(stdout) {
        return msg;
    }
    let mut lines: Vec<&str> = stderr
        .lines()
        .map(strip_cross)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.iter().any(|l| !is_deprecation_warning(l)) {
        lines.retain(|l| !is_deprecation_warning(l));
    }
    if !lines.is_empty() {
        return lines.join("; ");
    }
    if let Some(last) = stdout.lines().map(strip_cross).rfind(|l| !l.is_empty()) {
        return last.to_owned();
    }
    match exit_code {
        Some(code) => format!("exited with code {code} and no output"),
        None => "was terminated by a signal and produced no output".to_owned(),
    }
}

/// Whether running the same command again may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Timeouts, network trouble, optimistic-concurrency conflicts, Helm busy, API server 5xx.
    Transient,
    /// Everything else: the same command would fail the same way.
    Permanent,
}

/// Lower-case fragments of transient failures. Plain `timeout` is deliberately absent: request
/// URLs carry `?timeout=32s`, which would make e.g. certificate errors look transient.
const TRANSIENT: &[&str] = &[
    // timeouts
    "i/o timeout",
    "tls handshake timeout",
    "timed out",
    "timeout exceeded",
    "deadline exceeded",
    "(timeout)",
    "(servertimeout)",
    "the server was unable to return a response in the time allotted",
    // connection trouble
    "connection refused",
    "connection reset",
    "broken pipe",
    "unexpected eof",
    "http2: client connection lost",
    // optimistic concurrency and Helm locking
    "the object has been modified",
    "another operation (install/upgrade/rollback) is in progress",
    // API server 5xx (and 429)
    "the server is currently unable to handle the request",
    "internal error occurred",
    "(internalerror)",
    "(serviceunavailable)",
    "service unavailable",
    "internal server error",
    "bad gateway",
    "gateway timeout",
    "etcdserver: leader changed",
    "too many requests",
];

/// A bare `EOF` ending a Go error (`Get "https://…": EOF`).
fn has_bare_eof(lower: &str) -> bool {
    lower.trim() == "eof"
        || lower.match_indices(": eof").any(|(i, m)| {
            !lower[i + m.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
}

/// Transient or permanent, by `design.md`'s rules; anything not recognised is permanent
/// (validation errors, not found, already exists, reserved namespace, no kubeconfig, unknown
/// flag, the take-ownership hint, …).
pub fn classify(message: &str) -> Retry {
    let lower = message.to_lowercase();
    if TRANSIENT.iter().any(|t| lower.contains(t)) || has_bare_eof(&lower) {
        Retry::Transient
    } else {
        Retry::Permanent
    }
}

/// `accounts create`: `user already exists`.
pub fn is_user_already_exists(message: &str) -> bool {
    message.contains("user already exists")
}

/// `accounts delete|set-password`: `account not found`.
pub fn is_account_not_found(message: &str) -> bool {
    message.contains("account not found")
}

/// `namespaces add`: `'NS': namespace already exists and is managed by Everest`.
pub fn is_namespace_managed_exists(message: &str) -> bool {
    message.contains("namespace already exists and is managed by Everest")
}

/// `namespaces add` on an unmanaged namespace without `--take-ownership` (permanent).
pub fn is_take_ownership_hint(message: &str) -> bool {
    message.contains("namespace already exists. HINT: set '--take-ownership'")
}

/// `namespaces remove`: `'NS': namespace does not exist`.
pub fn is_namespace_missing(message: &str) -> bool {
    message.contains("namespace does not exist")
}

/// `namespaces update|remove`: `'NS': namespace is not managed by Everest` (also the `update`
/// message for a namespace that does not exist).
pub fn is_namespace_not_managed(message: &str) -> bool {
    message.contains("namespace is not managed by Everest")
}

/// Cobra's `unknown flag: --name` for exactly this flag (`name` or `--name`; `-x` matches the
/// shorthand form `unknown shorthand flag: 'x' in -x`).
pub fn is_unknown_flag(message: &str, flag: &str) -> bool {
    let name = flag.split('=').next().unwrap_or(flag);
    let needle = match name.strip_prefix('-') {
        Some(short) if !short.starts_with('-') && short.chars().count() == 1 => {
            format!("unknown shorthand flag: '{short}'")
        }
        Some(_) => format!("unknown flag: {name}"),
        None => format!("unknown flag: --{name}"),
    };
    message.match_indices(&needle).any(|(i, m)| {
        !message[i + m.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
    })
}

#[cfg(test)]
mod tests;
