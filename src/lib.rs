//! everestctl-api: a REST API and durable job runner for managing Percona Everest tenants.
//!
//! Layering (see `docs/design.md` of the project): `http` validates requests into `domain` types
//! and talks to `store`; `worker` claims jobs from `store` and runs their steps through `exec`
//! with argv built by `everest`. HTTP never runs SQL or spawns processes; SQL lives only in
//! `store`; the worker knows nothing of HTTP.

pub mod app;
pub mod config;
pub mod domain;
pub mod everest;
pub mod exec;
pub mod http;
pub mod kubeconfig;
pub mod passthrough;
pub mod plan;
pub mod retention;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod worker;
