//! Test harness: the real app on port 0 with a fresh database (an SQLite file, or a PostgreSQL
//! database of the test binary's cluster) and the fake CLIs of `tests/fakes` copied to a temp
//! `bin/`, with their state in a temp `state/`.
//!
//! # One suite, both backends
//!
//! A test of the HTTP contract is a plain `async fn name(backend: Backend)` with
//! `both_backends!(name);` above it, which generates the tests `name::sqlite` and
//! `name::postgres` in the same binary: `cargo test` runs both, and a filter picks one
//! (`-- ::postgres`). The PostgreSQL one returns at once, having printed a SKIPPED line, where
//! PostgreSQL cannot run and `EVERESTCTL_TEST_PG` is not `require` (see `pg.rs`). The test
//! starts its app with `TestApp::start_on(backend)` (or a sandbox with `Sandbox::on(backend)`);
//! the sandbox carries its database, so a restart with `TestApp::start_in(sandbox, ..)` finds
//! the same data on either backend.
//!
//! Why a macro that only adds wrappers, rather than one that takes the whole test: rustfmt does
//! not format the inside of a macro call, and the body stays an ordinary function that rustfmt,
//! clippy and the compiler's messages treat as such. Why not a runtime loop over both backends
//! in one test: a failure would not say which backend failed, and one could not be run alone.
//! A test that is about SQLite itself (its files, its migrations) is `sqlite_only!(name)`,
//! named `name::sqlite` the same way.
#![allow(dead_code)]

pub mod bulk;
pub mod db;
pub mod pg;
pub mod raw;
pub mod replicas;
pub mod service;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use everestctl_api::config::{RawConfig, Settings};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

pub use db::{Backend, Db};

pub const KEY: &str = "test-key-ops-0123456789";
pub const CI_KEY: &str = "test-key-ci-9876543210";

/// Bound on every wait for a job.
pub const JOB_WAIT: Duration = Duration::from_secs(30);

/// Generates `$name::sqlite` and `$name::postgres`, which run `async fn $name(backend: Backend)`
/// on each backend; the PostgreSQL one skips (see `pg::available`) where PostgreSQL cannot run.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                if $crate::common::pg::available(concat!(stringify!($name), "::postgres")) {
                    super::$name($crate::common::Backend::Postgres).await;
                }
            }
        }
    };
}

/// Generates `$name::sqlite`, which runs `async fn $name()`: a test of SQLite itself (its
/// files, its migrations), named like the SQLite half of [`both_backends!`].
#[macro_export]
macro_rules! sqlite_only {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name().await;
            }
        }
    };
}

/// A temp dir with `bin/` (the fakes), `state/` (their state and controls) and the database.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    database: Db,
}

impl Sandbox {
    /// A sandbox on SQLite.
    pub fn new() -> Self {
        let dir = Self::dir();
        let database = Db::Sqlite(Self::sqlite_file(dir.path()));
        Sandbox { dir, database }
    }

    /// A sandbox on `backend`; on PostgreSQL with a fresh database, named after the test
    /// (libtest names the test's thread after it).
    pub async fn on(backend: Backend) -> Self {
        let dir = Self::dir();
        let test = std::thread::current().name().unwrap_or("test").to_owned();
        let database = Db::new(backend, Self::sqlite_file(dir.path()), &test).await;
        Sandbox { dir, database }
    }

    fn sqlite_file(dir: &Path) -> PathBuf {
        dir.join("db/test.db")
    }

    fn dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.path().join("state/ctl")).unwrap();
        let fakes = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes");
        for name in ["everestctl", "kubectl", "rbac-apply"] {
            std::fs::copy(fakes.join(name), bin.join(name)).unwrap();
        }
        dir
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn bin(&self, name: &str) -> String {
        self.path()
            .join("bin")
            .join(name)
            .to_string_lossy()
            .into_owned()
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// The SQLite database file (of a sandbox on SQLite only).
    pub fn db(&self) -> PathBuf {
        match &self.database {
            Db::Sqlite(file) => file.clone(),
            Db::Postgres(_) => panic!("a sandbox on PostgreSQL has no database file"),
        }
    }

    /// The database, to ask it what the API does not show.
    pub fn database(&self) -> &Db {
        &self.database
    }

    pub fn backend(&self) -> Backend {
        self.database.backend()
    }

    /// The app's `DATABASE_URL`.
    pub fn database_url(&self) -> String {
        self.database.url()
    }

    /// The app's `PRIVATE_TMP_DIR`: on SQLite the default (`tmp` beside the file); on
    /// PostgreSQL, whose default is in the system's temp folder, the same place in the sandbox.
    pub fn private_tmp_dir(&self) -> String {
        match self.backend() {
            Backend::Sqlite => String::new(),
            Backend::Postgres => self.path().join("db/tmp").display().to_string(),
        }
    }

    /// Writes a fault-injection control, e.g. `ctl("accounts-create", "fail", "2 1 boom")`.
    pub fn ctl(&self, op: &str, kind: &str, content: &str) {
        std::fs::write(
            self.state().join("ctl").join(format!("{op}.{kind}")),
            format!("{content}\n"),
        )
        .unwrap();
    }

    pub fn clear_ctl(&self, op: &str, kind: &str) {
        let _ = std::fs::remove_file(self.state().join("ctl").join(format!("{op}.{kind}")));
    }

    /// The fakes' invocation log: lines `START <ns> <pid> <op> <args>` and `END <ns> <pid> <op> <rc>`.
    pub fn calls(&self) -> String {
        std::fs::read_to_string(self.state().join("calls.log")).unwrap_or_default()
    }

    /// How many times `op` was started.
    pub fn started(&self, op: &str) -> usize {
        self.calls()
            .lines()
            .filter(|l| l.starts_with("START ") && l.split_whitespace().nth(3) == Some(op))
            .count()
    }

    /// The settings the tests run with: fast retries, short timeouts, fakes as binaries.
    pub fn raw_config(&self) -> RawConfig {
        RawConfig {
            admin_api_keys: Some(format!("ops:{KEY},ci:{CI_KEY}")),
            bind_addr: "127.0.0.1".into(),
            port: 0,
            database_url: self.database_url(),
            private_tmp_dir: self.private_tmp_dir(),
            everestctl_bin: self.bin("everestctl"),
            kubectl_bin: self.bin("kubectl"),
            subprocess_timeout: 10,
            namespace_timeout: 10,
            retry_base_seconds: 0.05,
            retry_max_seconds: 0.2,
            lease_seconds: 6,
            kill_grace_seconds: 1,
            credentials_ttl_seconds: 3600,
            ..RawConfig::default()
        }
    }
}

/// The app running in this process.
pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub sandbox: Sandbox,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut RawConfig)) -> Self {
        Self::start_in(Sandbox::new(), configure).await
    }

    /// The app on `backend`, with a fresh database.
    pub async fn start_on(backend: Backend) -> Self {
        Self::start_on_with(backend, |_| {}).await
    }

    pub async fn start_on_with(backend: Backend, configure: impl FnOnce(&mut RawConfig)) -> Self {
        Self::start_in(Sandbox::on(backend).await, configure).await
    }

    pub async fn start_in(sandbox: Sandbox, configure: impl FnOnce(&mut RawConfig)) -> Self {
        let mut raw = sandbox.raw_config();
        configure(&mut raw);
        let settings: Settings = raw.validate().expect("test config is valid");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(everestctl_api::app::serve(settings, listener, async move {
            let _ = rx.await;
        }));
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut app = TestApp {
            base,
            client,
            sandbox,
            stop: Some(tx),
            task: Some(task),
        };
        app.wait_healthy().await;
        app
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.task.as_ref().is_some_and(|t| t.is_finished()) {
                let ended = self.task.take().unwrap().await;
                panic!("the app ended at start: {ended:?}");
            }
            if let Ok(r) = self.client.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the app did not become healthy");
    }

    /// Stops the app and waits for it (bounded).
    pub async fn stop(mut self) -> Sandbox {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("app stops")
                .unwrap()
                .unwrap();
        }
        let TestApp { sandbox, .. } = self;
        sandbox
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .header("X-Admin-Key", KEY)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("X-Admin-Key", KEY)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let r = self.get(path).await;
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    /// Submits a bootstrap and returns the job id (asserting 202).
    pub async fn bootstrap(&self, body: Value) -> String {
        let r = self.post("/bootstrap/users", &body).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text().await);
        let v: Value = r.json().await.unwrap();
        v["job_id"].as_str().unwrap().to_string()
    }

    /// Polls the job until it is final; returns its status body.
    pub async fn wait_final(&self, id: &str) -> Value {
        let deadline = Instant::now() + JOB_WAIT;
        loop {
            let (_, v) = self.get_json(&format!("/jobs/{id}")).await;
            if matches!(
                v["status"].as_str(),
                Some("succeeded" | "failed" | "canceled")
            ) {
                return v;
            }
            assert!(Instant::now() < deadline, "job {id} did not finish: {v}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn result(&self, id: &str) -> Value {
        let (status, v) = self.get_json(&format!("/jobs/{id}/result")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    /// `GET /jobs/{id}/history` (asserting 200).
    pub async fn history(&self, id: &str) -> Value {
        let (status, v) = self.get_json(&format!("/jobs/{id}/history")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    /// The job's attempts whose fields include every `(name, value)` of `want`, from its
    /// history, e.g. `&[("outcome", "failed"), ("error_kind", "transient")]`.
    pub async fn attempts(&self, id: &str, want: &[(&str, &str)]) -> Vec<Value> {
        matching(&self.history(id).await["attempts"], want)
    }

    /// The job's events whose fields include every `(name, value)` of `want`, from its history,
    /// e.g. `&[("type", "retry_scheduled")]`.
    pub async fn events(&self, id: &str, want: &[(&str, &str)]) -> Vec<Value> {
        matching(&self.history(id).await["events"], want)
    }

    pub fn backend(&self) -> Backend {
        self.sandbox.backend()
    }

    /// How many rows of `table` match `filter` (see [`Db::count`]).
    pub async fn count(&self, table: &str, filter: &str) -> i64 {
        self.sandbox.database().count(table, filter).await
    }

    /// How many rows `table` has.
    pub async fn rows(&self, table: &str) -> i64 {
        self.sandbox.database().rows(table).await
    }

    /// Every text stored outside the secrets tables (see [`Db::stored_text`]).
    pub async fn stored_text(&self) -> String {
        self.sandbox.database().stored_text().await
    }
}

/// The items of the array `items` whose fields include every `(name, value)` of `want`.
fn matching(items: &Value, want: &[(&str, &str)]) -> Vec<Value> {
    items
        .as_array()
        .expect("an array")
        .iter()
        .filter(|item| want.iter().all(|(name, value)| item[*name] == *value))
        .cloned()
        .collect()
}

/// Runs a query against an SQLite database file (read-only use), for the tests of the SQLite
/// backend and of the binary on it; the contract tests use [`Db`] instead.
pub async fn db_scalar(db: &Path, sql: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let v: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    v
}
