//! The requests that change an existing tenant: password, resources, operators, suspension
//! and deletion. Each validates into a [`Plan`] whose inputs never hold a secret.

use serde::{Deserialize, Serialize};

use super::{
    FieldError, JobKind, Operators, OperatorsRequest, Password, Plan, Resources, ResourcesRequest,
    Rules, StepName, Username, effective_namespace,
};

/// Body of `POST /accounts/password`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPasswordRequest {
    pub username: String,
    #[serde(default)]
    pub new_password: Option<String>,
}

/// Body of `POST /namespaces/resources`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateResourcesRequest {
    pub namespace: String,
    pub resources: ResourcesRequest,
}

/// Body of `POST /namespaces/operators`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddOperatorsRequest {
    pub namespace: String,
    pub operators: OperatorsRequest,
}

/// Body of `POST /accounts/suspend` and `POST /accounts/resume`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    pub username: String,
}

/// Body of `POST /accounts/delete`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteUserRequest {
    pub username: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub remove_namespace: Option<bool>,
    #[serde(default)]
    pub keep_namespace: Option<bool>,
    #[serde(default)]
    pub force: Option<bool>,
}

/// Stored inputs of `set_password`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPasswordInput {
    pub username: String,
}

/// Stored inputs of `update_resources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateResourcesInput {
    pub namespace: String,
    pub resources: Resources,
}

/// Stored inputs of `add_operators`: the requested operators are `true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddOperatorsInput {
    pub namespace: String,
    pub operators: Operators,
}

/// Stored inputs of `suspend_user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspendInput {
    pub username: String,
}

/// Stored inputs of `resume_user`: the policy lines to put back, from the latest suspension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeInput {
    pub username: String,
    pub restore_lines: Vec<String>,
    /// The suspend job the lines come from.
    pub suspended_by_job: String,
}

/// Stored inputs of `delete_user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteUserInput {
    pub username: String,
    pub namespace: String,
    pub remove_namespace: bool,
    pub keep_namespace: bool,
    pub force: bool,
}

fn user(errors: &mut Vec<FieldError>, username: &str) -> Option<Username> {
    Username::parse_mutable(username)
        .map_err(|e| errors.push(FieldError::new("username", e)))
        .ok()
}

fn namespace(errors: &mut Vec<FieldError>, rules: &Rules, ns: &str) -> Option<String> {
    match rules.namespaces.parse(ns) {
        Ok(ns) => Some(ns.as_str().to_string()),
        Err(e) => {
            errors.push(FieldError::new("namespace", e));
            None
        }
    }
}

fn plan<T: Serialize>(
    kind: JobKind,
    input: &T,
    username: Option<&str>,
    namespace: Option<&str>,
    steps: Vec<StepName>,
) -> Plan {
    Plan {
        kind,
        username: username.map(String::from),
        namespace: namespace.map(String::from),
        inputs: serde_json::to_value(input).expect("inputs serialize"),
        steps,
        password: None,
        password_generated: false,
    }
}

impl SetPasswordRequest {
    pub fn validate(self) -> Result<Plan, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = user(&mut errors, &self.username);
        let password = match self.new_password.as_deref() {
            None => None,
            Some(p) => Password::parse(p)
                .map_err(|e| errors.push(FieldError::new("new_password", e)))
                .ok(),
        };
        let (Some(name), true) = (name, errors.is_empty()) else {
            return Err(errors);
        };
        let input = SetPasswordInput {
            username: name.as_str().to_string(),
        };
        let mut plan = plan(
            JobKind::SetPassword,
            &input,
            Some(name.as_str()),
            None,
            vec![StepName::SetPassword],
        );
        plan.password_generated = password.is_none();
        plan.password = Some(password.unwrap_or_else(Password::generate));
        Ok(plan)
    }
}

impl UpdateResourcesRequest {
    pub fn validate(self, rules: &Rules) -> Result<Plan, Vec<FieldError>> {
        let mut errors = Vec::new();
        let ns = namespace(&mut errors, rules, &self.namespace);
        // An update states every quota: a missing value must not silently fall back to a default.
        for (field, value) in [
            ("cpu_cores", self.resources.cpu_cores),
            ("ram_mb", self.resources.ram_mb),
            ("disk_gb", self.resources.disk_gb),
        ] {
            if value.is_none() {
                errors.push(FieldError::new(
                    format!("resources.{field}"),
                    "is required when updating resources",
                ));
            }
        }
        let resources = self.resources.resolve("resources", &mut errors);
        let (Some(ns), true) = (ns, errors.is_empty()) else {
            return Err(errors);
        };
        let input = UpdateResourcesInput {
            namespace: ns.clone(),
            resources,
        };
        Ok(plan(
            JobKind::UpdateResources,
            &input,
            None,
            Some(&ns),
            vec![StepName::ApplyResourceQuota],
        ))
    }
}

impl AddOperatorsRequest {
    pub fn validate(self, rules: &Rules) -> Result<Plan, Vec<FieldError>> {
        let mut errors = Vec::new();
        let ns = namespace(&mut errors, rules, &self.namespace);
        let none = Operators {
            mongodb: false,
            postgresql: false,
            mysql: false,
        };
        let operators = self.operators.resolve(none, &mut errors);
        if operators == none {
            errors.push(FieldError::new(
                "operators",
                "request at least one operator (operators cannot be removed)",
            ));
        }
        let (Some(ns), true) = (ns, errors.is_empty()) else {
            return Err(errors);
        };
        let input = AddOperatorsInput {
            namespace: ns.clone(),
            operators,
        };
        Ok(plan(
            JobKind::AddOperators,
            &input,
            None,
            Some(&ns),
            vec![StepName::UpdateNamespace],
        ))
    }
}

impl UserRequest {
    /// A suspension of this user.
    pub fn suspend(self) -> Result<Plan, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = user(&mut errors, &self.username).ok_or(errors)?;
        let input = SuspendInput {
            username: name.as_str().to_string(),
        };
        Ok(plan(
            JobKind::SuspendUser,
            &input,
            Some(name.as_str()),
            None,
            vec![StepName::RevokeRbac],
        ))
    }

    /// The validated username, for a resume (whose lines the caller looks up).
    pub fn username(&self) -> Result<Username, Vec<FieldError>> {
        let mut errors = Vec::new();
        user(&mut errors, &self.username).ok_or(errors)
    }
}

/// A resume that puts back `lines`, removed by suspend job `suspend_job`.
pub fn resume_plan(username: &Username, lines: Vec<String>, suspend_job: String) -> Plan {
    let input = ResumeInput {
        username: username.as_str().to_string(),
        restore_lines: lines,
        suspended_by_job: suspend_job,
    };
    plan(
        JobKind::ResumeUser,
        &input,
        Some(username.as_str()),
        None,
        vec![StepName::RestoreRbac],
    )
}

impl DeleteUserRequest {
    pub fn validate(self, rules: &Rules) -> Result<Plan, Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.namespace.as_deref() == Some("") {
            errors.push(FieldError::new("namespace", "must not be empty"));
        }
        let name = user(&mut errors, &self.username);
        let ns = match self.namespace.as_deref() {
            Some("") => None,
            requested => {
                effective_namespace(requested, &self.username, &rules.namespaces, &mut errors)
            }
        };
        let remove_namespace = self.remove_namespace.unwrap_or(true);
        let keep_namespace = self.keep_namespace.unwrap_or(false);
        let force = self.force.unwrap_or(false);
        if !remove_namespace && (keep_namespace || force) {
            errors.push(FieldError::new(
                "remove_namespace",
                "keep_namespace and force only apply when the namespace is removed",
            ));
        }
        let (Some(name), Some(ns), true) = (name, ns, errors.is_empty()) else {
            return Err(errors);
        };
        let input = DeleteUserInput {
            username: name.as_str().to_string(),
            namespace: ns.clone(),
            remove_namespace,
            keep_namespace,
            force,
        };
        let mut steps = Vec::new();
        if remove_namespace {
            steps.push(StepName::RemoveNamespace);
        }
        steps.extend([StepName::RevokeRbac, StepName::DeleteAccount]);
        Ok(plan(
            JobKind::DeleteUser,
            &input,
            Some(name.as_str()),
            Some(&ns),
            steps,
        ))
    }
}
