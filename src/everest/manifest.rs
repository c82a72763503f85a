//! The tenant's ResourceQuota and LimitRange, as YAML for `kubectl apply -n NS -f -`.
//!
//! A quota on `requests.*`/`limits.*` makes Kubernetes reject every pod that does not declare
//! them, so the LimitRange gives containers defaults. The defaults are derived from the quota and
//! never exceed it, otherwise a single default container could not be scheduled at all.
//! The output is built by hand (no YAML library needed for two fixed documents) and is
//! byte-for-byte deterministic, so a re-apply of the same resources changes nothing.

use std::fmt::Write as _;

use crate::domain::Resources;

/// Name of the ResourceQuota.
pub const QUOTA_NAME: &str = "everest-tenant-quota";
/// Name of the LimitRange.
pub const LIMITS_NAME: &str = "everest-tenant-limits";
/// The `app.kubernetes.io/managed-by` value on objects this service writes.
pub const MANAGED_BY: &str = "everestctl-api";
/// The quota key that caps the number of Everest database clusters.
pub const DATABASE_COUNT_KEY: &str = "count/databaseclusters.everest.percona.com";

/// The largest default limit given to one container: a "sane share" of a tenant.
const DEFAULT_LIMIT_CPU_MILLIS: u64 = 1000;
const DEFAULT_LIMIT_MEMORY_MB: u64 = 1024;
/// Default requests are this fraction (1/N) of the default limits.
const REQUEST_DIVISOR: u64 = 4;

/// Container defaults of the LimitRange, in millicores and MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerDefaults {
    pub limit_cpu_millis: u64,
    pub limit_memory_mb: u64,
    pub request_cpu_millis: u64,
    pub request_memory_mb: u64,
}

/// Defaults derived from the quota: limit = min(quota, 1 core / 1024Mi), request = limit / 4
/// (at least 1m / 1Mi when the limit is non-zero), so `request <= limit <= quota` always holds.
pub fn container_defaults(res: &Resources) -> ContainerDefaults {
    let limit_cpu = (u64::from(res.cpu_cores) * 1000).min(DEFAULT_LIMIT_CPU_MILLIS);
    let limit_memory = u64::from(res.ram_mb).min(DEFAULT_LIMIT_MEMORY_MB);
    let request = |limit: u64| (limit / REQUEST_DIVISOR).max(limit.min(1));
    ContainerDefaults {
        limit_cpu_millis: limit_cpu,
        limit_memory_mb: limit_memory,
        request_cpu_millis: request(limit_cpu),
        request_memory_mb: request(limit_memory),
    }
}

/// A CPU quantity: whole cores as `"2"`, anything else in millicores as `"250m"`.
fn cpu_quantity(millis: u64) -> String {
    // Not `is_multiple_of`: that needs Rust 1.87 and the crate's MSRV is 1.85.
    let (cores, rest) = (millis / 1000, millis % 1000);
    if rest == 0 {
        cores.to_string()
    } else {
        format!("{millis}m")
    }
}

/// A YAML double-quoted scalar (names are validated upstream; this keeps the output well formed
/// whatever the input).
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn metadata(out: &mut String, name: &str, ns: &str) {
    out.push_str("metadata:\n");
    let _ = writeln!(out, "  name: {name}");
    let _ = writeln!(out, "  namespace: {}", quoted(ns));
    out.push_str("  labels:\n");
    let _ = writeln!(out, "    app.kubernetes.io/managed-by: {MANAGED_BY}");
}

/// Multi-document YAML: ResourceQuota `everest-tenant-quota` and LimitRange
/// `everest-tenant-limits` in namespace `ns` (see the module docs for the rules).
pub fn quota_manifest(ns: &str, res: &Resources) -> String {
    let cores = quoted(&res.cpu_cores.to_string());
    let memory = quoted(&format!("{}Mi", res.ram_mb));
    let mut out = String::new();
    out.push_str("apiVersion: v1\nkind: ResourceQuota\n");
    metadata(&mut out, QUOTA_NAME, ns);
    out.push_str("spec:\n  hard:\n");
    let _ = writeln!(out, "    requests.cpu: {cores}");
    let _ = writeln!(out, "    limits.cpu: {cores}");
    let _ = writeln!(out, "    requests.memory: {memory}");
    let _ = writeln!(out, "    limits.memory: {memory}");
    let _ = writeln!(
        out,
        "    requests.storage: {}",
        quoted(&format!("{}Gi", res.disk_gb))
    );
    if let Some(max) = res.max_databases {
        let _ = writeln!(
            out,
            "    {DATABASE_COUNT_KEY}: {}",
            quoted(&max.to_string())
        );
    }

    let d = container_defaults(res);
    out.push_str("---\napiVersion: v1\nkind: LimitRange\n");
    metadata(&mut out, LIMITS_NAME, ns);
    out.push_str("spec:\n  limits:\n  - type: Container\n    default:\n");
    let _ = writeln!(
        out,
        "      cpu: {}",
        quoted(&cpu_quantity(d.limit_cpu_millis))
    );
    let _ = writeln!(
        out,
        "      memory: {}",
        quoted(&format!("{}Mi", d.limit_memory_mb))
    );
    out.push_str("    defaultRequest:\n");
    let _ = writeln!(
        out,
        "      cpu: {}",
        quoted(&cpu_quantity(d.request_cpu_millis))
    );
    let _ = writeln!(
        out,
        "      memory: {}",
        quoted(&format!("{}Mi", d.request_memory_mb))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cpu_cores: u32, ram_mb: u32, disk_gb: u32, max_databases: Option<u32>) -> Resources {
        Resources {
            cpu_cores,
            ram_mb,
            disk_gb,
            max_databases,
        }
    }

    const DEFAULTS_MANIFEST: &str = r#"apiVersion: v1
kind: ResourceQuota
metadata:
  name: everest-tenant-quota
  namespace: "alice"
  labels:
    app.kubernetes.io/managed-by: everestctl-api
spec:
  hard:
    requests.cpu: "2"
    limits.cpu: "2"
    requests.memory: "2048Mi"
    limits.memory: "2048Mi"
    requests.storage: "20Gi"
---
apiVersion: v1
kind: LimitRange
metadata:
  name: everest-tenant-limits
  namespace: "alice"
  labels:
    app.kubernetes.io/managed-by: everestctl-api
spec:
  limits:
  - type: Container
    default:
      cpu: "1"
      memory: "1024Mi"
    defaultRequest:
      cpu: "250m"
      memory: "256Mi"
"#;

    #[test]
    fn api_defaults_render_exactly() {
        let r = res(2, 2048, 20, None);
        assert_eq!(quota_manifest("alice", &r), DEFAULTS_MANIFEST);
        assert_eq!(quota_manifest("alice", &r), quota_manifest("alice", &r));
    }

    #[test]
    fn database_count_only_when_given() {
        let with = quota_manifest("bob", &res(4, 8192, 100, Some(0)));
        assert!(with.contains("    count/databaseclusters.everest.percona.com: \"0\"\n"));
        assert!(with.contains("requests.storage: \"100Gi\""));
        assert!(!quota_manifest("bob", &res(4, 8192, 100, None)).contains("count/"));
    }

    #[test]
    fn defaults_never_exceed_a_small_quota() {
        let d = container_defaults(&res(1, 128, 1, None));
        assert_eq!(
            d,
            ContainerDefaults {
                limit_cpu_millis: 1000,
                limit_memory_mb: 128,
                request_cpu_millis: 250,
                request_memory_mb: 32,
            }
        );
        let zero = container_defaults(&res(0, 0, 0, None));
        assert_eq!(zero.limit_cpu_millis, 0);
        assert_eq!(zero.request_memory_mb, 0);
        for (cpu, ram) in [(1, 1), (1, 3), (3, 700), (1024, 4_194_304)] {
            let d = container_defaults(&res(cpu, ram, 1, None));
            assert!(d.request_cpu_millis <= d.limit_cpu_millis);
            assert!(d.limit_cpu_millis <= u64::from(cpu) * 1000);
            assert!(d.request_memory_mb <= d.limit_memory_mb);
            assert!(d.limit_memory_mb <= u64::from(ram));
            assert!(d.request_memory_mb >= 1);
        }
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!(cpu_quantity(1000), "1");
        assert_eq!(cpu_quantity(250), "250m");
        assert_eq!(cpu_quantity(0), "0");
    }

    #[test]
    fn namespace_is_quoted_safely() {
        let m = quota_manifest("we\"ird\n", &res(1, 128, 1, None));
        assert!(m.contains("  namespace: \"we\\\"ird\\u000a\"\n"));
    }
}
