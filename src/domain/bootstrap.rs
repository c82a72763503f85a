//! The `bootstrap_user` request: validation and defaults.

use serde::{Deserialize, Serialize};

use super::object::object_only;

use super::{
    FieldError, JobKind, NamespacePolicy, Operators, Password, Plan, Resources, StepName, Username,
};

/// Body of `POST /bootstrap/users`, as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootstrapRequest {
    pub username: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub operators: Option<OperatorsRequest>,
    #[serde(default)]
    pub take_ownership: Option<bool>,
    #[serde(default)]
    pub resources: Option<ResourcesRequest>,
}

/// Requested operators; `xtradb_cluster` is an alias of `mysql`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct OperatorsRequest {
    pub mongodb: Option<bool>,
    pub postgresql: Option<bool>,
    pub mysql: Option<bool>,
    pub xtradb_cluster: Option<bool>,
}

/// Requested resources; omitted values take the defaults.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct ResourcesRequest {
    pub cpu_cores: Option<u32>,
    pub ram_mb: Option<u32>,
    pub disk_gb: Option<u32>,
    pub max_databases: Option<u32>,
}

object_only!(OperatorsRequest);
object_only!(ResourcesRequest);

/// The resolved inputs of a bootstrap job, as stored (never a password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapInput {
    pub username: String,
    pub namespace: String,
    pub operators: Operators,
    pub take_ownership: bool,
    pub resources: Resources,
}

/// What validation needs from the configuration.
#[derive(Debug, Clone)]
pub struct Rules {
    pub namespaces: NamespacePolicy,
    pub default_operators: Operators,
}

impl ResourcesRequest {
    /// Resolves defaults and checks the bounds of api.md.
    pub fn resolve(&self, field: &str, errors: &mut Vec<FieldError>) -> Resources {
        let mut check = |name: &str, value: Option<u32>, default: u32, min: u32, max: u32| {
            let v = value.unwrap_or(default);
            if v < min || v > max {
                errors.push(FieldError::new(
                    format!("{field}.{name}"),
                    format!("must be between {min} and {max}"),
                ));
            }
            v
        };
        let cpu_cores = check("cpu_cores", self.cpu_cores, 2, 1, 1024);
        let ram_mb = check("ram_mb", self.ram_mb, 2048, 128, 4_194_304);
        let disk_gb = check("disk_gb", self.disk_gb, 20, 1, 1_048_576);
        let max_databases = self
            .max_databases
            .map(|m| check("max_databases", Some(m), m, 0, 10_000));
        Resources {
            cpu_cores,
            ram_mb,
            disk_gb,
            max_databases,
        }
    }
}

impl OperatorsRequest {
    /// Resolves the alias; all false (or nothing) means the configured defaults.
    pub fn resolve(&self, defaults: Operators, errors: &mut Vec<FieldError>) -> Operators {
        if let (Some(a), Some(b)) = (self.mysql, self.xtradb_cluster)
            && a != b
        {
            errors.push(FieldError::new(
                "operators.xtradb_cluster",
                "is an alias of mysql and contradicts it",
            ));
        }
        let ops = Operators {
            mongodb: self.mongodb.unwrap_or(false),
            postgresql: self.postgresql.unwrap_or(false),
            mysql: self.mysql.or(self.xtradb_cluster).unwrap_or(false),
        };
        if ops.mongodb || ops.postgresql || ops.mysql {
            ops
        } else {
            defaults
        }
    }
}

/// Resolves the effective namespace: given, or the username when that is a valid namespace name.
pub fn effective_namespace(
    requested: Option<&str>,
    username: &str,
    rules: &NamespacePolicy,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let (candidate, field) = match requested {
        Some(ns) => (ns.to_string(), "namespace"),
        None if NamespacePolicy::is_valid_name(username) => (username.to_string(), "namespace"),
        None => {
            errors.push(FieldError::new(
                "namespace",
                "the username is not a valid namespace name, so give a namespace explicitly",
            ));
            return None;
        }
    };
    match rules.parse(&candidate) {
        Ok(ns) => Some(ns.as_str().to_string()),
        Err(e) if requested.is_none() => {
            errors.push(FieldError::new(
                field,
                format!("defaults to the username, which is refused: {e}"),
            ));
            None
        }
        Err(e) => {
            errors.push(FieldError::new(field, e));
            None
        }
    }
}

impl BootstrapRequest {
    /// Validates everything and returns the job's plan, or every problem found.
    pub fn validate(self, rules: &Rules) -> Result<Plan, Vec<FieldError>> {
        let mut errors = Vec::new();
        non_empty(&mut errors, "namespace", self.namespace.as_deref());
        non_empty(&mut errors, "password", self.password.as_deref());
        let username = Username::parse_mutable(&self.username)
            .map_err(|e| errors.push(FieldError::new("username", e)))
            .ok();
        let namespace = match self.namespace.as_deref() {
            Some("") => None,
            requested => {
                effective_namespace(requested, &self.username, &rules.namespaces, &mut errors)
            }
        };
        let password = match self.password.as_deref() {
            Some("") => None,
            Some(p) => Password::parse(p)
                .map_err(|e| errors.push(FieldError::new("password", e)))
                .ok(),
            None => None,
        };
        let operators = self
            .operators
            .unwrap_or_default()
            .resolve(rules.default_operators, &mut errors);
        let resources = self
            .resources
            .unwrap_or_default()
            .resolve("resources", &mut errors);
        let (Some(username), Some(namespace), true) = (username, namespace, errors.is_empty())
        else {
            return Err(errors);
        };
        let generated = password.is_none();
        let input = BootstrapInput {
            username: username.as_str().to_string(),
            namespace,
            operators,
            take_ownership: self.take_ownership.unwrap_or(false),
            resources,
        };
        Ok(Plan {
            kind: JobKind::BootstrapUser,
            username: Some(input.username.clone()),
            namespace: Some(input.namespace.clone()),
            inputs: serde_json::to_value(&input).expect("inputs serialize"),
            steps: vec![
                StepName::CreateAccount,
                StepName::AddNamespace,
                StepName::ApplyResourceQuota,
                StepName::ApplyRbacPolicy,
            ],
            password: Some(password.unwrap_or_else(Password::generate)),
            password_generated: generated,
        })
    }
}

fn non_empty(errors: &mut Vec<FieldError>, field: &str, value: Option<&str>) {
    if value == Some("") {
        errors.push(FieldError::new(field, "must not be empty"));
    }
}
