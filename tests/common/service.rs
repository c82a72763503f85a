//! The real binary as a child process, with the sandbox's fakes on its `PATH`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{KEY, Sandbox};

pub const BIN: &str = env!("CARGO_BIN_EXE_everestctl-api");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary with a clean environment: the sandbox's fakes, database (on the sandbox's
/// backend) and fast retries.
pub fn command(sandbox: &Sandbox) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", sandbox.path().join("bin").display()),
        )
        .env("HOME", sandbox.path())
        .env("ADMIN_API_KEYS", format!("ops:{KEY}"))
        .env("BIND_ADDR", "127.0.0.1")
        .env("DATABASE_URL", sandbox.database_url())
        .env("RETRY_BASE_SECONDS", "0.05")
        .env("RETRY_MAX_SECONDS", "0.2")
        .env("KILL_GRACE_SECONDS", "1")
        .env("LEASE_SECONDS", "30");
    let private = sandbox.private_tmp_dir();
    if !private.is_empty() {
        cmd.env("PRIVATE_TMP_DIR", private);
    }
    cmd
}

/// A running service; killed when dropped.
pub struct Service {
    pub child: Child,
    pub base: String,
    pub log: std::path::PathBuf,
}

impl Service {
    pub fn start(sandbox: &Sandbox, run: u32) -> Service {
        Self::start_with(sandbox, run, |_| {})
    }

    pub fn start_with(sandbox: &Sandbox, run: u32, configure: impl Fn(&mut Command)) -> Service {
        // The port comes from `free_port`, so another test's process may take it first: then
        // this service exits (address in use) and starts again on another port.
        for _ in 0..5 {
            let port = free_port();
            let log = sandbox.path().join(format!("service-{run}.log"));
            let mut cmd = command(sandbox);
            cmd.env("PORT", port.to_string())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            configure(&mut cmd);
            let child = cmd.spawn().unwrap();
            let mut service = Service {
                child,
                base: format!("http://127.0.0.1:{port}"),
                log,
            };
            if service.wait_started(port) {
                return service;
            }
            let logs = service.logs();
            assert!(logs.contains("in use"), "service exited at start: {logs}");
        }
        panic!("no free port for the service after 5 tries");
    }

    /// Waits until this process says it started on `port` (a connection alone could reach
    /// another test's process); `false` when it exited instead.
    fn wait_started(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            let logs = self.logs();
            if logs.contains("everestctl-api started") && logs.contains(&format!(":{port}")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("service did not start: {}", self.logs());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends a signal with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<i32> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "service did not exit within {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls a job of a service until it is final (bounded).
pub async fn wait_final(client: &reqwest::Client, base: &str, id: &str, bound: Duration) -> Value {
    let deadline = Instant::now() + bound;
    loop {
        let v: Value = client
            .get(format!("{base}/jobs/{id}"))
            .header("X-Admin-Key", KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matches!(
            v["status"].as_str(),
            Some("succeeded" | "failed" | "canceled")
        ) {
            return v;
        }
        assert!(Instant::now() < deadline, "job did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits (bounded) until `check` holds.
pub async fn wait_for(what: &str, bound: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills the fake CLI processes a killed service left behind (they are in their own process groups).
pub fn kill_orphans(sandbox: &Sandbox) {
    for line in sandbox.calls().lines().filter(|l| l.starts_with("START")) {
        if let Some(pid) = line.split_whitespace().nth(2) {
            let _ = Command::new("kill")
                .arg("-9")
                .arg(pid)
                .stderr(Stdio::null())
                .status();
        }
    }
}
