//! Admin API keys and per-key fix-it hints.

use std::fmt;

use subtle::ConstantTimeEq;

/// One admin API key with its name (the name is what jobs record as `submitted_by`).
#[derive(Clone)]
pub struct ApiKey {
    pub name: String,
    key: String,
}

impl ApiKey {
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        ApiKey {
            name: name.into(),
            key: key.into(),
        }
    }

    /// Constant-time comparison of the presented key with this one.
    pub fn matches(&self, presented: &str) -> bool {
        // Lengths leak through ct_eq's early return, which only reveals the key length.
        self.key.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey {{ name: {:?}, key: \"********\" }}", self.name)
    }
}

/// Parses `ADMIN_API_KEYS` (`name:key,name2:key2`).
pub fn parse_key_list(list: &str) -> Result<Vec<ApiKey>, String> {
    let mut keys = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, key)) = item.split_once(':') else {
            return Err("each entry must be name:key (the key itself is never logged)".into());
        };
        let (name, key) = (name.trim(), key.trim());
        check_name(name)?;
        check_key(key, name)?;
        keys.push(ApiKey::new(name, key));
    }
    Ok(keys)
}

fn check_name(name: &str) -> Result<(), String> {
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

/// Checks a key's characters; the key itself never appears in the message.
pub fn check_key(key: &str, name: &str) -> Result<(), String> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_graphic()) || key.contains(',') {
        return Err(format!(
            "the key named {name:?} must be non-empty visible ASCII without commas"
        ));
    }
    // The shipped manifests carry a placeholder; refusing it keeps a forgotten one from working.
    if key.to_ascii_uppercase().contains("REPLACE-ME") {
        return Err(format!(
            "the key named {name:?} is still the REPLACE-ME placeholder; set a real key"
        ));
    }
    Ok(())
}

/// How to fix a bad value of `key`.
pub fn hint(key: &str) -> &'static str {
    match key {
        "admin_api_key" => "Set it to a long random string, e.g. `openssl rand -hex 32`",
        "admin_api_keys" => "Use name:key pairs separated by commas, e.g. ops:abc123,ci:def456",
        "bind_addr" => "Use an IP address such as 0.0.0.0 or 127.0.0.1",
        "port" => "Use a whole number from 0 to 65535",
        "database_url" => {
            "Use sqlite://path/to/file.db (relative paths start at the working directory)"
        }
        "everestctl_bin" | "kubectl_bin" => "Use a binary name found on PATH or a path to it",
        "rbac_mode" => "Use `configmap` or `skip` (or set EVEREST_RBAC_APPLY_CMD)",
        "default_operators" => "Use a comma-separated list of mongodb, postgresql, mysql",
        "namespace_denylist" | "allowed_namespace_prefixes" => "Use a comma-separated list",
        "log_format" => "Use `json` or `text`",
        "private_tmp_dir" => "Use a folder path only this service uses (emptied at every start)",
        "retry_base_seconds" | "retry_max_seconds" => "Use a number of seconds greater than 0",
        _ => {
            "Use a whole number in the documented range (see the configuration table in README.md)"
        }
    }
}
