//! The database with the stored jobs (`--stored-jobs`): loaded once, reset after each run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::ensure;

use crate::fakes::write_fakes;
use crate::load::http_client;
use crate::options::Options;
use crate::run::api_env;
use crate::service::{Db, Sandbox, Service, file_size, wal_of};
use crate::{bulk, epoch_ms};

/// At most this many ids of stored jobs are sampled for the polls.
const STORED_SAMPLE: usize = 100_000;

/// The database with `--stored-jobs` finished jobs, built once per invocation in its own temp
/// dir (kept with `--keep`).
pub struct StoredDb {
    _sandbox: Sandbox,
    /// The database, for the service.
    pub db: Db,
    /// Its file.
    file: PathBuf,
    pub jobs: usize,
    /// `created_at` of the newest stored job: newer jobs were submitted by a run.
    loaded_until_ms: i64,
    /// Ids of stored jobs drawn uniformly at random, in random order.
    pub sample: Vec<String>,
    /// Seconds to load the jobs, checkpoint and fsync the file.
    pub load_s: f64,
    /// Size of the database (and WAL) after the load.
    pub bytes: u64,
}

impl StoredDb {
    /// Lets the service create the database and apply its migrations, stops it, loads the jobs
    /// and fsyncs the file.
    pub fn build(o: &Options, rt: &tokio::runtime::Runtime) -> anyhow::Result<StoredDb> {
        let sandbox = Sandbox::new("everestctl-api-bench-stored-", o.keep)?;
        let bin = write_fakes(sandbox.path())?;
        eprintln!("== stored jobs: the service creates the database and applies its migrations");
        let db = sandbox.path().join("stored").join("bench.db");
        {
            let file = Db::Sqlite(db.clone());
            let mut svc = Service::start(
                sandbox.path(),
                "stored",
                file,
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
        std::fs::File::open(&db)?.sync_all()?;
        let load_s = started.elapsed().as_secs_f64();
        let bytes = file_size(&db) + file_size(&wal_of(&db));
        let (loaded_until_ms, sample) = rt.block_on(sample_stored(&db, o.stored_jobs))?;
        eprintln!(
            "   loaded and fsynced in {load_s:.1} s: database {:.0} MiB; {} ids sampled for the \
             polls",
            bytes as f64 / 1_048_576.0,
            sample.len()
        );
        Ok(StoredDb {
            _sandbox: sandbox,
            db: Db::Sqlite(db.clone()),
            file: db,
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
    /// gives the freed pages back, fsyncs, and checks that every stored job is still there.
    pub async fn reset(&self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let started = Instant::now();
        let url = format!("sqlite://{}", self.file.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await?;
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut conn)
            .await?;
        let deleted = sqlx::query("DELETE FROM jobs WHERE created_at > ?")
            .bind(self.loaded_until_ms)
            .execute(&mut conn)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM resource_locks")
            .execute(&mut conn)
            .await?;
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(&mut conn)
            .await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await?;
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        std::fs::File::open(&self.file)?.sync_all()?;
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
async fn load_stored_jobs(db: &Path, jobs: usize, now: i64) -> anyhow::Result<()> {
    use sqlx::Connection;
    const DAY: i64 = 86_400_000;
    let n = i64::try_from(jobs)?;
    let step = (88 * DAY / n).max(1);
    let created = format!("{now} - 89 * {DAY} + i * {step}");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    let statements = bulk::load_statements(n, &created);
    for sql in &statements {
        let t = Instant::now();
        sqlx::query(sql).execute(&mut conn).await?;
        let head: String = sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        eprintln!("     {head:<40} {:>7.1} s", t.elapsed().as_secs_f64());
    }
    conn.close().await?;
    Ok(())
}

/// Checks the number of stored jobs; returns the newest `created_at` and up to `STORED_SAMPLE`
/// ids drawn uniformly at random.
async fn sample_stored(db: &Path, jobs: usize) -> anyhow::Result<(i64, Vec<String>)> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    let (count, until): (i64, i64) = sqlx::query_as("SELECT COUNT(*), MAX(created_at) FROM jobs")
        .fetch_one(&mut conn)
        .await?;
    ensure!(
        count == jobs as i64,
        "{count} jobs in the loaded database, not {jobs}"
    );
    let sample: Vec<String> = sqlx::query_scalar("SELECT id FROM jobs ORDER BY random() LIMIT ?")
        .bind(STORED_SAMPLE as i64)
        .fetch_all(&mut conn)
        .await?;
    conn.close().await?;
    Ok((until, sample))
}
