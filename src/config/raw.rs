//! The configuration as figment extracts it, before validation.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::keys::{self, ApiKey};
use super::{ConfigError, LogFormat, RbacMode, Settings};
use crate::domain::{NamespacePolicy, Operators};

/// Environment variables read by the service (each is the upper-cased key).
pub const ENV_KEYS: &[&str] = &[
    "ADMIN_API_KEY",
    "ADMIN_API_KEYS",
    "BIND_ADDR",
    "PORT",
    "DATABASE_URL",
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
    "PRIVATE_TMP_DIR",
];

/// Raw values; strings stay strings so that validation can explain what is wrong.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    #[serde(deserialize_with = "lenient_string")]
    pub admin_api_key: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub admin_api_keys: Option<String>,
    pub bind_addr: String,
    pub port: u16,
    pub database_url: String,
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
    pub private_tmp_dir: String,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            admin_api_key: None,
            admin_api_keys: None,
            bind_addr: "0.0.0.0".into(),
            port: 8080,
            database_url: "sqlite://data/everestctl-api.db".into(),
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
            private_tmp_dir: String::new(),
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

/// `PRIVATE_TMP_DIR`, by default `tmp` in the database's folder.
fn private_tmp_dir(value: &str, database: &std::path::Path) -> Result<PathBuf, ConfigError> {
    let value = value.trim();
    if !value.is_empty() {
        if value.contains('\0') {
            return Err(ConfigError::key("private_tmp_dir", "must be a path"));
        }
        return Ok(PathBuf::from(value));
    }
    let folder = database.parent().unwrap_or(std::path::Path::new(""));
    Ok(folder.join("tmp"))
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
        let database_path = database_path(&self.database_url)?;
        Ok(Settings {
            api_keys: self.api_keys()?,
            listen: SocketAddr::new(bind, self.port),
            database_path: database_path.clone(),
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
            namespace_policy: NamespacePolicy::new(
                list(self.namespace_denylist.as_deref()),
                list(self.allowed_namespace_prefixes.as_deref()),
            ),
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
            private_tmp_dir: private_tmp_dir(&self.private_tmp_dir, &database_path)?,
        })
    }

    fn api_keys(&self) -> Result<Vec<ApiKey>, ConfigError> {
        let mut keys = Vec::new();
        if let Some(key) = self
            .admin_api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            keys::check_key(key, "default").map_err(|e| ConfigError::key("admin_api_key", e))?;
            keys.push(ApiKey::new("default", key));
        }
        if let Some(list) = self.admin_api_keys.as_deref() {
            keys.extend(
                keys::parse_key_list(list).map_err(|e| ConfigError::key("admin_api_keys", e))?,
            );
        }
        if keys.is_empty() {
            return Err(ConfigError(
                "no admin API key is configured, so nobody could use the API. Set ADMIN_API_KEY \
                 (e.g. `ADMIN_API_KEY=$(openssl rand -hex 32)`) or ADMIN_API_KEYS=name:key,..."
                    .into(),
            ));
        }
        let mut names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::key(
                "admin_api_keys",
                format!("key name {:?} is used twice", w[0]),
            ));
        }
        Ok(keys)
    }

    fn rbac_mode(&self) -> Result<RbacMode, ConfigError> {
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
        match self.rbac_mode.trim() {
            "skip" => Ok(RbacMode::Skip),
            "configmap" => Ok(RbacMode::ConfigMap),
            other => Err(ConfigError::key(
                "rbac_mode",
                format!("{other:?} is not a mode"),
            )),
        }
    }
}

fn non_empty(key: &str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ConfigError::key(key, "must not be empty"));
    }
    Ok(value.to_string())
}

fn database_path(url: &str) -> Result<PathBuf, ConfigError> {
    let url = url.trim();
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            ConfigError::key(
                "database_url",
                format!("{url:?} is not a sqlite:// URL (only SQLite is supported)"),
            )
        })?;
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(ConfigError::key(
            "database_url",
            "needs a file path; an in-memory database would lose jobs",
        ));
    }
    Ok(PathBuf::from(path))
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
