//! The service processes under test: their databases, start, readiness, memory and stop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::options::{Backend, Options};
use crate::{KEY, SERVICE_BIN, pg};

/// The run's temp dir (fakes, databases, service logs), kept with `--keep`.
pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    keep: bool,
}

impl Sandbox {
    /// A new temp dir named `prefix` and a random suffix.
    pub fn new(prefix: &str, keep: bool) -> anyhow::Result<Sandbox> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        Ok(Sandbox {
            dir: Some(dir),
            keep,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("sandbox dir").path()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take().filter(|_| self.keep) {
            eprintln!("   kept {}", dir.keep().display());
        }
    }
}

/// Where a service keeps its jobs.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Db {
    /// A fresh database for instance `name` of the run in `dir`: `dir/name/bench.db`, or a new
    /// database of the PostgreSQL cluster.
    pub fn fresh(
        o: &Options,
        rt: &tokio::runtime::Runtime,
        dir: &Path,
        name: &str,
    ) -> anyhow::Result<Db> {
        Ok(match o.backend {
            Backend::Sqlite => Db::Sqlite(dir.join(name).join("bench.db")),
            Backend::Postgres => {
                // `database` returns None (having said why) where PostgreSQL cannot run.
                let db = rt
                    .block_on(pg::database(&format!("bench_{name}")))
                    .context("--backend postgres: PostgreSQL 15 cannot run here")?;
                Db::Postgres(db.url)
            }
        })
    }

    pub fn url(&self) -> String {
        match self {
            Db::Sqlite(path) => format!("sqlite://{}", path.display()),
            Db::Postgres(url) => url.clone(),
        }
    }

    /// The SQLite file, for the figures that are about it.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Db::Sqlite(path) => Some(path),
            Db::Postgres(_) => None,
        }
    }
}

/// A running `everestctl-api` (killed when dropped, if it was not stopped).
pub struct Service {
    child: Child,
    base: String,
    pub db: Db,
    log: PathBuf,
}

impl Service {
    /// The service on `db`, logging to `dir/name.log`.
    pub fn start(
        dir: &Path,
        name: &str,
        db: Db,
        env: &[(&str, String)],
        extra_env: &[(String, String)],
    ) -> anyhow::Result<Service> {
        let log = dir.join(format!("{name}.log"));
        Service::start_at(db, log, env, extra_env)
    }

    pub fn start_at(
        db: Db,
        log: PathBuf,
        env: &[(&str, String)],
        extra_env: &[(String, String)],
    ) -> anyhow::Result<Service> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // HOME: the folder of the log, i.e. the run's temp dir.
        let home = log.parent().unwrap_or(Path::new("/"));
        let mut cmd = Command::new(SERVICE_BIN);
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home)
            .env("ADMIN_API_KEYS", format!("bench:{KEY}"))
            .env("BIND_ADDR", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", db.url())
            .env("RBAC_MODE", "skip")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {SERVICE_BIN}"))?;
        let mut svc = Service {
            child,
            base: format!("http://127.0.0.1:{port}"),
            db,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = svc.child.try_wait()? {
                bail!("the service exited ({status}) at start: {}", svc.log_tail());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(svc);
            }
            if Instant::now() > deadline {
                bail!("the service did not listen within 30s: {}", svc.log_tail());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub async fn wait_healthy(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("the service is not ready: {}", self.log_tail())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Says on stderr what the service logged as errors (the first few lines), for a phase
    /// whose requests failed.
    pub fn report_errors(&self) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(r#""level":"ERROR""#))
            .collect();
        if let Some(first) = errors.first() {
            eprintln!(
                "     the service logged {} errors; the first: {first}",
                errors.len()
            );
        }
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Memory {
            hwm_kib: field("VmHWM:"),
            rss_kib: field("VmRSS:"),
        })
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub fn stop(&mut self, bound: Duration) -> anyhow::Result<()> {
        signal(self.pid(), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "the service exited with {status}: {}",
                    self.log_tail()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the service did not stop within {bound:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

pub struct Memory {
    pub hwm_kib: u64,
    pub rss_kib: u64,
}

/// CPU seconds (user + system) of the service, of its waited-for children, of this process and
/// What the database of the jobs instance says after the end-to-end phase (read-only).
pub struct DbFacts {
    pub finished: i64,
    pub succeeded: i64,
    pub statuses: Vec<(String, i64)>,
    pub last_finished_ms: Option<i64>,
    pub first_created_ms: i64,
    pub last_created_ms: i64,
    pub events: i64,
    pub first_error: String,
}

pub async fn db_facts(db: &Db) -> anyhow::Result<DbFacts> {
    use sqlx::Connection;
    match db {
        Db::Sqlite(path) => {
            let url = format!("sqlite://{}?mode=ro", path.display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await?;
            let facts = db_facts_of::<sqlx::Sqlite>(&mut conn).await;
            conn.close().await?;
            facts
        }
        Db::Postgres(url) => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let facts = db_facts_of::<sqlx::Postgres>(&mut conn).await;
            conn.close().await?;
            facts
        }
    }
}

/// The same questions on either backend's connection (the SQL is the same on both).
async fn db_facts_of<DB>(conn: &mut <DB as sqlx::Database>::Connection) -> anyhow::Result<DbFacts>
where
    DB: sqlx::Database,
    for<'c> &'c mut <DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    String: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    usize: sqlx::ColumnIndex<<DB as sqlx::Database>::Row>,
{
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status")
            .fetch_all(&mut *conn)
            .await?;
    let count = |names: &[&str]| -> i64 {
        statuses
            .iter()
            .filter(|(s, _)| names.contains(&s.as_str()))
            .map(|(_, n)| n)
            .sum()
    };
    let (last_finished_ms, first_created_ms, last_created_ms): (Option<i64>, i64, i64) =
        sqlx::query_as("SELECT MAX(finished_at), MIN(created_at), MAX(created_at) FROM jobs")
            .fetch_one(&mut *conn)
            .await?;
    let events: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_events WHERE job_id IN (SELECT id FROM jobs WHERE status = 'succeeded')",
    )
    .fetch_one(&mut *conn)
    .await?;
    // `error` is JSON text on SQLite and jsonb on PostgreSQL: compared as text on both.
    let first_error: Option<String> =
        sqlx::query_scalar("SELECT CAST(error AS TEXT) FROM jobs WHERE status = 'failed' LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
    Ok(DbFacts {
        finished: count(&["succeeded", "failed", "canceled"]),
        succeeded: count(&["succeeded"]),
        statuses: statuses.clone(),
        last_finished_ms,
        first_created_ms,
        last_created_ms,
        events,
        first_error: first_error.unwrap_or_default(),
    })
}

pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// SQLite's write-ahead log of the database file `db`.
pub fn wal_of(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    p.into()
}
