//! Everything the service knows about `everestctl` and `kubectl`, as pure functions (no I/O):
//! argument vectors ([`argv`]), the tenant quota manifest ([`manifest`]), the tenant RBAC policy
//! and edits of `policy.csv` ([`rbac`]), reading results ([`classify`], [`accounts`],
//! [`namespaces`]).
//!
//! The behaviour encoded here is documented in `docs/everestctl.md`; the retry and idempotency
//! rules in `docs/design.md`.

pub mod accounts;
pub mod argv;
pub mod classify;
mod confirm;
pub mod manifest;
pub mod namespaces;
pub mod rbac;

pub use accounts::{Account, AccountsParseError, parse_accounts_table};
pub use classify::{Expect, Retry, classify, confirms, error_message};
pub use manifest::quota_manifest;
pub use namespaces::{ManagedNamespace, parse_namespace_list};
pub use rbac::{render_policy, user_policy_lines};
