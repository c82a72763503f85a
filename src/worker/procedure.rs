//! Steps made of several commands: the RBAC ConfigMap merge (read, edit, validate, write back
//! with optimistic concurrency) and a command guarded by a check that the namespace is managed
//! by Everest. Each is recorded as one attempt with a transcript of the commands it ran.

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::verdict::{Verdict, failed, spawn_failure};
use crate::config::Settings;
use crate::everest::{self, Expect, argv, rbac};
use crate::exec::{self, CommandSpec, ExecError, ExecLimits, ExecOutput, Termination};
use crate::plan::RbacChange;
use crate::store::{AttemptEnd, Lease, Store};

/// How many write conflicts in a row the ConfigMap merge absorbs by reading again.
const MAX_CONFLICTS: usize = 5;

/// Output the service parses (a ConfigMap, a namespace list) is read whole, up to this many
/// characters; `MAX_OUTPUT_CHARS` only bounds what is kept for people to read.
pub const DATA_OUTPUT_LIMIT: usize = 32 * 1024 * 1024;

/// Runs commands for one step, with the job's stop token and the configured limits.
pub struct Cli<'a> {
    pub settings: &'a Settings,
    pub stop: &'a CancellationToken,
    /// The attempt the commands run for, where each one's pid is recorded as it starts.
    pub attempt: Option<AttemptRef<'a>>,
}

/// A started attempt, for recording the commands it runs.
pub struct AttemptRef<'a> {
    pub store: &'a Store,
    pub lease: &'a Lease,
    pub id: i64,
}

impl Cli<'_> {
    /// Runs a command whose output is kept for people (capped at `MAX_OUTPUT_CHARS`).
    pub async fn run(&self, spec: &CommandSpec) -> Result<ExecOutput, ExecError> {
        self.run_capped(spec, self.settings.max_output_chars).await
    }

    /// Runs a command whose output the service parses, so it must not be truncated.
    pub async fn read(&self, spec: &CommandSpec) -> Result<ExecOutput, ExecError> {
        self.run_capped(spec, DATA_OUTPUT_LIMIT).await
    }

    async fn run_capped(
        &self,
        spec: &CommandSpec,
        max_output_chars: usize,
    ) -> Result<ExecOutput, ExecError> {
        let limits = ExecLimits {
            max_output_chars,
            kill_grace: self.settings.kill_grace,
            pass_env: self.settings.cli_env_passthrough.clone(),
        };
        let Some(attempt) = &self.attempt else {
            let result = exec::run(spec, &limits, self.stop).await;
            crate::telemetry::cli_invocation(&spec.program, exit_class(&result));
            return result;
        };
        // The pid is recorded while the command runs; the run's end is recorded after this write.
        let (report, reported) = oneshot::channel();
        let run = exec::run_reporting(spec, &limits, self.stop, Some(report));
        let record = async {
            let Ok(id) = reported.await else { return };
            let written = attempt
                .store
                .record_command(attempt.lease, attempt.id, id.pid, id.start_time)
                .await;
            if let Err(e) = written {
                tracing::warn!(job.id = %attempt.lease.job_id, pid = id.pid, error = %e,
                    "cannot record the command's pid; a crash now would leave it unstoppable");
            }
        };
        let (result, ()) = tokio::join!(run, record);
        crate::telemetry::cli_invocation(&spec.program, exit_class(&result));
        result
    }

    fn kubectl(&self, args: Vec<String>) -> CommandSpec {
        CommandSpec::new(
            &self.settings.kubectl_bin,
            args,
            self.settings.subprocess_timeout,
        )
    }

    fn everestctl(&self, args: Vec<String>) -> CommandSpec {
        CommandSpec::new(
            &self.settings.everestctl_bin,
            args,
            self.settings.subprocess_timeout,
        )
    }
}

/// The class of a command's end, for metrics.
pub fn exit_class(result: &Result<ExecOutput, ExecError>) -> &'static str {
    match result {
        Err(ExecError::NotFound { .. } | ExecError::NotExecutable { .. }) => "not_found",
        Err(ExecError::Spawn { .. }) => "spawn_failed",
        Ok(out) => match out.termination {
            Termination::Exited(0) => "ok",
            Termination::Exited(_) => "failed",
            Termination::Signaled(_) => "signal",
            Termination::TimedOut => "timeout",
            Termination::Canceled => "canceled",
        },
    }
}

/// What a multi-command step produced: its transcript and verdict.
pub struct Procedure {
    stdout: String,
    stderr: String,
    last: Option<(Termination, i64)>,
}

impl Procedure {
    fn new() -> Self {
        Procedure {
            stdout: String::new(),
            stderr: String::new(),
            last: None,
        }
    }

    /// Appends a command and its output to the transcript (`quiet`: its stdout is not kept).
    fn record(&mut self, out: &ExecOutput, quiet: bool) {
        self.stdout.push_str(&format!("$ {}\n", out.command));
        if quiet {
            self.stdout.push_str(&format!(
                "({} bytes of output not kept)\n",
                out.stdout.len()
            ));
        } else {
            self.stdout.push_str(&out.stdout);
        }
        if !out.stderr.is_empty() {
            self.stderr.push_str(&out.stderr);
        }
        self.last = Some((
            out.termination,
            out.exit_code().map(i64::from).unwrap_or(-1),
        ));
    }

    fn note(&mut self, line: &str) {
        self.stdout.push_str(line);
        self.stdout.push('\n');
    }

    fn finish(self, verdict: Verdict) -> (AttemptEnd, Verdict) {
        let termination = self.last.map(|(t, _)| t).unwrap_or(Termination::Exited(0));
        let end = AttemptEnd {
            outcome: verdict.outcome(termination),
            error_kind: verdict.error_kind(),
            exit_code: self
                .last
                .and_then(|(t, code)| matches!(t, Termination::Exited(_)).then_some(code)),
            stdout: self.stdout,
            stderr: self.stderr,
            duration_ms: 0,
        };
        (end, verdict)
    }
}

/// Applies `change` to the `everest-rbac` ConfigMap. Never writes a policy built from one that
/// could not be read, never writes a candidate that `everestctl settings rbac validate`
/// rejects, and writes with the `resourceVersion` read, reading again after a conflict.
pub async fn configmap(cli: &Cli<'_>, change: &RbacChange) -> (AttemptEnd, Verdict) {
    let mut p = Procedure::new();
    for _ in 0..MAX_CONFLICTS {
        let get = cli.kubectl(argv::kubectl_get_rbac_configmap());
        let out = match cli.read(&get).await {
            Ok(out) => out,
            Err(e) => return p.finish(spawn_failure(&e)),
        };
        p.record(&out, true);
        if !out.success() {
            return p.finish(failed(&out));
        }
        let mut object: Value = match serde_json::from_str(out.matchable_stdout()) {
            Ok(v) => v,
            Err(e) => {
                let detail = format!(
                    "ConfigMap everest-rbac could not be parsed ({e}); nothing was written"
                );
                return p.finish(Verdict::Permanent {
                    kind: "unreadable_policy",
                    detail,
                });
            }
        };
        let Some(policy) = object["data"]["policy.csv"].as_str().map(String::from) else {
            let detail =
                "ConfigMap everest-system/everest-rbac has no data.policy.csv; nothing was written"
                    .to_string();
            return p.finish(Verdict::Permanent {
                kind: "unreadable_policy",
                detail,
            });
        };
        let (edit, key, verb) = match change {
            RbacChange::Add(lines) => (rbac::add_lines(&policy, lines), "added_lines", "added"),
            RbacChange::Restore(lines) => {
                (rbac::add_lines(&policy, lines), "added_lines", "restored")
            }
            RbacChange::Revoke(user) => {
                (rbac::revoke_user(&policy, user), "removed_lines", "removed")
            }
        };
        if edit.changed.is_empty() {
            p.note("policy already as required; nothing to write");
            let output = json!({"rbac_applied": true, key: Vec::<String>::new()});
            return p.finish(Verdict::Succeeded {
                output,
                note: "already in place".into(),
            });
        }
        if let Some(verdict) = validate(cli, &mut p, &edit.policy).await {
            return p.finish(verdict);
        }
        object["data"]["policy.csv"] = json!(edit.policy);
        let replace = cli
            .kubectl(argv::kubectl_replace_stdin())
            .with_stdin(object.to_string().into_bytes());
        let out = match cli.run(&replace).await {
            Ok(out) => out,
            Err(e) => return p.finish(spawn_failure(&e)),
        };
        p.record(&out, false);
        if out.success() {
            let n = edit.changed.len();
            let output = json!({"rbac_applied": true, key: edit.changed});
            return p.finish(Verdict::Succeeded {
                output,
                note: format!("{verb} ({n} policy line(s))"),
            });
        }
        let message = everest::error_message(
            out.matchable_stdout(),
            out.matchable_stderr(),
            out.exit_code(),
        );
        if !message.contains("the object has been modified") {
            return p.finish(failed(&out));
        }
        p.note("the ConfigMap changed since it was read; reading it again");
    }
    let detail = format!("ConfigMap everest-rbac changed under us {MAX_CONFLICTS} times in a row");
    p.finish(Verdict::Transient {
        kind: "cli_failed",
        detail,
    })
}

/// Validates a candidate policy; `Some(verdict)` when it must not be written.
async fn validate(cli: &Cli<'_>, p: &mut Procedure, policy: &str) -> Option<Verdict> {
    let file = match write_temp(&cli.settings.private_tmp_dir, policy) {
        Ok(file) => file,
        Err(e) => {
            return Some(Verdict::Permanent {
                kind: "internal",
                detail: format!("cannot write the candidate policy: {e}"),
            });
        }
    };
    let spec = cli.everestctl(argv::rbac_validate(&file.path().to_string_lossy()));
    let out = match cli.run(&spec).await {
        Ok(out) => out,
        Err(e) => return Some(spawn_failure(&e)),
    };
    p.record(&out, false);
    if out.success() && everest::confirms(Expect::PolicyValid, out.matchable_stdout()) {
        return None;
    }
    if out.termination == Termination::Exited(1) && out.matchable_stdout().contains("Invalid") {
        let message =
            everest::error_message(out.matchable_stdout(), out.matchable_stderr(), Some(1));
        let detail =
            format!("the edited RBAC policy is invalid, so nothing was written: {message}");
        return Some(Verdict::Permanent {
            kind: "invalid_policy",
            detail,
        });
    }
    Some(failed(&out))
}

/// Writes `content` to a new `everest-policy-*.csv` file in the service's private folder
/// (`PRIVATE_TMP_DIR`), deleted when the returned handle drops. What a crash leaves behind is
/// deleted at the next start ([`prepare_private_dir`]).
pub(super) fn write_temp(
    dir: &std::path::Path,
    content: &str,
) -> std::io::Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut file = tempfile::Builder::new()
        .prefix("everest-policy-")
        .suffix(".csv")
        .tempfile_in(dir)?;
    file.write_all(content.as_bytes())?;
    file.flush()?;
    Ok(file)
}

/// Creates the service's private folder if needed, restricts it to its owner (mode 0700) and
/// empties it: whatever is in it was left by an earlier process of this service, which the
/// database lock shows is no longer running.
pub fn prepare_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // A link is removed, never followed.
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Runs `spec` only if `namespace` is managed by Everest (`app.kubernetes.io/managed-by=everest`).
pub async fn in_managed_namespace(
    cli: &Cli<'_>,
    namespace: &str,
    spec: &CommandSpec,
) -> (AttemptEnd, Verdict) {
    let mut p = Procedure::new();
    let list = cli.kubectl(argv::kubectl_get_managed_namespaces());
    let out = match cli.read(&list).await {
        Ok(out) => out,
        Err(e) => return p.finish(spawn_failure(&e)),
    };
    p.record(&out, true);
    if !out.success() {
        return p.finish(failed(&out));
    }
    let managed = match everest::parse_namespace_list(out.matchable_stdout()) {
        Ok(list) => list.iter().any(|n| n.name == namespace),
        Err(e) => {
            let detail = format!("unexpected output from kubectl get namespaces: {e}");
            return p.finish(Verdict::Permanent {
                kind: "cli_failed",
                detail,
            });
        }
    };
    if !managed {
        let detail = format!(
            "namespace {namespace} is not managed by Everest (no app.kubernetes.io/managed-by=everest label); \
             add it with a bootstrap or `everestctl namespaces add` first"
        );
        return p.finish(Verdict::Permanent {
            kind: "not_managed",
            detail,
        });
    }
    let out = match cli.run(spec).await {
        Ok(out) => out,
        Err(e) => return p.finish(spawn_failure(&e)),
    };
    p.record(&out, false);
    let verdict = if out.success() {
        Verdict::Succeeded {
            output: json!({}),
            note: "applied".into(),
        }
    } else {
        failed(&out)
    };
    p.finish(verdict)
}
