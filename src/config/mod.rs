//! Configuration: embedded defaults, then an optional TOML file, then the environment.
//!
//! Every key has the name of its environment variable (lower-cased in the TOML file). The raw
//! values are extracted with figment and then validated once into [`Settings`], whose errors say
//! which key is wrong and how to fix it.

mod dashboard;
pub mod keys;
mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use crate::domain::{NamespacePolicy, Operators};
pub use dashboard::{Dashboard, PublicOrigin};
pub use keys::{ApiKey, Role};
pub use raw::RawConfig;

/// How the RBAC step writes policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RbacMode {
    /// Write the policy to a temp file and run this command (`{file}` replaced by the path).
    Command(String),
    /// Merge into ConfigMap `everest-rbac`: read, edit this user's lines, validate, write back
    /// with optimistic concurrency.
    ConfigMap,
    /// Record `rbac_applied: false` and change nothing.
    Skip,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Validated configuration of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Admin keys first, then read-only keys; names and keys are unique.
    pub api_keys: Vec<ApiKey>,
    /// Failed authentications from one client address that are answered before it is refused
    /// (429) until its window ends; 0 turns throttling off.
    pub auth_failure_limit: u32,
    /// The window in which [`Settings::auth_failure_limit`] failures are counted.
    pub auth_failure_window: Duration,
    pub listen: SocketAddr,
    /// Which database, and where.
    pub database: Database,
    pub everestctl_bin: String,
    pub kubectl_bin: String,
    pub subprocess_timeout: Duration,
    pub namespace_timeout: Duration,
    pub max_output_chars: usize,
    pub rbac: RbacMode,
    pub default_operators: Operators,
    pub namespace_policy: NamespacePolicy,
    pub worker_concurrency: usize,
    pub lease: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub shutdown_grace: Duration,
    pub kill_grace: Duration,
    pub job_retention_days: u32,
    pub credentials_ttl: Duration,
    pub log_format: LogFormat,
    /// Serve `GET /metrics` without an admin key.
    pub metrics_public: bool,
    /// Longest wait for a request's headers, from the accept or the request's first byte.
    pub http_header_timeout: Duration,
    /// Longest idle time of a keep-alive connection between requests.
    pub http_idle_timeout: Duration,
    /// Most open HTTP connections; 0 = derived from the file limit at start.
    pub max_connections: usize,
    /// Variables of the service's environment passed on to the CLIs besides the fixed set of
    /// `exec::env` (never one of the service's own settings).
    pub cli_env_passthrough: std::sync::Arc<[String]>,
    /// The service's private folder (mode 0700, emptied at start) for the files it hands to
    /// commands, such as candidate RBAC policies.
    pub private_tmp_dir: PathBuf,
    /// The operator dashboard at `/ui`; `None` when `DASHBOARD=false`.
    pub dashboard: Option<Dashboard>,
}

/// A configuration error, phrased for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    fn key(key: &str, problem: impl std::fmt::Display) -> Self {
        ConfigError(format!(
            "{} ({}): {problem}. {}",
            key.to_ascii_uppercase(),
            key,
            keys::hint(key)
        ))
    }
}

impl Settings {
    /// Loads defaults, then `file` (if given; it must exist), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(figment(file)?)
    }

    /// Validates the values of an already layered figment (tests build one directly).
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let raw: RawConfig = figment.extract().map_err(describe_figment_error)?;
        raw.validate()
    }
}

/// The layered providers: defaults → optional TOML file → environment.
pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError(format!(
                "config file {} does not exist; pass an existing TOML file to --config",
                path.display()
            )));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    Ok(figment.merge(Env::raw().only(raw::ENV_KEYS)))
}

fn describe_figment_error(error: figment::Error) -> ConfigError {
    let source = error
        .metadata
        .as_ref()
        .map(|m| m.name.to_string())
        .unwrap_or_default();
    let problem = format!(
        "{}{}",
        error.kind,
        if source.is_empty() {
            String::new()
        } else {
            format!(" (from {source})")
        }
    );
    match error.path.first() {
        Some(key) => ConfigError::key(key, problem),
        None => ConfigError(problem),
    }
}

#[cfg(test)]
mod tests;

/// The database the service keeps its state in (`DATABASE_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// One file, used by this process alone (the embedded default).
    Sqlite { path: PathBuf },
    /// A server shared by every replica; `pool_size` connections per replica.
    Postgres { url: DatabaseUrl, pool_size: u32 },
}

impl Database {
    /// Where the service keeps its own files (the in-cluster kubeconfig, the default
    /// `PRIVATE_TMP_DIR`): the database's folder for SQLite; for PostgreSQL, which has no
    /// folder here, `everestctl-api` in the system's temp folder.
    pub fn state_dir(&self) -> PathBuf {
        match self {
            Database::Sqlite { path } => path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."))
                .to_path_buf(),
            Database::Postgres { .. } => std::env::temp_dir().join("everestctl-api"),
        }
    }
}

/// A PostgreSQL URL. It may hold a password: its `Debug` shows only the scheme.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub(crate) String);

impl DatabaseUrl {
    /// The URL itself, to connect with; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(postgres://********)")
    }
}
