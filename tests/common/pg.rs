//! A private PostgreSQL 15 cluster for the tests of one test binary, and a fresh database per
//! test.
//!
//! The cluster is started on first use, once per test binary: `initdb` and `pg_ctl` run as the
//! `postgres` user (PostgreSQL refuses to run as root) in a temp dir, listening only on a unix
//! socket in that dir, with the server's defaults (fsync on). A watchdog process, started with
//! the cluster, holds the read end of a pipe whose write end only this process holds: when the
//! test binary exits, however it ends (tests passed, a test panicked, killed), the pipe closes
//! and the watchdog stops the cluster (bounded: fast, then immediate, then SIGKILL) and deletes
//! the dir.
//!
//! Where PostgreSQL 15 cannot run (its binaries missing, or not root), [`database`] prints why
//! on stderr and returns `None`, and the test skips itself. With `EVERESTCTL_TEST_PG=require`
//! (CI sets it) that is a failure instead, so CI cannot skip them silently.
//! `EVERESTCTL_TEST_PG_BIN` overrides the folder of the binaries.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// `require`: a PostgreSQL test that cannot run fails instead of skipping.
pub const REQUIRE_ENV: &str = "EVERESTCTL_TEST_PG";
/// The folder of `postgres`, `initdb` and `pg_ctl`.
pub const BIN_ENV: &str = "EVERESTCTL_TEST_PG_BIN";
/// Where Debian's `postgresql-15` puts them.
pub const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A fresh, empty database of the test binary's cluster.
pub struct Database {
    /// The database's name (unique within the test binary).
    pub name: String,
    /// A URL sqlx accepts: `postgres:///<name>?host=<socket dir>&user=postgres`.
    pub url: String,
}

impl Database {
    /// A new connection to this database.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.name))
    }
}

/// A fresh database for `test`, or `None` (after saying why on stderr) when PostgreSQL cannot
/// run here and `EVERESTCTL_TEST_PG` is not `require`. Panics if PostgreSQL is there but its
/// cluster does not start.
pub async fn database(test: &str) -> Option<Database> {
    if !available(test) {
        return None;
    }
    let cluster = CLUSTER
        .get_or_init(|| Cluster::start(&bin_dir()))
        .as_ref()
        .unwrap_or_else(|e| panic!("the PostgreSQL test cluster did not start: {e}"));
    Some(cluster.create_database(test).await)
}

/// Whether PostgreSQL can run here; if not, reports `test` as [`database`] does (a skip on
/// stderr, or with `EVERESTCTL_TEST_PG=require` a panic). Starts nothing.
pub fn available(test: &str) -> bool {
    match runnable(&bin_dir(), is_root()) {
        Ok(()) => true,
        Err(reason) => {
            skip_or_fail(test, &reason, required());
            false
        }
    }
}

/// Why PostgreSQL tests cannot run with the binaries in `bin` (or `Ok` when they can).
pub fn runnable(bin: &Path, root: bool) -> Result<(), String> {
    let postgres = bin.join("postgres");
    if !postgres.is_file() {
        return Err(format!("{} not found", postgres.display()));
    }
    if !root {
        return Err("not root (the test cluster runs as the postgres user via runuser)".into());
    }
    Ok(())
}

/// Reports a test that cannot run: a skip on stderr, or with `required` a panic.
pub fn skip_or_fail(test: &str, reason: &str, required: bool) {
    if required {
        panic!("{test}: PostgreSQL is required ({REQUIRE_ENV}=require) but {reason}");
    }
    // Written to the process's stderr, not through `eprintln!`, which the test harness
    // captures and shows only for failing tests: a skip must be visible.
    let _ = writeln!(std::io::stderr(), "{}", skip_message(test, reason));
}

/// The line that reports a skipped test.
pub fn skip_message(test: &str, reason: &str) -> String {
    format!(
        "SKIPPED {test}: PostgreSQL 15 is not available here ({reason}); \
         set {REQUIRE_ENV}=require to make this a failure"
    )
}

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "require")
}

fn bin_dir() -> PathBuf {
    std::env::var_os(BIN_ENV).map_or_else(|| DEFAULT_BIN.into(), PathBuf::from)
}

/// Whether this process runs as root (the owner of `/proc/self` is its effective user).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The running cluster of this test binary. Never dropped (it is in a static): the watchdog
/// stops it when the process exits.
struct Cluster {
    /// The socket dir, also the parent of the data dir.
    dir: PathBuf,
    /// The watchdog; its stdin is the pipe whose closing stops the cluster.
    _watchdog: Child,
    databases: AtomicU32,
}

/// Runs as the watchdog: `$1` the cluster's dir, `$2` the binaries. Ignores the signals a
/// Ctrl-C or hang-up sends the whole process group, so that it still cleans up then.
const WATCHDOG: &str = r#"trap '' INT TERM HUP
cat >/dev/null
if [ -f "$1/data/postmaster.pid" ]; then
  runuser -u postgres -- "$2/pg_ctl" -D "$1/data" -m fast -t 20 stop >/dev/null 2>&1 ||
  runuser -u postgres -- "$2/pg_ctl" -D "$1/data" -m immediate -t 10 stop >/dev/null 2>&1 ||
  kill -KILL "$(head -1 "$1/data/postmaster.pid")" 2>/dev/null
fi
rm -rf "$1""#;

impl Cluster {
    fn start(bin: &Path) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("everestctl-pg.")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?
            .keep();
        // Started first, so that the dir goes even if a step below fails.
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(&dir)
            .arg(bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("watchdog: {e}"))?;
        run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        run(Command::new("chmod").arg("755").arg(&dir))?;
        let data = dir.join("data");
        // `--no-sync` skips only initdb's final flush of the new files; the server runs with
        // fsync on, as in production.
        run(as_postgres(bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync"]))?;
        start_server(bin, &dir)?;
        Ok(Cluster {
            dir,
            _watchdog: watchdog,
            databases: AtomicU32::new(0),
        })
    }

    fn url(&self, database: &str) -> String {
        format!(
            "postgres:///{database}?host={}&user=postgres",
            self.dir.display()
        )
    }

    async fn create_database(&self, test: &str) -> Database {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let mut name = format!("t{n}_");
        name.extend(
            test.chars()
                .map(|c| c.to_ascii_lowercase())
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
        name.truncate(63); // PostgreSQL's identifier limit; the prefix keeps it unique
        let mut admin = PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test cluster");
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        let url = self.url(&name);
        Database { name, url }
    }
}

/// Starts the server of the cluster in `dir` (listening only on its unix socket there).
fn start_server(bin: &Path, dir: &Path) -> Result<(), String> {
    // Enough connections for the tests of one binary running at once, each with a pool and a
    // listener, and several replicas each.
    let options = format!(
        "-c listen_addresses='' -k {} -c max_connections=400",
        dir.display()
    );
    let started = run(as_postgres(bin, "pg_ctl")
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(["-w", "-t", "30", "-o", &options, "start"]));
    started.map_err(|e| {
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        format!("{e}\nserver.log:\n{log}")
    })
}

/// The running cluster of this test binary (started if needed); panics where PostgreSQL
/// cannot run, so call it only after [`database`] returned a database.
fn cluster() -> &'static Cluster {
    CLUSTER
        .get()
        .and_then(|c| c.as_ref().ok())
        .expect("the PostgreSQL test cluster runs (call `database` first)")
}

/// The pid of this binary's PostgreSQL server (its postmaster, the parent of every backend),
/// if its cluster was started.
pub fn server_pid() -> Option<u32> {
    let cluster = CLUSTER.get()?.as_ref().ok()?;
    let pid = std::fs::read_to_string(cluster.dir.join("data").join("postmaster.pid")).ok()?;
    pid.lines().next()?.trim().parse().ok()
}

/// Stops this test binary's cluster the way an operator's restart does (`pg_ctl stop -m fast`:
/// every connection is cut), and waits until it is down. It stops the database of every test
/// of the binary: a test that calls it must be alone in its binary.
pub fn stop_cluster() {
    let cluster = cluster();
    run(as_postgres(&bin_dir(), "pg_ctl")
        .arg("-D")
        .arg(cluster.dir.join("data"))
        .args(["-m", "fast", "-w", "-t", "30", "stop"]))
    .unwrap_or_else(|e| panic!("stop the test cluster: {e}"));
}

/// Starts the cluster again after [`stop_cluster`], with its data, on the same socket.
pub fn start_cluster() {
    start_server(&bin_dir(), &cluster().dir).unwrap_or_else(|e| panic!("restart: {e}"));
}

fn as_postgres(bin: &Path, program: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(bin.join(program));
    command
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}
