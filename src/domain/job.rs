//! Job kinds, statuses and the steps each kind runs.

use serde::{Deserialize, Serialize};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    BootstrapUser,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::BootstrapUser => "bootstrap_user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bootstrap_user" => Some(JobKind::BootstrapUser),
            _ => None,
        }
    }

    /// The steps of this kind, in order.
    pub fn steps(self) -> &'static [StepName] {
        match self {
            JobKind::BootstrapUser => &[
                StepName::CreateAccount,
                StepName::AddNamespace,
                StepName::ApplyResourceQuota,
                StepName::ApplyRbacPolicy,
            ],
        }
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
}

impl StepName {
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::CreateAccount => "create_account",
            StepName::AddNamespace => "add_namespace",
            StepName::ApplyResourceQuota => "apply_resource_quota",
            StepName::ApplyRbacPolicy => "apply_rbac_policy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            StepName::CreateAccount,
            StepName::AddNamespace,
            StepName::ApplyResourceQuota,
            StepName::ApplyRbacPolicy,
        ]
        .into_iter()
        .find(|n| n.as_str() == s)
    }
}

/// Status of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Canceled,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled
        )
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
