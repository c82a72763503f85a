//! What each step of a job runs: the command, its stdin, how success is confirmed and which
//! resource locks it takes.
//!
//! Pure functions of the job's inputs and the configuration, used by the worker to run a step
//! and by the API to preview a plan (`?dry_run=true`).

use serde::Serialize;
use serde_json::json;

use crate::config::{RbacMode, Settings};
use crate::domain::{JobInput, Plan, StepName};
use crate::everest::{argv, manifest, rbac};
use crate::exec::CommandSpec;

/// How the output of a successful command is confirmed (a mistyped subcommand exits 0 silently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    AccountCreated(String),
    PasswordSet(String),
    AccountDeleted(String),
    NamespaceAdded(String),
    NamespaceUpdated(String),
    NamespaceRemoved(String),
    /// `kubectl apply` and external commands: the exit code is the only signal.
    ExitCode,
}

/// A change of Everest's RBAC policy in the `everest-rbac` ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RbacChange {
    /// Add these lines where missing (bootstrap).
    Add(Vec<String>),
    /// Remove the user's bindings and the rules of roles only they held (suspend, delete).
    Revoke(String),
    /// Put back exactly these lines (resume).
    Restore(Vec<String>),
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
    /// Run one command, but only if `namespace` is managed by Everest (checked with kubectl).
    RunInManagedNamespace {
        namespace: String,
        spec: CommandSpec,
        stdin_preview: Option<String>,
    },
    /// Write `policy` to a temp file and run the configured command on it.
    ApplyPolicy { policy: String, template: String },
    /// Read, edit, validate and write back the RBAC ConfigMap.
    ConfigMap(RbacChange),
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
    #[error("{0} works through Everest RBAC and needs RBAC_MODE=configmap")]
    RbacUnavailable(&'static str),
    #[error("step {step} does not belong to a {kind} job")]
    Mismatch {
        step: &'static str,
        kind: &'static str,
    },
}

/// The action of `step` of a job with `input`; `password` is the job's secret, if it has one.
pub fn action(
    step: StepName,
    input: &JobInput,
    password: Option<&str>,
    settings: &Settings,
    flavor: Flavor,
) -> Result<Action, PlanError> {
    let everestctl =
        |args: Vec<String>, timeout| CommandSpec::new(&settings.everestctl_bin, args, timeout);
    let run = |spec: CommandSpec, confirm: Confirm| Action::Run {
        spec,
        stdin_preview: None,
        confirm,
    };
    let (short, long) = (settings.subprocess_timeout, settings.namespace_timeout);
    Ok(match (step, input) {
        (StepName::CreateAccount, JobInput::Bootstrap(i)) => {
            let password = password.ok_or(PlanError::PasswordGone)?;
            let spec = everestctl(argv::accounts_create(&i.username, password), short)
                .with_secret(password);
            run(spec, Confirm::AccountCreated(i.username.clone()))
        }
        (StepName::AddNamespace, JobInput::Bootstrap(i)) => {
            let args = argv::namespaces_add(
                &i.namespace,
                &i.operators,
                i.take_ownership,
                flavor.legacy_mysql_flag,
            );
            run(
                everestctl(args, long),
                Confirm::NamespaceAdded(i.namespace.clone()),
            )
        }
        (StepName::ApplyResourceQuota, JobInput::Bootstrap(i)) => {
            let (spec, yaml) = quota(settings, &i.namespace, &i.resources);
            Action::Run {
                spec,
                stdin_preview: Some(yaml),
                confirm: Confirm::ExitCode,
            }
        }
        (StepName::ApplyResourceQuota, JobInput::UpdateResources(i)) => {
            let (spec, yaml) = quota(settings, &i.namespace, &i.resources);
            Action::RunInManagedNamespace {
                namespace: i.namespace.clone(),
                spec,
                stdin_preview: Some(yaml),
            }
        }
        (StepName::ApplyRbacPolicy, JobInput::Bootstrap(i)) => {
            let lines = rbac::user_policy_lines(&i.username, &i.namespace);
            match &settings.rbac {
                RbacMode::ConfigMap => Action::ConfigMap(RbacChange::Add(lines)),
                RbacMode::Command(template) => Action::ApplyPolicy {
                    policy: rbac::render_policy(&lines),
                    template: template.clone(),
                },
                RbacMode::Skip => Action::Record {
                    output: json!({"rbac_applied": false, "policy_preview": rbac::render_policy(&lines)}),
                    note: "not applied (RBAC_MODE=skip)".into(),
                },
            }
        }
        (StepName::SetPassword, JobInput::SetPassword(i)) => {
            let password = password.ok_or(PlanError::PasswordGone)?;
            let spec = everestctl(argv::accounts_set_password(&i.username, password), short)
                .with_secret(password);
            run(spec, Confirm::PasswordSet(i.username.clone()))
        }
        (StepName::UpdateNamespace, JobInput::AddOperators(i)) => {
            let args =
                argv::namespaces_update(&i.namespace, &i.operators, flavor.legacy_mysql_flag);
            run(
                everestctl(args, long),
                Confirm::NamespaceUpdated(i.namespace.clone()),
            )
        }
        (StepName::RevokeRbac, JobInput::Suspend(i)) => match settings.rbac {
            RbacMode::ConfigMap => Action::ConfigMap(RbacChange::Revoke(i.username.clone())),
            _ => return Err(PlanError::RbacUnavailable("suspending a user")),
        },
        (StepName::RestoreRbac, JobInput::Resume(i)) => match settings.rbac {
            RbacMode::ConfigMap => Action::ConfigMap(RbacChange::Restore(i.restore_lines.clone())),
            _ => return Err(PlanError::RbacUnavailable("resuming a user")),
        },
        (StepName::RevokeRbac, JobInput::Delete(i)) => match settings.rbac {
            RbacMode::ConfigMap => Action::ConfigMap(RbacChange::Revoke(i.username.clone())),
            _ => Action::Record {
                output: json!({"rbac_applied": false}),
                note: "RBAC policy not changed (needs RBAC_MODE=configmap)".into(),
            },
        },
        (StepName::RemoveNamespace, JobInput::Delete(i)) => {
            let args = argv::namespaces_remove(&i.namespace, i.keep_namespace, i.force);
            run(
                everestctl(args, long),
                Confirm::NamespaceRemoved(i.namespace.clone()),
            )
        }
        (StepName::DeleteAccount, JobInput::Delete(i)) => run(
            everestctl(argv::accounts_delete(&i.username), short),
            Confirm::AccountDeleted(i.username.clone()),
        ),
        (step, input) => {
            return Err(PlanError::Mismatch {
                step: step.as_str(),
                kind: kind_of(input),
            });
        }
    })
}

fn kind_of(input: &JobInput) -> &'static str {
    match input {
        JobInput::Bootstrap(_) => "bootstrap_user",
        JobInput::SetPassword(_) => "set_password",
        JobInput::UpdateResources(_) => "update_resources",
        JobInput::AddOperators(_) => "add_operators",
        JobInput::Suspend(_) => "suspend_user",
        JobInput::Resume(_) => "resume_user",
        JobInput::Delete(_) => "delete_user",
    }
}

fn quota(
    settings: &Settings,
    ns: &str,
    resources: &crate::domain::Resources,
) -> (CommandSpec, String) {
    let yaml = manifest::quota_manifest(ns, resources);
    let spec = CommandSpec::new(
        &settings.kubectl_bin,
        argv::kubectl_apply(ns),
        settings.subprocess_timeout,
    )
    .with_stdin(yaml.clone().into_bytes());
    (spec, yaml)
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

/// The commands of a ConfigMap change, for display.
pub fn configmap_commands(settings: &Settings, policy_file: &str) -> String {
    let get = CommandSpec::new(
        &settings.kubectl_bin,
        argv::kubectl_get_rbac_configmap(),
        settings.subprocess_timeout,
    );
    let validate = CommandSpec::new(
        &settings.everestctl_bin,
        argv::rbac_validate(policy_file),
        settings.subprocess_timeout,
    );
    let replace = CommandSpec::new(
        &settings.kubectl_bin,
        argv::kubectl_replace_stdin(),
        settings.subprocess_timeout,
    );
    format!(
        "{} && {} && {}",
        get.display(),
        validate.display(),
        replace.display()
    )
}

/// Lock of the `everest-accounts` Secret.
pub const ACCOUNTS_LOCK: &str = "everest-accounts";
/// Lock of the `everest-rbac` ConfigMap (or of the external RBAC command).
pub const RBAC_LOCK: &str = "everest-rbac";

/// Lock of everything that changes namespace `ns`.
pub fn namespace_lock(ns: &str) -> String {
    format!("namespace:{ns}")
}

/// The resource locks a step takes while its command runs: the accounts Secret and the RBAC
/// ConfigMap are read-modify-write, and Helm refuses concurrent operations on one release.
pub fn locks(step: StepName, input: &JobInput, action: &Action) -> Vec<String> {
    if let Action::Record { .. } = action {
        return Vec::new();
    }
    match step {
        StepName::CreateAccount | StepName::SetPassword | StepName::DeleteAccount => {
            vec![ACCOUNTS_LOCK.to_string()]
        }
        StepName::AddNamespace
        | StepName::ApplyResourceQuota
        | StepName::UpdateNamespace
        | StepName::RemoveNamespace => input.namespace().map(namespace_lock).into_iter().collect(),
        StepName::ApplyRbacPolicy | StepName::RevokeRbac | StepName::RestoreRbac => {
            vec![RBAC_LOCK.to_string()]
        }
    }
}

/// What the job is doing, for `summary` while it runs.
pub fn describe(step: StepName, input: &JobInput) -> String {
    let user = input.username().unwrap_or_default();
    let ns = input.namespace().unwrap_or_default();
    match step {
        StepName::CreateAccount => format!("creating account {user}"),
        StepName::AddNamespace => format!("creating namespace {ns}"),
        StepName::ApplyResourceQuota => format!("applying resource quota to {ns}"),
        StepName::ApplyRbacPolicy => format!("applying RBAC policy for {user}"),
        StepName::SetPassword => format!("setting the password of {user}"),
        StepName::UpdateNamespace => format!("updating the operators of {ns}"),
        StepName::RevokeRbac => format!("removing the RBAC policy of {user}"),
        StepName::RestoreRbac => format!("restoring the RBAC policy of {user}"),
        StepName::RemoveNamespace => format!("removing namespace {ns}"),
        StepName::DeleteAccount => format!("deleting account {user}"),
    }
}

/// The summary of a finished job, from the notes its steps left (`None` for a step without one).
pub fn summary(input: &JobInput, notes: &[Option<String>]) -> String {
    let note = |i: usize, default: &str| {
        notes
            .get(i)
            .cloned()
            .flatten()
            .unwrap_or_else(|| default.into())
    };
    match input {
        JobInput::Bootstrap(i) => format!(
            "User {} {}; namespace {} {}; quota {}; RBAC {}.",
            i.username,
            note(0, "created"),
            i.namespace,
            note(1, "created"),
            note(2, "applied"),
            note(3, "applied")
        ),
        JobInput::SetPassword(i) => format!("Password of {} set.", i.username),
        JobInput::UpdateResources(i) => format!(
            "Quota and limits of namespace {} {}.",
            i.namespace,
            note(0, "applied")
        ),
        JobInput::AddOperators(i) => format!(
            "Operators of namespace {} {}.",
            i.namespace,
            note(0, "updated")
        ),
        JobInput::Suspend(i) => format!(
            "User {} suspended: RBAC {}.",
            i.username,
            note(0, "revoked")
        ),
        JobInput::Resume(i) => {
            format!("User {} resumed: RBAC {}.", i.username, note(0, "restored"))
        }
        JobInput::Delete(i) => {
            let parts: Vec<String> = notes.iter().flatten().cloned().collect();
            format!("User {} deleted: {}.", i.username, parts.join("; "))
        }
    }
}

/// One step of a dry run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

/// The steps of a plan as they would run, with redacted command lines.
pub fn preview(plan: &Plan, settings: &Settings) -> Vec<StepPreview> {
    let Ok(input) = JobInput::decode(plan.kind.as_str(), &plan.inputs.to_string()) else {
        return Vec::new();
    };
    plan.steps()
        .iter()
        .map(|&step| {
            let mut p = StepPreview {
                name: step.as_str(),
                command: None,
                manifest_preview: None,
                policy_preview: None,
                note: None,
            };
            // The placeholder is redacted like a real password would be.
            match action(step, &input, Some("********"), settings, Flavor::default()) {
                Ok(action) => describe_action(&mut p, action, settings),
                Err(e) => p.note = Some(e.to_string()),
            }
            p
        })
        .collect()
}

fn describe_action(p: &mut StepPreview, action: Action, settings: &Settings) {
    match action {
        Action::Run {
            spec,
            stdin_preview,
            ..
        } => {
            p.command = Some(spec.display());
            p.manifest_preview = stdin_preview;
        }
        Action::RunInManagedNamespace {
            namespace,
            spec,
            stdin_preview,
        } => {
            p.command = Some(spec.display());
            p.manifest_preview = stdin_preview;
            p.note = Some(format!(
                "runs only if namespace {namespace} is managed by Everest"
            ));
        }
        Action::ApplyPolicy { policy, template } => {
            p.command = Some(policy_command(&template, "<policy-file>", settings).display());
            p.policy_preview = Some(policy);
        }
        Action::ConfigMap(change) => {
            p.command = Some(configmap_commands(settings, "<candidate-policy-file>"));
            match change {
                RbacChange::Add(lines) | RbacChange::Restore(lines) => {
                    p.policy_preview = Some(rbac::render_policy(&lines));
                    p.note = Some("lines already in the policy are not added again".into());
                }
                RbacChange::Revoke(user) => {
                    p.note = Some(format!(
                        "removes every `g, {user}, …` binding and the rules of roles only {user} held"
                    ));
                }
            }
        }
        Action::Record { output, note } => {
            p.policy_preview = output["policy_preview"].as_str().map(String::from);
            p.note = Some(note);
        }
    }
}
