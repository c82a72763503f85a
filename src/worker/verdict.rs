//! What a finished command means for its step: success (possibly "already existed"), a
//! transient failure worth retrying, or a permanent one. Pure, so it is tested on its own.

use serde_json::{Value, json};

use crate::domain::{AttemptOutcome, ErrorKind, StepName};
use crate::everest::{self, Expect, Retry, classify};
use crate::exec::{ExecError, ExecOutput, Termination, withhold};
use crate::plan::Confirm;

/// The verdict on one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Succeeded {
        output: Value,
        note: String,
    },
    Transient {
        kind: &'static str,
        detail: String,
    },
    Permanent {
        kind: &'static str,
        detail: String,
    },
    /// Stopped by us (lease lost or shutdown): nothing is concluded.
    Interrupted,
}

impl Verdict {
    /// The attempt outcome recorded in the history.
    pub fn outcome(&self, termination: Termination) -> AttemptOutcome {
        match (self, termination) {
            (Verdict::Interrupted, _) => AttemptOutcome::Interrupted,
            (_, Termination::TimedOut) => AttemptOutcome::TimedOut,
            (Verdict::Succeeded { .. }, _) => AttemptOutcome::Succeeded,
            _ => AttemptOutcome::Failed,
        }
    }

    /// The verdict with the lines of its detail that contain one of `secrets` withheld (see
    /// [`crate::exec::withhold`]); the detail becomes the job's `error.detail`, summary and
    /// history.
    pub fn withheld(self, secrets: &[String]) -> Verdict {
        match self {
            Verdict::Transient { kind, detail } => Verdict::Transient {
                kind,
                detail: withhold(&detail, secrets),
            },
            Verdict::Permanent { kind, detail } => Verdict::Permanent {
                kind,
                detail: withhold(&detail, secrets),
            },
            other => other,
        }
    }

    pub fn error_kind(&self) -> Option<ErrorKind> {
        match self {
            Verdict::Transient { .. } => Some(ErrorKind::Transient),
            Verdict::Permanent { kind, .. } => Some(ErrorKind::Permanent((*kind).into())),
            _ => None,
        }
    }
}

/// Judges a command's result. `may_have_run` tells whether an earlier attempt of this step in
/// this job may already have changed the cluster (interrupted, timed out, transient failure).
pub fn judge(step: StepName, confirm: &Confirm, out: &ExecOutput, may_have_run: bool) -> Verdict {
    if out.termination != Termination::Exited(1) || out.success() {
        return match out.termination {
            Termination::Exited(0) => confirmed(step, confirm, out),
            _ => failed(out),
        };
    }
    let message = everest::error_message(out.matchable_stdout(), out.matchable_stderr(), Some(1));
    let done = |output: Value, note: &str| Verdict::Succeeded {
        output,
        note: note.into(),
    };
    match step {
        StepName::CreateAccount if classify::is_user_already_exists(&message) => {
            if may_have_run {
                // An earlier attempt of this very job may have created it before being cut off.
                return done(
                    json!({"created": true}),
                    "created (by an earlier interrupted attempt of this job)",
                );
            }
            return done(
                json!({"existed": true}),
                "already existed (password unchanged)",
            );
        }
        StepName::AddNamespace if classify::is_namespace_managed_exists(&message) => {
            return done(
                json!({"existed": true}),
                "already existed and is managed by Everest",
            );
        }
        // A re-run after an interruption finds the work done; a first attempt reports it.
        StepName::DeleteAccount if may_have_run && classify::is_account_not_found(&message) => {
            return done(
                json!({"deleted": true}),
                "account deleted (by an earlier interrupted attempt)",
            );
        }
        StepName::RemoveNamespace if may_have_run && classify::is_namespace_missing(&message) => {
            return done(
                json!({"removed": true}),
                "namespace removed (by an earlier interrupted attempt)",
            );
        }
        _ => {}
    }
    failed(out)
}

/// The verdict on a command that did not succeed, from its termination and the CLI's message.
pub fn failed(out: &ExecOutput) -> Verdict {
    match out.termination {
        Termination::Canceled => Verdict::Interrupted,
        Termination::TimedOut => {
            let detail = format!(
                "timed out after {:.0}s: {}",
                out.duration.as_secs_f64(),
                out.command
            );
            Verdict::Transient {
                kind: "timeout",
                detail,
            }
        }
        Termination::Signaled(sig) => {
            let detail = format!("{} was killed by signal {sig}", program(&out.command));
            Verdict::Transient {
                kind: "cli_failed",
                detail,
            }
        }
        Termination::Exited(code) => {
            let message =
                everest::error_message(out.matchable_stdout(), out.matchable_stderr(), Some(code));
            match everest::classify(&message) {
                Retry::Transient => Verdict::Transient {
                    kind: "cli_failed",
                    detail: message,
                },
                Retry::Permanent => Verdict::Permanent {
                    kind: "cli_failed",
                    detail: message,
                },
            }
        }
    }
}

/// The verdict on a command that could not be started: a missing or non-executable binary is
/// `not_found`, anything else `spawn_failed`; neither is retried.
pub fn spawn_failure(e: &ExecError) -> Verdict {
    let kind = match e {
        ExecError::NotFound { .. } | ExecError::NotExecutable { .. } => "not_found",
        ExecError::Spawn { .. } => "spawn_failed",
    };
    Verdict::Permanent {
        kind,
        detail: e.to_string(),
    }
}

fn confirmed(step: StepName, confirm: &Confirm, out: &ExecOutput) -> Verdict {
    let expect = match confirm {
        Confirm::AccountCreated(u) => Some(Expect::AccountCreated(u)),
        Confirm::PasswordSet(u) => Some(Expect::PasswordSet(u)),
        Confirm::AccountDeleted(u) => Some(Expect::AccountDeleted(u)),
        Confirm::NamespaceAdded(ns) => Some(Expect::NamespaceAdded(ns)),
        Confirm::NamespaceUpdated(ns) => Some(Expect::NamespaceUpdated(ns)),
        Confirm::NamespaceRemoved(ns) => Some(Expect::NamespaceRemoved(ns)),
        Confirm::ExitCode => None,
    };
    if let Some(expect) = expect
        && !everest::confirms(expect, out.matchable_stdout())
    {
        let detail = format!(
            "{} exited 0 but did not print the expected confirmation ({expect:?}); \
             the installed everestctl may not support this command",
            program(&out.command)
        );
        return Verdict::Permanent {
            kind: "unconfirmed",
            detail,
        };
    }
    let (output, note) = match step {
        StepName::CreateAccount | StepName::AddNamespace => (json!({"created": true}), "created"),
        StepName::ApplyResourceQuota => (json!({}), "applied"),
        StepName::ApplyRbacPolicy | StepName::RevokeRbac | StepName::RestoreRbac => {
            (json!({"rbac_applied": true}), "applied")
        }
        StepName::SetPassword => (json!({"password_set": true}), "set"),
        StepName::UpdateNamespace => (json!({"updated": true}), "updated"),
        StepName::RemoveNamespace => (json!({"removed": true}), "namespace removed"),
        StepName::DeleteAccount => (json!({"deleted": true}), "account deleted"),
    };
    Verdict::Succeeded {
        output,
        note: note.into(),
    }
}

fn program(command: &str) -> &str {
    command.split_whitespace().next().unwrap_or("the command")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn out(termination: Termination, stdout: &str, stderr: &str) -> ExecOutput {
        ExecOutput {
            command: "everestctl accounts create -u alice -p ********".into(),
            termination,
            stdout: stdout.into(),
            stderr: stderr.into(),
            raw_stdout: None,
            raw_stderr: None,
            duration: Duration::from_secs(3),
        }
    }

    const CREATE: StepName = StepName::CreateAccount;

    fn confirm_alice() -> Confirm {
        Confirm::AccountCreated("alice".into())
    }

    #[test]
    fn success_needs_the_confirmation_line() {
        let ok = out(
            Termination::Exited(0),
            "✅ User 'alice' has been created successfully\n",
            "",
        );
        assert!(matches!(
            judge(CREATE, &confirm_alice(), &ok, false),
            Verdict::Succeeded { .. }
        ));
        let silent = out(Termination::Exited(0), "", "");
        assert!(matches!(
            judge(CREATE, &confirm_alice(), &silent, false),
            Verdict::Permanent {
                kind: "unconfirmed",
                ..
            }
        ));
    }

    #[test]
    fn existing_user_depends_on_earlier_attempts() {
        let exists = out(Termination::Exited(1), "", "❌ user already exists\n");
        let Verdict::Succeeded { output, .. } = judge(CREATE, &confirm_alice(), &exists, false)
        else {
            panic!()
        };
        assert_eq!(output, json!({"existed": true}));
        let Verdict::Succeeded { output, .. } = judge(CREATE, &confirm_alice(), &exists, true)
        else {
            panic!()
        };
        assert_eq!(output, json!({"created": true}));
    }

    #[test]
    fn namespace_rules() {
        let ns = Confirm::NamespaceAdded("alice".into());
        let managed = out(
            Termination::Exited(1),
            "",
            "❌ 'alice': namespace already exists and is managed by Everest\n",
        );
        assert!(matches!(
            judge(StepName::AddNamespace, &ns, &managed, false),
            Verdict::Succeeded { .. }
        ));
        let hint = out(
            Termination::Exited(1),
            "",
            "❌ 'alice': namespace already exists. HINT: set '--take-ownership' flag to use existing namespaces\n",
        );
        let Verdict::Permanent { detail, .. } = judge(StepName::AddNamespace, &ns, &hint, false)
        else {
            panic!()
        };
        assert!(detail.contains("--take-ownership"), "{detail}");
    }

    #[test]
    fn failures_are_classified() {
        let conflict = out(
            Termination::Exited(1),
            "",
            "❌ Operation cannot be fulfilled on secrets \"everest-accounts\": the object has been modified; please apply your changes to the latest version and try again\n",
        );
        assert!(matches!(
            judge(CREATE, &confirm_alice(), &conflict, false),
            Verdict::Transient { .. }
        ));
        let bad = out(
            Termination::Exited(1),
            "",
            "❌ password may contain only letters\n",
        );
        assert!(matches!(
            judge(CREATE, &confirm_alice(), &bad, false),
            Verdict::Permanent { .. }
        ));
        let timeout = out(Termination::TimedOut, "", "");
        let v = judge(CREATE, &confirm_alice(), &timeout, false);
        assert!(matches!(
            v,
            Verdict::Transient {
                kind: "timeout",
                ..
            }
        ));
        assert_eq!(v.outcome(Termination::TimedOut), AttemptOutcome::TimedOut);
        assert_eq!(
            judge(
                CREATE,
                &confirm_alice(),
                &out(Termination::Canceled, "", ""),
                false
            ),
            Verdict::Interrupted
        );
        let Verdict::Transient { detail, .. } = judge(
            CREATE,
            &confirm_alice(),
            &out(Termination::Signaled(9), "", ""),
            false,
        ) else {
            panic!()
        };
        assert!(detail.contains("signal 9"));
    }
}
