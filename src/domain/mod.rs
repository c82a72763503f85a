//! Validated domain types: names, secrets, job kinds, their inputs and the plan of steps.
//! Nothing here does I/O.

mod bootstrap;
mod input;
mod job;
mod lifecycle;
mod names;
mod object;
mod resources;
mod state;

pub use bootstrap::{
    BootstrapInput, BootstrapRequest, OperatorsRequest, ResourcesRequest, Rules,
    effective_namespace,
};
pub use input::JobInput;
pub use job::{JobError, JobKind, StepName};
pub use lifecycle::{
    AddOperatorsInput, AddOperatorsRequest, DeleteUserInput, DeleteUserRequest, ResumeInput,
    SetPasswordInput, SetPasswordRequest, SuspendInput, UpdateResourcesInput,
    UpdateResourcesRequest, UserRequest, resume_plan,
};
pub use names::{Namespace, NamespacePolicy, Password, Username};
pub use resources::{Operators, Resources};
pub use state::{AttemptOutcome, ErrorKind, JobStatus, StepStatus};

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A validated job, ready to be stored: its kind, resolved inputs (no secrets) and secret.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: JobKind,
    pub username: Option<String>,
    pub namespace: Option<String>,
    pub inputs: serde_json::Value,
    /// The steps, in order.
    pub steps: Vec<StepName>,
    pub password: Option<Password>,
    /// True when the service generated the password (it is then returned once via the result).
    pub password_generated: bool,
}

impl Plan {
    pub fn steps(&self) -> &[StepName] {
        &self.steps
    }
}

#[cfg(test)]
mod tests;
