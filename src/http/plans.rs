//! The plan of each kind of job request, from its JSON body: the one path by which the JSON
//! routes' rules that go beyond the domain's validation (suspension needs the RBAC ConfigMap, a
//! resumption needs a suspension) are applied, and the one the dashboard's forms take.

use super::{ApiError, AppState, extract};
use crate::config::RbacMode;
use crate::domain::{
    AddOperatorsRequest, BootstrapRequest, DeleteUserRequest, JobKind, Plan, SetPasswordRequest,
    UpdateResourcesRequest, UserRequest, resume_plan,
};

/// Validates the JSON body of a request for a job of `kind` into its plan.
pub async fn plan(state: &AppState, kind: JobKind, raw: &[u8]) -> Result<Plan, ApiError> {
    let rules = &state.rules;
    match kind {
        JobKind::BootstrapUser => {
            validated(extract::parse::<BootstrapRequest>(raw)?.validate(rules))
        }
        JobKind::SetPassword => validated(extract::parse::<SetPasswordRequest>(raw)?.validate()),
        JobKind::UpdateResources => {
            validated(extract::parse::<UpdateResourcesRequest>(raw)?.validate(rules))
        }
        JobKind::AddOperators => {
            validated(extract::parse::<AddOperatorsRequest>(raw)?.validate(rules))
        }
        JobKind::SuspendUser => suspend(state, extract::parse(raw)?),
        JobKind::ResumeUser => resume(state, extract::parse(raw)?).await,
        JobKind::DeleteUser => validated(extract::parse::<DeleteUserRequest>(raw)?.validate(rules)),
    }
}

fn validated(result: Result<Plan, Vec<crate::domain::FieldError>>) -> Result<Plan, ApiError> {
    result.map_err(ApiError::Validation)
}

/// The route of the JSON API that submits jobs of `kind` (idempotency keys are hashed with it).
pub fn route(kind: JobKind) -> &'static str {
    match kind {
        JobKind::BootstrapUser => "POST /bootstrap/users",
        JobKind::SetPassword => "POST /accounts/password",
        JobKind::UpdateResources => "POST /namespaces/resources",
        JobKind::AddOperators => "POST /namespaces/operators",
        JobKind::SuspendUser => "POST /accounts/suspend",
        JobKind::ResumeUser => "POST /accounts/resume",
        JobKind::DeleteUser => "POST /accounts/delete",
    }
}

/// A suspension of the user.
pub fn suspend(state: &AppState, req: UserRequest) -> Result<Plan, ApiError> {
    let plan = req.suspend().map_err(ApiError::Validation)?;
    require_rbac_configmap(state, "suspending a user")?;
    Ok(plan)
}

/// A resumption of the user: puts back what its latest successful suspension removed.
pub async fn resume(state: &AppState, req: UserRequest) -> Result<Plan, ApiError> {
    let username = req.username().map_err(ApiError::Validation)?;
    require_rbac_configmap(state, "resuming a user")?;
    let Some((suspend_job, lines)) = state.store.latest_suspension(username.as_str()).await? else {
        return Err(ApiError::Conflict {
            code: "not_suspended",
            detail: format!(
                "no successful suspension of {} to resume",
                username.as_str()
            ),
        });
    };
    Ok(resume_plan(&username, lines, suspend_job))
}

/// Suspension and resumption only exist as RBAC edits (Everest has no CLI to disable an
/// account), so they are refused up front when this service does not edit the RBAC ConfigMap.
fn require_rbac_configmap(state: &AppState, what: &str) -> Result<(), ApiError> {
    if state.settings.rbac == RbacMode::ConfigMap {
        return Ok(());
    }
    Err(ApiError::Conflict {
        code: "rbac_unavailable",
        detail: format!(
            "{what} works through Everest RBAC and needs RBAC_MODE=configmap (without EVEREST_RBAC_APPLY_CMD)"
        ),
    })
}
