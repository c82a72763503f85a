//! What each step of a job runs: the command, its stdin and how success is confirmed.
//!
//! Pure functions of the job's inputs and the configuration, used by the worker to run a step
//! and by the API to preview a plan (`?dry_run=true`).

use serde::Serialize;

use crate::config::{RbacMode, Settings};
use crate::domain::{BootstrapInput, StepName};
use crate::everest::{argv, manifest, rbac};
use crate::exec::CommandSpec;

/// How the output of a successful command is confirmed (a mistyped subcommand exits 0 silently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    AccountCreated(String),
    NamespaceAdded(String),
    /// `kubectl apply` and external commands: the exit code is the only signal.
    ExitCode,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Run one command.
    Run {
        spec: CommandSpec,
        stdin_preview: Option<String>,
        confirm: Confirm,
    },
    /// Write `policy` to a temp file and run the configured command on it.
    ApplyPolicy { policy: String, template: String },
    /// Nothing to run: record `output` as the step's result.
    Record {
        output: serde_json::Value,
        note: String,
    },
}

/// Options that change how commands are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flavor {
    /// The installed everestctl predates `--operator.mysql` (< 1.6).
    pub legacy_mysql_flag: bool,
}

/// Why a step cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the password of this job has expired or was purged; submit a new job")]
    PasswordGone,
}

/// The action of `step` of a bootstrap job.
pub fn bootstrap_action(
    step: StepName,
    input: &BootstrapInput,
    password: Option<&str>,
    settings: &Settings,
    flavor: Flavor,
) -> Result<Action, PlanError> {
    let (user, ns) = (input.username.as_str(), input.namespace.as_str());
    Ok(match step {
        StepName::CreateAccount => {
            let password = password.ok_or(PlanError::PasswordGone)?;
            let args = argv::accounts_create(user, password);
            Action::Run {
                spec: CommandSpec::new(&settings.everestctl_bin, args, settings.subprocess_timeout)
                    .with_secret(password),
                stdin_preview: None,
                confirm: Confirm::AccountCreated(user.to_string()),
            }
        }
        StepName::AddNamespace => {
            let args = argv::namespaces_add(
                ns,
                &input.operators,
                input.take_ownership,
                flavor.legacy_mysql_flag,
            );
            Action::Run {
                spec: CommandSpec::new(&settings.everestctl_bin, args, settings.namespace_timeout),
                stdin_preview: None,
                confirm: Confirm::NamespaceAdded(ns.to_string()),
            }
        }
        StepName::ApplyResourceQuota => {
            let yaml = manifest::quota_manifest(ns, &input.resources);
            Action::Run {
                spec: CommandSpec::new(
                    &settings.kubectl_bin,
                    argv::kubectl_apply(ns),
                    settings.subprocess_timeout,
                )
                .with_stdin(yaml.clone().into_bytes()),
                stdin_preview: Some(yaml),
                confirm: Confirm::ExitCode,
            }
        }
        StepName::ApplyRbacPolicy => {
            let policy = rbac::render_policy(&rbac::user_policy_lines(user, ns));
            match &settings.rbac {
                RbacMode::Command(template) => Action::ApplyPolicy {
                    policy,
                    template: template.clone(),
                },
                RbacMode::Skip => Action::Record {
                    output: serde_json::json!({"rbac_applied": false, "policy_preview": policy}),
                    note: "not applied (RBAC_MODE=skip and no EVEREST_RBAC_APPLY_CMD)".into(),
                },
            }
        }
    })
}

/// The command that applies a policy file: `{file}` in the template is replaced by the path,
/// otherwise `--file <path>` is appended. The template was checked when the config was loaded.
pub fn policy_command(template: &str, file: &str, settings: &Settings) -> CommandSpec {
    let mut words = shell_words::split(template).unwrap_or_default();
    if words.iter().any(|w| w.contains("{file}")) {
        words
            .iter_mut()
            .for_each(|w| *w = w.replace("{file}", file));
    } else {
        words.extend(["--file".to_string(), file.to_string()]);
    }
    let program = if words.is_empty() {
        String::new()
    } else {
        words.remove(0)
    };
    CommandSpec::new(program, words, settings.subprocess_timeout)
}

/// One step of a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct StepPreview {
    pub name: &'static str,
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_preview: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_preview: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The steps of a bootstrap job as they would run, with redacted command lines.
pub fn preview_bootstrap(input: &BootstrapInput, settings: &Settings) -> Vec<StepPreview> {
    crate::domain::JobKind::BootstrapUser
        .steps()
        .iter()
        .map(|&step| {
            // The placeholder is redacted like a real password would be.
            let action =
                bootstrap_action(step, input, Some("********"), settings, Flavor::default())
                    .expect("a password is given");
            preview(step, action, settings)
        })
        .collect()
}

fn preview(step: StepName, action: Action, settings: &Settings) -> StepPreview {
    let mut p = StepPreview {
        name: step.as_str(),
        command: None,
        manifest_preview: None,
        policy_preview: None,
        note: None,
    };
    match action {
        Action::Run {
            spec,
            stdin_preview,
            ..
        } => {
            p.command = Some(spec.display());
            p.manifest_preview = stdin_preview;
        }
        Action::ApplyPolicy { policy, template } => {
            p.command = Some(policy_command(&template, "<policy-file>", settings).display());
            p.policy_preview = Some(policy);
        }
        Action::Record { output, note } => {
            p.policy_preview = output["policy_preview"].as_str().map(String::from);
            p.note = Some(note);
        }
    }
    p
}

/// The resource locks a step takes while its command runs: the accounts Secret and the RBAC
/// ConfigMap are read-modify-write, and Helm refuses concurrent operations on one release.
pub fn locks(step: StepName, input: &BootstrapInput, action: &Action) -> Vec<String> {
    match (step, action) {
        (_, Action::Record { .. }) => Vec::new(),
        (StepName::CreateAccount, _) => vec![ACCOUNTS_LOCK.to_string()],
        (StepName::AddNamespace | StepName::ApplyResourceQuota, _) => {
            vec![namespace_lock(&input.namespace)]
        }
        (StepName::ApplyRbacPolicy, _) => vec![RBAC_LOCK.to_string()],
    }
}

/// Lock of the `everest-accounts` Secret.
pub const ACCOUNTS_LOCK: &str = "everest-accounts";
/// Lock of the `everest-rbac` ConfigMap (or of the external RBAC command).
pub const RBAC_LOCK: &str = "everest-rbac";

/// Lock of everything that changes namespace `ns`.
pub fn namespace_lock(ns: &str) -> String {
    format!("namespace:{ns}")
}
