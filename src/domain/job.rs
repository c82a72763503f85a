//! Job kinds, statuses and the steps each kind runs.

use serde::{Deserialize, Serialize};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    BootstrapUser,
    SetPassword,
    UpdateResources,
    AddOperators,
    SuspendUser,
    ResumeUser,
    DeleteUser,
}

impl JobKind {
    pub const ALL: [JobKind; 7] = [
        JobKind::BootstrapUser,
        JobKind::SetPassword,
        JobKind::UpdateResources,
        JobKind::AddOperators,
        JobKind::SuspendUser,
        JobKind::ResumeUser,
        JobKind::DeleteUser,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::BootstrapUser => "bootstrap_user",
            JobKind::SetPassword => "set_password",
            JobKind::UpdateResources => "update_resources",
            JobKind::AddOperators => "add_operators",
            JobKind::SuspendUser => "suspend_user",
            JobKind::ResumeUser => "resume_user",
            JobKind::DeleteUser => "delete_user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One step of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepName {
    CreateAccount,
    AddNamespace,
    ApplyResourceQuota,
    ApplyRbacPolicy,
    SetPassword,
    UpdateNamespace,
    RevokeRbac,
    RestoreRbac,
    RemoveNamespace,
    DeleteAccount,
}

impl StepName {
    const ALL: [StepName; 10] = [
        StepName::CreateAccount,
        StepName::AddNamespace,
        StepName::ApplyResourceQuota,
        StepName::ApplyRbacPolicy,
        StepName::SetPassword,
        StepName::UpdateNamespace,
        StepName::RevokeRbac,
        StepName::RestoreRbac,
        StepName::RemoveNamespace,
        StepName::DeleteAccount,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepName::CreateAccount => "create_account",
            StepName::AddNamespace => "add_namespace",
            StepName::ApplyResourceQuota => "apply_resource_quota",
            StepName::ApplyRbacPolicy => "apply_rbac_policy",
            StepName::SetPassword => "set_password",
            StepName::UpdateNamespace => "update_namespace",
            StepName::RevokeRbac => "revoke_rbac",
            StepName::RestoreRbac => "restore_rbac",
            StepName::RemoveNamespace => "remove_namespace",
            StepName::DeleteAccount => "delete_account",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

/// The failure recorded on a failed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub step: String,
    /// `cli_failed`, `timeout`, `not_found`, `attempts_exhausted`, `interrupted`, `internal`.
    pub kind: String,
    pub detail: String,
}
