//! API keys (admin and read-only), their hashed form, and per-key fix-it hints.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The fewest characters a plaintext key may have.
pub const MIN_KEY_CHARS: usize = 16;

/// The prefix of a key given as its SHA-256 digest (`name:sha256:<64 hex digits>`).
pub const HASHED_PREFIX: &str = "sha256:";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every route (`ADMIN_API_KEY`, `ADMIN_API_KEYS`).
    Admin,
    /// Reads only: every `GET` route, no generated password (`READ_API_KEYS`).
    ReadOnly,
}

impl Role {
    /// The setting whose keys have this role, for messages.
    pub fn setting(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN_API_KEYS",
            Role::ReadOnly => "READ_API_KEYS",
        }
    }
}

/// One API key with its name (the name is what jobs record as `submitted_by`) and role.
///
/// Only the SHA-256 digest of the key is kept, whether it was configured in plaintext or hashed:
/// a presented key is hashed once and compared with every digest in constant time, so neither
/// the comparison's time nor the process's memory reveals a configured key.
#[derive(Clone)]
pub struct ApiKey {
    pub name: String,
    pub role: Role,
    digest: [u8; 32],
}

impl ApiKey {
    /// A key given in plaintext.
    pub fn new(name: impl Into<String>, key: &str, role: Role) -> Self {
        ApiKey {
            name: name.into(),
            role,
            digest: digest(key),
        }
    }

    /// Constant-time comparison of the presented key with this one.
    pub fn matches(&self, presented: &str) -> bool {
        self.matches_digest(&digest(presented))
    }

    /// Whether two entries are the same key (checked once, at start).
    pub fn same_key(&self, other: &ApiKey) -> bool {
        self.digest == other.digest
    }

    fn matches_digest(&self, presented: &[u8; 32]) -> bool {
        self.digest.ct_eq(presented).into()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ApiKey {{ name: {:?}, role: {:?}, key: \"********\" }}",
            self.name, self.role
        )
    }
}

/// The SHA-256 digest of a key.
fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The hashed form of a key, `sha256:<64 hex digits>`, usable in place of the key in any list.
pub fn hashed(key: &str) -> String {
    format!("{HASHED_PREFIX}{}", hex::encode(digest(key)))
}

/// The configured key that `presented` is, if any. The presented key is hashed once and every
/// configured key is compared, so the time taken does not tell which one matched.
pub fn find<'a>(keys: &'a [ApiKey], presented: &str) -> Option<&'a ApiKey> {
    let presented = digest(presented);
    let mut found = None;
    for key in keys {
        if key.matches_digest(&presented) && found.is_none() {
            found = Some(key);
        }
    }
    found
}

/// Parses a key list (`name:key,name2:sha256:<hex>`) whose keys all have `role`.
pub fn parse_key_list(list: &str, role: Role) -> Result<Vec<ApiKey>, String> {
    let mut keys = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, key)) = item.split_once(':') else {
            return Err(
                "each entry must be name:key or name:sha256:<64 hex digits> \
                        (the key itself is never logged)"
                    .into(),
            );
        };
        let (name, key) = (name.trim(), key.trim());
        check_name(name)?;
        keys.push(parse_key(name, key, role)?);
    }
    Ok(keys)
}

/// One key as configured: plaintext, or `sha256:<64 hex digits>`.
pub fn parse_key(name: &str, key: &str, role: Role) -> Result<ApiKey, String> {
    check_placeholder(key, name)?;
    let Some(hex_digest) = key.strip_prefix(HASHED_PREFIX) else {
        check_key(key, name)?;
        return Ok(ApiKey::new(name, key, role));
    };
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| {
        format!(
            "the key named {name:?} starts with {HASHED_PREFIX} but is not followed by 64 hex \
             digits; print a valid entry with `everestctl-api hash-key`"
        )
    })?;
    Ok(ApiKey {
        name: name.to_string(),
        role,
        digest,
    })
}

/// Checks a key name: 1-64 letters, digits, `-`, `_` or `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key name {name:?} must be 1-64 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// The shipped manifests carry a placeholder; refusing it keeps a forgotten one from working.
fn check_placeholder(key: &str, name: &str) -> Result<(), String> {
    if key.to_ascii_uppercase().contains("REPLACE-ME") {
        return Err(format!(
            "the key named {name:?} is still the REPLACE-ME placeholder; set a real key"
        ));
    }
    Ok(())
}

/// Checks a plaintext key: visible ASCII without commas, at least [`MIN_KEY_CHARS`] long, not
/// the placeholder. The key itself never appears in the message.
pub fn check_key(key: &str, name: &str) -> Result<(), String> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_graphic()) || key.contains(',') {
        return Err(format!(
            "the key named {name:?} must be non-empty visible ASCII without commas"
        ));
    }
    check_placeholder(key, name)?;
    if key.len() < MIN_KEY_CHARS {
        return Err(format!(
            "the key named {name:?} has {} characters; keys need at least {MIN_KEY_CHARS} \
             (generate one with `openssl rand -hex 32`)",
            key.len()
        ));
    }
    Ok(())
}

/// How to fix a bad value of `key`.
pub fn hint(key: &str) -> &'static str {
    match key {
        "admin_api_key" => "Set it to a long random string, e.g. `openssl rand -hex 32`",
        "admin_api_keys" | "read_api_keys" => {
            "Use name:key or name:sha256:<hex> entries separated by commas, e.g. \
             ops:sha256:…,ci:sha256:… (`everestctl-api hash-key --name ops` prints one)"
        }
        "bind_addr" => "Use an IP address such as 0.0.0.0 or 127.0.0.1",
        "port" => "Use a whole number from 0 to 65535",
        "database_url" => {
            "Use sqlite://path/to/file.db (relative paths start at the working directory) or \
             postgres://user:password@host:5432/db (postgres:///db?host=/run/postgresql for a \
             unix socket)"
        }
        "database_pool_size" => "Use a whole number of connections from 1 to 1000",
        "everestctl_bin" | "kubectl_bin" => "Use a binary name found on PATH or a path to it",
        "rbac_mode" => {
            "Use `configmap` or `skip` (checked even while EVEREST_RBAC_APPLY_CMD is set)"
        }
        "default_operators" => "Use a comma-separated list of mongodb, postgresql, mysql",
        "namespace_denylist" => {
            "Use a comma-separated list of namespace names, e.g. `default,production`"
        }
        "allowed_namespace_prefixes" => {
            "Use a comma-separated list of lower-case prefixes, e.g. `tenant-,team-`"
        }
        "log_format" => "Use `json` or `text`",
        "cli_env_passthrough" => {
            "Use a comma-separated list of variable names, e.g. AWS_PROFILE,AWS_REGION"
        }
        "private_tmp_dir" => "Use a folder path only this service uses (emptied at every start)",
        "retry_base_seconds" | "retry_max_seconds" => "Use a number of seconds greater than 0",
        "max_connections" => {
            "Use 0 (derived from the open-file limit) or a whole number up to 1000000"
        }
        "auth_failure_limit" => "Use a whole number of failures; 0 turns throttling off",
        "dashboard" => "Use true or false",
        "dashboard_session_ttl_seconds" => "Use a whole number of seconds from 1 to 604800",
        "dashboard_public_url" => {
            "Use the dashboard's origin as the browser shows it, e.g. https://ops.example.com \
             (scheme, host and port only); http:// only behind no TLS"
        }
        _ => {
            "Use a whole number in the documented range (see the configuration table in README.md)"
        }
    }
}
