//! Operators and resource bounds of a tenant namespace.

use serde::{Deserialize, Serialize};

/// The database operators installed into a namespace (resolved: no "unset" state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operators {
    pub mongodb: bool,
    pub postgresql: bool,
    pub mysql: bool,
}

/// The resolved resources of a tenant namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_cores: u32,
    pub ram_mb: u32,
    pub disk_gb: u32,
    pub max_databases: Option<u32>,
}
