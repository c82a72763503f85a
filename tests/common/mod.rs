//! Test harness: the real app on port 0 with a fresh SQLite file and the fake CLIs of
//! `tests/fakes` copied to a temp `bin/`, with their state in a temp `state/`.
#![allow(dead_code)]

pub mod bulk;
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

pub const KEY: &str = "test-key-ops-0123456789";
pub const CI_KEY: &str = "test-key-ci-9876543210";

/// Bound on every wait for a job.
pub const JOB_WAIT: Duration = Duration::from_secs(30);

/// A temp dir with `bin/` (the fakes) and `state/` (their state and controls).
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.path().join("state/ctl")).unwrap();
        let fakes = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes");
        for name in ["everestctl", "kubectl", "rbac-apply"] {
            std::fs::copy(fakes.join(name), bin.join(name)).unwrap();
        }
        Sandbox { dir }
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

    pub fn db(&self) -> PathBuf {
        self.path().join("db/test.db")
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
            database_url: format!("sqlite://{}", self.db().display()),
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
        let app = TestApp {
            base,
            client,
            sandbox,
            stop: Some(tx),
            task: Some(task),
        };
        app.wait_healthy().await;
        app
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
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

    /// Runs a query against the app's database file (read-only use).
    pub async fn db_scalar(&self, sql: &str) -> i64 {
        db_scalar(&self.sandbox.db(), sql).await
    }
}

pub async fn db_scalar(db: &Path, sql: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let v: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    v
}

/// Every text stored in the database except the secrets table, for leak checks.
pub async fn stored_text(db: &Path) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let mut all = String::new();
    for sql in [
        "SELECT id || kind || status || inputs || COALESCE(summary,'') || COALESCE(error,'') || submitted_by || request_id FROM jobs",
        "SELECT name || status || COALESCE(output,'') FROM job_steps",
        "SELECT COALESCE(command,'') || COALESCE(stdin_preview,'') || stdout || stderr FROM step_attempts",
        "SELECT type || COALESCE(detail,'') FROM job_events",
    ] {
        let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap();
        all.push_str(&rows.join("\n"));
    }
    conn.close().await.unwrap();
    all
}
