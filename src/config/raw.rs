//! The configuration as figment extracts it, before validation.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::dashboard::public_origin;
use super::keys::{self, ApiKey, Role};
use super::{ConfigError, Dashboard, Database, DatabaseUrl, LogFormat, RbacMode, Settings};
use crate::domain::{NamespacePolicy, Operators};

/// Environment variables read by the service (each is the upper-cased key).
pub const ENV_KEYS: &[&str] = &[
    "ADMIN_API_KEY",
    "ADMIN_API_KEYS",
    "READ_API_KEYS",
    "AUTH_FAILURE_LIMIT",
    "AUTH_FAILURE_WINDOW_SECONDS",
    "BIND_ADDR",
    "PORT",
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "EVERESTCTL_BIN",
    "KUBECTL_BIN",
    "SUBPROCESS_TIMEOUT",
    "NAMESPACE_TIMEOUT",
    "MAX_OUTPUT_CHARS",
    "EVEREST_RBAC_APPLY_CMD",
    "RBAC_MODE",
    "DEFAULT_OPERATORS",
    "NAMESPACE_DENYLIST",
    "ALLOWED_NAMESPACE_PREFIXES",
    "WORKER_CONCURRENCY",
    "LEASE_SECONDS",
    "MAX_ATTEMPTS",
    "RETRY_BASE_SECONDS",
    "RETRY_MAX_SECONDS",
    "SHUTDOWN_GRACE_SECONDS",
    "KILL_GRACE_SECONDS",
    "JOB_RETENTION_DAYS",
    "CREDENTIALS_TTL_SECONDS",
    "LOG_FORMAT",
    "METRICS_PUBLIC",
    "HTTP_HEADER_TIMEOUT_SECONDS",
    "HTTP_IDLE_TIMEOUT_SECONDS",
    "MAX_CONNECTIONS",
    "CLI_ENV_PASSTHROUGH",
    "PRIVATE_TMP_DIR",
    "DASHBOARD",
    "DASHBOARD_SESSION_TTL_SECONDS",
    "DASHBOARD_PUBLIC_URL",
];

/// Raw values; strings stay strings so that validation can explain what is wrong.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    #[serde(deserialize_with = "lenient_string")]
    pub admin_api_key: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub admin_api_keys: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub read_api_keys: Option<String>,
    pub auth_failure_limit: u32,
    pub auth_failure_window_seconds: u64,
    pub bind_addr: String,
    pub port: u16,
    pub database_url: String,
    pub database_pool_size: u32,
    pub everestctl_bin: String,
    pub kubectl_bin: String,
    pub subprocess_timeout: u64,
    pub namespace_timeout: u64,
    pub max_output_chars: usize,
    pub everest_rbac_apply_cmd: Option<String>,
    pub rbac_mode: String,
    pub default_operators: String,
    pub namespace_denylist: Option<String>,
    pub allowed_namespace_prefixes: Option<String>,
    pub worker_concurrency: usize,
    pub lease_seconds: u64,
    pub max_attempts: u32,
    pub retry_base_seconds: f64,
    pub retry_max_seconds: f64,
    pub shutdown_grace_seconds: u64,
    pub kill_grace_seconds: u64,
    pub job_retention_days: u32,
    pub credentials_ttl_seconds: u64,
    pub log_format: String,
    pub metrics_public: bool,
    pub http_header_timeout_seconds: u64,
    pub http_idle_timeout_seconds: u64,
    pub max_connections: usize,
    pub cli_env_passthrough: Option<String>,
    pub private_tmp_dir: String,
    pub dashboard: bool,
    pub dashboard_session_ttl_seconds: u64,
    pub dashboard_public_url: Option<String>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            admin_api_key: None,
            admin_api_keys: None,
            read_api_keys: None,
            auth_failure_limit: 20,
            auth_failure_window_seconds: 60,
            bind_addr: "0.0.0.0".into(),
            port: 8080,
            database_url: "sqlite://data/everestctl-api.db".into(),
            database_pool_size: 10,
            everestctl_bin: "everestctl".into(),
            kubectl_bin: "kubectl".into(),
            subprocess_timeout: 60,
            namespace_timeout: 1200,
            max_output_chars: 20_000,
            everest_rbac_apply_cmd: None,
            rbac_mode: "configmap".into(),
            default_operators: "postgresql".into(),
            namespace_denylist: None,
            allowed_namespace_prefixes: None,
            worker_concurrency: 4,
            lease_seconds: 30,
            max_attempts: 5,
            retry_base_seconds: 2.0,
            retry_max_seconds: 300.0,
            shutdown_grace_seconds: 25,
            kill_grace_seconds: 5,
            job_retention_days: 90,
            credentials_ttl_seconds: 3600,
            log_format: "json".into(),
            metrics_public: false,
            http_header_timeout_seconds: 10,
            http_idle_timeout_seconds: 60,
            max_connections: 0,
            cli_env_passthrough: None,
            private_tmp_dir: String::new(),
            dashboard: true,
            dashboard_session_ttl_seconds: 28_800,
            dashboard_public_url: None,
        }
    }
}

/// Keys made only of digits arrive from the environment as numbers; they are still keys.
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        S(String),
        I(i64),
        U(u64),
    }
    Ok(Option::<Lenient>::deserialize(d)?.map(|v| match v {
        Lenient::S(s) => s,
        Lenient::I(i) => i.to_string(),
        Lenient::U(u) => u.to_string(),
    }))
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::key(
            key,
            format!("{value} is outside {min}..={max}"),
        ));
    }
    Ok(value)
}

fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn seconds(key: &str, value: f64, max: f64) -> Result<Duration, ConfigError> {
    if !value.is_finite() || value <= 0.0 || value > max {
        return Err(ConfigError::key(
            key,
            format!("{value} is outside (0, {max}]"),
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// `PRIVATE_TMP_DIR`, by default `tmp` in the service's state folder (see [`Database::state_dir`]).
fn private_tmp_dir(value: &str, database: &Database) -> Result<PathBuf, ConfigError> {
    let value = value.trim();
    if !value.is_empty() {
        if value.contains('\0') {
            return Err(ConfigError::key("private_tmp_dir", "must be a path"));
        }
        return Ok(PathBuf::from(value));
    }
    Ok(database.state_dir().join("tmp"))
}

impl RawConfig {
    /// Validates every key; the first problem found is reported.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let bind: IpAddr = self.bind_addr.trim().parse().map_err(|_| {
            ConfigError::key(
                "bind_addr",
                format!("{:?} is not an IP address", self.bind_addr),
            )
        })?;
        let worker_concurrency = range("worker_concurrency", self.worker_concurrency, 1, 256)?;
        let lease_seconds = range("lease_seconds", self.lease_seconds, 2, 3600)?;
        let retry_base = seconds("retry_base_seconds", self.retry_base_seconds, 3600.0)?;
        let retry_max = seconds("retry_max_seconds", self.retry_max_seconds, 86_400.0)?;
        if retry_max < retry_base {
            return Err(ConfigError::key(
                "retry_max_seconds",
                "must not be below RETRY_BASE_SECONDS",
            ));
        }
        let database = database(&self.database_url, self.database_pool_size)?;
        Ok(Settings {
            api_keys: self.api_keys()?,
            auth_failure_limit: range("auth_failure_limit", self.auth_failure_limit, 0, 1_000_000)?,
            auth_failure_window: Duration::from_secs(range(
                "auth_failure_window_seconds",
                self.auth_failure_window_seconds,
                1,
                86_400,
            )?),
            listen: SocketAddr::new(bind, self.port),
            database: database.clone(),
            everestctl_bin: non_empty("everestctl_bin", &self.everestctl_bin)?,
            kubectl_bin: non_empty("kubectl_bin", &self.kubectl_bin)?,
            subprocess_timeout: Duration::from_secs(range(
                "subprocess_timeout",
                self.subprocess_timeout,
                1,
                86_400,
            )?),
            namespace_timeout: Duration::from_secs(range(
                "namespace_timeout",
                self.namespace_timeout,
                1,
                86_400,
            )?),
            max_output_chars: range("max_output_chars", self.max_output_chars, 200, 10_000_000)?,
            rbac: self.rbac_mode()?,
            default_operators: default_operators(&self.default_operators)?,
            namespace_policy: self.namespace_policy()?,
            worker_concurrency,
            lease: Duration::from_secs(lease_seconds),
            max_attempts: range("max_attempts", self.max_attempts, 1, 100)?,
            retry_base,
            retry_max,
            shutdown_grace: Duration::from_secs(range(
                "shutdown_grace_seconds",
                self.shutdown_grace_seconds,
                0,
                3600,
            )?),
            kill_grace: Duration::from_secs(range(
                "kill_grace_seconds",
                self.kill_grace_seconds,
                0,
                600,
            )?),
            job_retention_days: range("job_retention_days", self.job_retention_days, 1, 36_500)?,
            credentials_ttl: Duration::from_secs(range(
                "credentials_ttl_seconds",
                self.credentials_ttl_seconds,
                1,
                31_536_000,
            )?),
            log_format: match self.log_format.trim().to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                other => {
                    return Err(ConfigError::key(
                        "log_format",
                        format!("{other:?} is not a format"),
                    ));
                }
            },
            metrics_public: self.metrics_public,
            http_header_timeout: Duration::from_secs(range(
                "http_header_timeout_seconds",
                self.http_header_timeout_seconds,
                1,
                3600,
            )?),
            http_idle_timeout: Duration::from_secs(range(
                "http_idle_timeout_seconds",
                self.http_idle_timeout_seconds,
                1,
                86_400,
            )?),
            max_connections: range("max_connections", self.max_connections, 0, 1_000_000)?,
            cli_env_passthrough: cli_env_passthrough(self.cli_env_passthrough.as_deref())?,
            private_tmp_dir: private_tmp_dir(&self.private_tmp_dir, &database)?,
            dashboard: self.dashboard()?,
        })
    }

    /// `DASHBOARD`, `DASHBOARD_SESSION_TTL_SECONDS` and `DASHBOARD_PUBLIC_URL`, checked even
    /// when the dashboard is off.
    fn dashboard(&self) -> Result<Option<Dashboard>, ConfigError> {
        let session_ttl = Duration::from_secs(range(
            "dashboard_session_ttl_seconds",
            self.dashboard_session_ttl_seconds,
            1,
            604_800,
        )?);
        let public_origin = self
            .dashboard_public_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| public_origin(u).map_err(|e| ConfigError::key("dashboard_public_url", e)))
            .transpose()?;
        Ok(self.dashboard.then_some(Dashboard {
            session_ttl,
            public_origin,
        }))
    }

    fn api_keys(&self) -> Result<Vec<ApiKey>, ConfigError> {
        let mut keys = Vec::new();
        if let Some(key) = self
            .admin_api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            keys.push(
                keys::parse_key("default", key, Role::Admin)
                    .map_err(|e| ConfigError::key("admin_api_key", e))?,
            );
        }
        if let Some(list) = self.admin_api_keys.as_deref() {
            keys.extend(
                keys::parse_key_list(list, Role::Admin)
                    .map_err(|e| ConfigError::key("admin_api_keys", e))?,
            );
        }
        if keys.is_empty() {
            return Err(ConfigError(
                "no admin API key is configured, so nobody could use the API. Set ADMIN_API_KEY \
                 (e.g. `ADMIN_API_KEY=$(openssl rand -hex 32)`) or ADMIN_API_KEYS=name:key,..."
                    .into(),
            ));
        }
        if let Some(list) = self.read_api_keys.as_deref() {
            keys.extend(
                keys::parse_key_list(list, Role::ReadOnly)
                    .map_err(|e| ConfigError::key("read_api_keys", e))?,
            );
        }
        unique(&keys)?;
        Ok(keys)
    }

    /// Every entry is checked: a denylist entry that is no namespace name, or a prefix that no
    /// namespace name can start with, would silently deny nothing or refuse every namespace.
    fn namespace_policy(&self) -> Result<NamespacePolicy, ConfigError> {
        let denylist = list(self.namespace_denylist.as_deref());
        if let Some(bad) = denylist.iter().find(|n| !NamespacePolicy::is_valid_name(n)) {
            return Err(ConfigError::key(
                "namespace_denylist",
                format!("{bad:?} is not a namespace name (RFC 1035 label)"),
            ));
        }
        let prefixes = list(self.allowed_namespace_prefixes.as_deref());
        // A prefix is valid when some namespace name starts with it.
        if let Some(bad) = prefixes
            .iter()
            .find(|p| p.len() > 62 || !NamespacePolicy::is_valid_name(&format!("{p}a")))
        {
            return Err(ConfigError::key(
                "allowed_namespace_prefixes",
                format!("no namespace name can start with {bad:?}"),
            ));
        }
        Ok(NamespacePolicy::new(denylist, prefixes))
    }

    fn rbac_mode(&self) -> Result<RbacMode, ConfigError> {
        // Checked even when EVEREST_RBAC_APPLY_CMD makes it unused: a typo must not wait for
        // the day the command is removed.
        let mode = match self.rbac_mode.trim() {
            "skip" => RbacMode::Skip,
            "configmap" => RbacMode::ConfigMap,
            other => {
                return Err(ConfigError::key(
                    "rbac_mode",
                    format!("{other:?} is not a mode"),
                ));
            }
        };
        if let Some(cmd) = self
            .everest_rbac_apply_cmd
            .as_deref()
            .filter(|c| !c.trim().is_empty())
        {
            shell_words::split(cmd).map_err(|e| {
                ConfigError::key(
                    "everest_rbac_apply_cmd",
                    format!("cannot be split into words: {e}"),
                )
            })?;
            return Ok(RbacMode::Command(cmd.to_string()));
        }
        Ok(mode)
    }
}

/// Each name and each key once: a name has one role, and a key that is configured twice would
/// authenticate as whichever entry comes first.
fn unique(keys: &[ApiKey]) -> Result<(), ConfigError> {
    for (i, key) in keys.iter().enumerate() {
        let setting = if key.role == Role::Admin {
            "admin_api_keys"
        } else {
            "read_api_keys"
        };
        for earlier in &keys[..i] {
            if earlier.name == key.name {
                let problem = if earlier.role == key.role {
                    format!("key name {:?} is used twice", key.name)
                } else {
                    format!(
                        "key name {:?} is in both ADMIN_API_KEYS and READ_API_KEYS; a name has \
                         one role, so give the read-only key another name",
                        key.name
                    )
                };
                return Err(ConfigError::key(setting, problem));
            }
            if earlier.same_key(key) {
                return Err(ConfigError::key(
                    setting,
                    format!(
                        "the keys named {:?} and {:?} are the same key; give each its own",
                        earlier.name, key.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn non_empty(key: &str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ConfigError::key(key, "must not be empty"));
    }
    Ok(value.to_string())
}

/// `DATABASE_URL` (with `DATABASE_POOL_SIZE` for PostgreSQL).
fn database(url: &str, pool_size: u32) -> Result<Database, ConfigError> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // Parsed now so that a malformed URL stops the service at start with its reason. The
        // error never repeats the URL, which may hold a password.
        sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| {
            ConfigError::key(
                "database_url",
                format!(
                    "is not a PostgreSQL URL sqlx accepts: {}",
                    redact_url_error(&e)
                ),
            )
        })?;
        return Ok(Database::Postgres {
            url: DatabaseUrl(url.to_string()),
            pool_size: range("database_pool_size", pool_size, 1, 1000)?,
        });
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            ConfigError::key(
                "database_url",
                "is neither a sqlite:// nor a postgres:// URL",
            )
        })?;
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(ConfigError::key(
            "database_url",
            "needs a file path; an in-memory database would lose jobs",
        ));
    }
    Ok(Database::Sqlite {
        path: PathBuf::from(path),
    })
}

/// The kind of a URL parse error, without the URL's text.
fn redact_url_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(inner) => {
            let text = inner.to_string();
            // sqlx's messages name the part that is wrong, not the URL; keep only the first
            // clause in case a future version quotes it.
            text.split(':')
                .next()
                .unwrap_or("invalid")
                .trim()
                .to_string()
        }
        _ => "invalid".to_string(),
    }
}

/// Parses `CLI_ENV_PASSTHROUGH`: names of environment variables, never the service's own.
fn cli_env_passthrough(value: Option<&str>) -> Result<Arc<[String]>, ConfigError> {
    let key = "cli_env_passthrough";
    let names = list(value);
    for name in &names {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ConfigError::key(
                key,
                format!("{name:?} is not an environment variable name"),
            ));
        }
        // The service's settings (admin keys, the database) are exactly what the CLIs must not
        // see; figment reads them whatever their case, so no spelling of them may be passed on.
        if ENV_KEYS.iter().any(|k| k.eq_ignore_ascii_case(name)) {
            return Err(ConfigError::key(
                key,
                format!("{name} is a setting of this service and is never passed to the CLIs"),
            ));
        }
    }
    Ok(names.into())
}

fn default_operators(value: &str) -> Result<Operators, ConfigError> {
    let mut ops = Operators {
        mongodb: false,
        postgresql: false,
        mysql: false,
    };
    for name in list(Some(value)) {
        match name.to_ascii_lowercase().as_str() {
            "mongodb" => ops.mongodb = true,
            "postgresql" => ops.postgresql = true,
            "mysql" | "xtradb_cluster" => ops.mysql = true,
            other => {
                return Err(ConfigError::key(
                    "default_operators",
                    format!("{other:?} is not an operator"),
                ));
            }
        }
    }
    if !(ops.mongodb || ops.postgresql || ops.mysql) {
        return Err(ConfigError::key(
            "default_operators",
            "at least one operator is needed",
        ));
    }
    Ok(ops)
}
