//! The stored inputs of a job, decoded by its kind.

use super::{
    AddOperatorsInput, BootstrapInput, DeleteUserInput, JobKind, ResumeInput, SetPasswordInput,
    SuspendInput, UpdateResourcesInput,
};

/// The inputs of any job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobInput {
    Bootstrap(BootstrapInput),
    SetPassword(SetPasswordInput),
    UpdateResources(UpdateResourcesInput),
    AddOperators(AddOperatorsInput),
    Suspend(SuspendInput),
    Resume(ResumeInput),
    Delete(DeleteUserInput),
}

impl JobInput {
    /// Decodes the stored JSON inputs of a job of `kind`.
    pub fn decode(kind: &str, json: &str) -> Result<Self, String> {
        let kind = JobKind::parse(kind).ok_or_else(|| format!("unknown job kind {kind:?}"))?;
        let err = |e: serde_json::Error| {
            format!("stored inputs of {} are unreadable: {e}", kind.as_str())
        };
        Ok(match kind {
            JobKind::BootstrapUser => JobInput::Bootstrap(serde_json::from_str(json).map_err(err)?),
            JobKind::SetPassword => JobInput::SetPassword(serde_json::from_str(json).map_err(err)?),
            JobKind::UpdateResources => {
                JobInput::UpdateResources(serde_json::from_str(json).map_err(err)?)
            }
            JobKind::AddOperators => {
                JobInput::AddOperators(serde_json::from_str(json).map_err(err)?)
            }
            JobKind::SuspendUser => JobInput::Suspend(serde_json::from_str(json).map_err(err)?),
            JobKind::ResumeUser => JobInput::Resume(serde_json::from_str(json).map_err(err)?),
            JobKind::DeleteUser => JobInput::Delete(serde_json::from_str(json).map_err(err)?),
        })
    }

    /// The account this job is about, if any.
    pub fn username(&self) -> Option<&str> {
        match self {
            JobInput::Bootstrap(i) => Some(&i.username),
            JobInput::SetPassword(i) => Some(&i.username),
            JobInput::Suspend(i) => Some(&i.username),
            JobInput::Resume(i) => Some(&i.username),
            JobInput::Delete(i) => Some(&i.username),
            JobInput::UpdateResources(_) | JobInput::AddOperators(_) => None,
        }
    }

    /// The namespace this job is about, if any.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            JobInput::Bootstrap(i) => Some(&i.namespace),
            JobInput::UpdateResources(i) => Some(&i.namespace),
            JobInput::AddOperators(i) => Some(&i.namespace),
            JobInput::Delete(i) => Some(&i.namespace),
            JobInput::SetPassword(_) | JobInput::Suspend(_) | JobInput::Resume(_) => None,
        }
    }
}
