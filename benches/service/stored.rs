//! The database with the stored jobs (`--stored-jobs`), on either backend: loaded once, reset
//! after each run.

use std::time::{Duration, Instant};

use anyhow::ensure;
use sqlx::Connection;

use crate::fakes::write_fakes;
use crate::load::http_client;
use crate::options::Options;
use crate::run::api_env;
use crate::service::{Db, Sandbox, Service, file_size, wal_of};
use crate::{bulk, epoch_ms};

/// At most this many ids of stored jobs are sampled for the polls.
const STORED_SAMPLE: usize = 100_000;

/// The database with `--stored-jobs` finished jobs, built once per invocation: an SQLite file
/// in its own temp dir (kept with `--keep`), or a database of the PostgreSQL cluster.
pub struct StoredDb {
    _sandbox: Sandbox,
    pub db: Db,
    pub jobs: usize,
    /// `created_at` of the newest stored job: newer jobs were submitted by a run.
    loaded_until_ms: i64,
    /// Ids of stored jobs drawn uniformly at random, in random order.
    pub sample: Vec<String>,
    /// Seconds to load the jobs and make them durable (SQLite: checkpoint and fsync of the
    /// file; PostgreSQL: `VACUUM ANALYZE` and a checkpoint).
    pub load_s: f64,
    /// Size of the database after the load (SQLite: file and WAL).
    pub bytes: u64,
}

impl StoredDb {
    /// Lets the service create the database and apply its migrations, stops it, loads the jobs
    /// and makes them durable.
    pub fn build(o: &Options, rt: &tokio::runtime::Runtime) -> anyhow::Result<StoredDb> {
        let sandbox = Sandbox::new("everestctl-api-bench-stored-", o.keep)?;
        let bin = write_fakes(sandbox.path())?;
        eprintln!("== stored jobs: the service creates the database and applies its migrations");
        let db = Db::fresh(o, rt, sandbox.path(), "stored")?;
        {
            let mut svc = Service::start(
                sandbox.path(),
                "stored",
                db.clone(),
                &api_env(&bin),
                &o.service_env,
            )?;
            rt.block_on(svc.wait_healthy(&http_client(1)?))?;
            svc.stop(Duration::from_secs(30))?;
        }
        eprintln!("   loading {} finished jobs", o.stored_jobs);
        let started = Instant::now();
        rt.block_on(load_stored_jobs(&db, o.stored_jobs, epoch_ms()))?;
        // Without this the kernel writes the loaded file back during the measurements, and
        // every fsync of the service (one per submission) waits behind that writeback.
        // (PostgreSQL's load ends with a checkpoint, to the same end.)
        if let Some(file) = db.file() {
            std::fs::File::open(file)?.sync_all()?;
        }
        let load_s = started.elapsed().as_secs_f64();
        let (loaded_until_ms, sample, bytes) = rt.block_on(sample_stored(&db, o.stored_jobs))?;
        eprintln!(
            "   loaded and made durable in {load_s:.1} s: database {:.0} MiB; {} ids sampled \
             for the polls",
            bytes as f64 / 1_048_576.0,
            sample.len()
        );
        Ok(StoredDb {
            _sandbox: sandbox,
            db,
            jobs: o.stored_jobs,
            loaded_until_ms,
            sample,
            load_s,
            bytes,
        })
    }

    /// The ids the polls spread over: the sample of stored jobs and a random share of the jobs
    /// just `submitted` in proportion to their number (so that each job in the database is
    /// equally likely), in random order.
    pub fn poll_ids(&self, mut submitted: Vec<String>) -> Vec<String> {
        use rand::seq::SliceRandom;
        let mut rng = rand::rng();
        let share = self.sample.len() as f64 * submitted.len() as f64 / self.jobs as f64;
        submitted.shuffle(&mut rng);
        submitted.truncate((share.round() as usize).max(1));
        let mut ids = self.sample.clone();
        ids.append(&mut submitted);
        ids.shuffle(&mut rng);
        ids
    }

    /// After a run's phases (the service stopped): deletes the jobs the run submitted (their
    /// steps, attempts, events and secrets go with them, `ON DELETE CASCADE`) and their locks,
    /// gives the freed space back and makes that durable, and checks that every stored job is
    /// still there.
    pub async fn reset(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        let until = self.loaded_until_ms;
        let mut conn = Conn::open(&self.db).await?;
        let deleted = conn
            .int(&format!(
                "SELECT COUNT(*) FROM jobs WHERE created_at > {until}"
            ))
            .await?;
        let statements = match &self.db {
            Db::Sqlite(_) => vec![
                "PRAGMA foreign_keys = ON".to_string(),
                format!("DELETE FROM jobs WHERE created_at > {until}"),
                "DELETE FROM resource_locks".to_string(),
                "PRAGMA incremental_vacuum".to_string(),
                "PRAGMA wal_checkpoint(TRUNCATE)".to_string(),
            ],
            Db::Postgres(_) => vec![
                format!("DELETE FROM jobs WHERE created_at > {until}"),
                "DELETE FROM resource_locks".to_string(),
                "VACUUM ANALYZE".to_string(),
                "CHECKPOINT".to_string(),
            ],
        };
        for sql in &statements {
            conn.execute(sql).await?;
        }
        let left = conn.int("SELECT COUNT(*) FROM jobs").await?;
        conn.close().await?;
        if let Some(file) = self.db.file() {
            std::fs::File::open(file)?.sync_all()?;
        }
        eprintln!(
            "   stored jobs: the {deleted} jobs of this run deleted again in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        ensure!(
            left == self.jobs as i64,
            "{left} of the {} stored jobs are left: the service deleted some (is \
             JOB_RETENTION_DAYS overridden with --service-env?)",
            self.jobs
        );
        Ok(())
    }
}

/// Loads `jobs` finished jobs, created over the 89 days before `now` (within any retention of
/// 90 days or more), in one transaction: the load of `tests/scale.rs` (5,000 users, two admin
/// keys, 92 % succeeded / 5 % failed / 3 % canceled, each job with 4 steps, 4 attempts,
/// 11 events and a purged secret), without its jobs older than 90 days.
async fn load_stored_jobs(db: &Db, jobs: usize, now: i64) -> anyhow::Result<()> {
    const DAY: i64 = 86_400_000;
    let n = i64::try_from(jobs)?;
    let step = (88 * DAY / n).max(1);
    // Constant parts computed here: on PostgreSQL `89 * 86400000` would overflow `integer`.
    let created = format!("{} + i * {step}", now - 89 * DAY);
    let statements = match db {
        Db::Sqlite(_) => bulk::load_statements(n, &created),
        Db::Postgres(_) => bulk::pg_load_statements(n, &created),
    };
    let mut conn = Conn::open(db).await?;
    for sql in &statements {
        let t = Instant::now();
        conn.execute(sql).await?;
        let head: String = sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        eprintln!("     {head:<40} {:>7.1} s", t.elapsed().as_secs_f64());
    }
    conn.close().await
}

/// Checks the number of stored jobs; returns the newest `created_at`, up to `STORED_SAMPLE`
/// ids drawn uniformly at random, and the size of the database.
async fn sample_stored(db: &Db, jobs: usize) -> anyhow::Result<(i64, Vec<String>, u64)> {
    let mut conn = Conn::open(db).await?;
    let count = conn.int("SELECT COUNT(*) FROM jobs").await?;
    let until = conn.int("SELECT MAX(created_at) FROM jobs").await?;
    ensure!(
        count == jobs as i64,
        "{count} jobs in the loaded database, not {jobs}"
    );
    let sample = conn
        .strings(&format!(
            "SELECT id FROM jobs ORDER BY random() LIMIT {STORED_SAMPLE}"
        ))
        .await?;
    let bytes = match db {
        Db::Sqlite(file) => file_size(file) + file_size(&wal_of(file)),
        Db::Postgres(_) => {
            let bytes = conn
                .int("SELECT pg_database_size(current_database())")
                .await?;
            u64::try_from(bytes)?
        }
    };
    conn.close().await?;
    Ok((until, sample, bytes))
}

/// A connection to the stored-jobs database, for the few statements the loader and the reset
/// run (the same SQL on both backends where it can be).
enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Conn {
    async fn open(db: &Db) -> anyhow::Result<Conn> {
        Ok(match db {
            Db::Sqlite(_) => Conn::Sqlite(sqlx::SqliteConnection::connect(&db.url()).await?),
            Db::Postgres(url) => Conn::Postgres(sqlx::PgConnection::connect(url).await?),
        })
    }

    /// Runs `sql` (one statement, no parameters).
    async fn execute(&mut self, sql: &str) -> anyhow::Result<()> {
        match self {
            Conn::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(drop)?,
            Conn::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(drop)?,
        }
        Ok(())
    }

    /// The integer of the one row and column of `sql`.
    async fn int(&mut self, sql: &str) -> anyhow::Result<i64> {
        Ok(match self {
            Conn::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
            Conn::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
        })
    }

    /// The first column of every row of `sql`.
    async fn strings(&mut self, sql: &str) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Conn::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await?,
            Conn::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await?,
        })
    }

    async fn close(self) -> anyhow::Result<()> {
        match self {
            Conn::Sqlite(c) => c.close().await?,
            Conn::Postgres(c) => c.close().await?,
        }
        Ok(())
    }
}
