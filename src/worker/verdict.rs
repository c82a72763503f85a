//! What a finished command means for its step: success (possibly "already existed"), a
//! transient failure worth retrying, or a permanent one. Pure, so it is tested on its own.

use serde_json::{Value, json};

use crate::domain::StepName;
use crate::everest::{self, Expect, Retry, classify};
use crate::exec::{ExecOutput, Termination};
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
    pub fn outcome(&self, termination: Termination) -> &'static str {
        match (self, termination) {
            (Verdict::Interrupted, _) => "interrupted",
            (_, Termination::TimedOut) => "timed_out",
            (Verdict::Succeeded { .. }, _) => "succeeded",
            _ => "failed",
        }
    }

    pub fn error_kind(&self) -> Option<String> {
        match self {
            Verdict::Transient { .. } => Some("transient".into()),
            Verdict::Permanent { kind, .. } => Some(format!("permanent:{kind}")),
            _ => None,
        }
    }
}

/// Judges a command's result. `may_have_run` tells whether an earlier attempt of this step in
/// this job may already have changed the cluster (interrupted, timed out, transient failure).
pub fn judge(step: StepName, confirm: &Confirm, out: &ExecOutput, may_have_run: bool) -> Verdict {
    let code = match out.termination {
        Termination::Canceled => return Verdict::Interrupted,
        Termination::TimedOut => {
            let detail = format!(
                "timed out after {:.0}s: {}",
                out.duration.as_secs_f64(),
                out.command
            );
            return Verdict::Transient {
                kind: "timeout",
                detail,
            };
        }
        Termination::Signaled(sig) => {
            let detail = format!("{} was killed by signal {sig}", program(&out.command));
            return Verdict::Transient {
                kind: "cli_failed",
                detail,
            };
        }
        Termination::Exited(code) => code,
    };
    if code == 0 {
        return confirmed(step, confirm, out);
    }
    let message = everest::error_message(&out.stdout, &out.stderr, Some(code));
    match step {
        StepName::CreateAccount if classify::is_user_already_exists(&message) => {
            if may_have_run {
                // An earlier attempt of this very job may have created it before being cut off.
                let note = "created (an earlier interrupted attempt of this job created it)".into();
                return Verdict::Succeeded {
                    output: json!({"created": true}),
                    note,
                };
            }
            let note = "already existed (password unchanged)".into();
            return Verdict::Succeeded {
                output: json!({"existed": true}),
                note,
            };
        }
        StepName::AddNamespace if classify::is_namespace_managed_exists(&message) => {
            let note = "already existed and is managed by Everest".into();
            return Verdict::Succeeded {
                output: json!({"existed": true}),
                note,
            };
        }
        _ => {}
    }
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

fn confirmed(step: StepName, confirm: &Confirm, out: &ExecOutput) -> Verdict {
    let expect = match confirm {
        Confirm::AccountCreated(u) => Some(Expect::AccountCreated(u)),
        Confirm::NamespaceAdded(ns) => Some(Expect::NamespaceAdded(ns)),
        Confirm::ExitCode => None,
    };
    if let Some(expect) = expect
        && !everest::confirms(expect, &out.stdout)
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
        StepName::CreateAccount | StepName::AddNamespace => {
            (json!({"created": true}), "created".into())
        }
        StepName::ApplyResourceQuota => (json!({}), "applied".into()),
        StepName::ApplyRbacPolicy => (json!({"rbac_applied": true}), "applied".into()),
    };
    Verdict::Succeeded { output, note }
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
        assert_eq!(v.outcome(Termination::TimedOut), "timed_out");
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
