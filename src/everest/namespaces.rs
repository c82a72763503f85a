//! Parsing `kubectl get namespaces -l app.kubernetes.io/managed-by=everest -o json`.
//!
//! kubectl answers a `List` whose `items` are Namespace objects; only the name and the creation
//! time are of interest. Unknown fields are ignored, so any kubectl version's output reads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A namespace managed by Everest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagedNamespace {
    pub name: String,
    /// `metadata.creationTimestamp`; `None` if kubectl did not report one.
    pub created_at: Option<DateTime<Utc>>,
}

/// kubectl's output was not the expected JSON list.
#[derive(Debug, thiserror::Error)]
#[error("cannot read `kubectl get namespaces -o json` output: {0}")]
pub struct NamespacesParseError(#[from] serde_json::Error);

#[derive(Deserialize)]
struct List {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    metadata: Metadata,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(rename = "creationTimestamp", default)]
    creation_timestamp: Option<DateTime<Utc>>,
}

/// The namespaces of the list, sorted by name.
pub fn parse_namespace_list(stdout: &str) -> Result<Vec<ManagedNamespace>, NamespacesParseError> {
    let list: List = serde_json::from_str(stdout)?;
    let mut namespaces: Vec<ManagedNamespace> = list
        .items
        .into_iter()
        .map(|item| ManagedNamespace {
            name: item.metadata.name,
            created_at: item.metadata.creation_timestamp,
        })
        .collect();
    namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(namespaces)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = r#"{
    "apiVersion": "v1",
    "items": [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "labels": {"app.kubernetes.io/managed-by": "everest", "name": "zoe"},
                "name": "zoe"
            },
            "status": {"phase": "Active"}
        },
        {"metadata": {"name": "alice", "creationTimestamp": "2026-01-01T00:00:00Z"}},
        {"metadata": {"name": "nots"}}
    ],
    "kind": "List",
    "metadata": {"resourceVersion": ""}
}"#;

    #[test]
    fn parses_and_sorts() {
        let got = parse_namespace_list(OUTPUT).unwrap();
        let names: Vec<&str> = got.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["alice", "nots", "zoe"]);
        assert_eq!(
            got[2].created_at.unwrap().to_rfc3339(),
            "2026-01-02T03:04:05+00:00"
        );
        assert_eq!(got[1].created_at, None);
    }

    #[test]
    fn empty_list() {
        let out =
            r#"{"apiVersion":"v1","items":[],"kind":"List","metadata":{"resourceVersion":""}}"#;
        assert!(parse_namespace_list(out).unwrap().is_empty());
    }

    #[test]
    fn rejects_non_json() {
        let err = parse_namespace_list("No resources found\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read `kubectl get namespaces -o json`")
        );
        assert!(parse_namespace_list("").is_err());
    }
}
