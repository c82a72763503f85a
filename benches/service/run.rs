//! One run: the API instance, the stored-jobs instance, the jobs instance, their phases in that
//! order (the file header of `main.rs` describes them).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::ensure;

use crate::cpu::{Cpu, note_noise};
use crate::epoch_ms;
use crate::fakes::write_fakes;
use crate::figures::{Figures, Load};
use crate::floor::{spawn_floor_exec, spawn_floor_std};
use crate::load::{bare_ceiling, drive, get_op, http_client, poll_op, submit_op, wait_finished};
use crate::options::{Backend, Options};
use crate::profile::Profile;
use crate::service::{Db, Sandbox, Service, db_facts, file_size, wal_of};
use crate::stored::StoredDb;

/// One run's figures.
pub fn run_once(
    o: &Options,
    rt: &tokio::runtime::Runtime,
    run: usize,
    stored: Option<&StoredDb>,
) -> anyhow::Result<Figures> {
    let mut f = Figures::default();
    let sandbox = Sandbox::new("everestctl-api-bench-", o.keep)?;
    let bin = write_fakes(sandbox.path())?;
    let r = Run {
        o,
        rt,
        client: http_client(o.clients)?,
        sandbox,
        bin,
        run,
    };
    r.api_instance(&mut f)?;
    if let Some(stored) = stored {
        r.stored_instance(&mut f, stored)?;
    }
    r.jobs_instance(&mut f)?;
    f.ratios();
    Ok(f)
}

/// What every phase of a run needs.
struct Run<'a> {
    o: &'a Options,
    rt: &'a tokio::runtime::Runtime,
    /// The load generator's client.
    client: reqwest::Client,
    sandbox: Sandbox,
    /// The fake CLIs.
    bin: PathBuf,
    /// The run's number (in the names of its databases and profiles).
    run: usize,
}

impl Run<'_> {
    /// The API instance: the worker pool blocked by a command that never returns. The load
    /// generator's ceilings, then submit and polls on the empty database.
    fn api_instance(&self, f: &mut Figures) -> anyhow::Result<()> {
        let (o, rt) = (self.o, self.rt);
        let db = Db::fresh(o, rt, self.sandbox.path(), &format!("api_{}", self.run))?;
        let mut svc = Service::start(
            self.sandbox.path(),
            "api",
            db,
            &api_env(&self.bin),
            &o.service_env,
        )?;
        rt.block_on(svc.wait_healthy(&self.client))?;

        eprintln!("   ceiling: GET /healthz, {} clients", o.clients);
        let url: Arc<str> = svc.url("/healthz").into();
        let before = Cpu::sample(&[svc.pid()]);
        let r = rt.block_on(drive(o, None, get_op(&self.client, url, 200)));
        let cpu = Cpu::sample(&[svc.pid()]).since(&before);
        note_noise(f, "the /healthz ceiling", &cpu);
        r.check("GET /healthz")?;
        f.ceiling_healthz_rps = r.rate();
        f.ceiling_healthz_p99_ms = r.pct(99.0);
        f.ceiling_loadgen_cpu_us = cpu.bench * 1e6 / r.total() as f64;
        f.ceiling_service_cpu_us = cpu.service * 1e6 / r.total() as f64;

        eprintln!("   ceiling: bare axum server in the bench process");
        f.ceiling_bare_rps = rt.block_on(bare_ceiling(o))?;

        let phase = Phase {
            run: self,
            svc: &svc,
        };
        eprintln!("   submit: POST /bootstrap/users, {} clients", o.clients);
        let (submit, ids) = phase.submit(f, "submit", "submit", "s")?;
        Load {
            rps: f.submit_rps,
            p50_ms: f.submit_p50_ms,
            p99_ms: f.submit_p99_ms,
            errors: f.submit_errors,
            service_cpu_us: f.submit_service_cpu_us,
            loadgen_cpu_us: f.submit_loadgen_cpu_us,
        } = submit;
        eprintln!(
            "   polls: GET /jobs/{{id}} over {} queued jobs, {} clients",
            ids.len(),
            o.clients
        );
        ensure!(!ids.is_empty(), "no job ids to poll");
        Load {
            rps: f.polls_rps,
            p50_ms: f.polls_p50_ms,
            p99_ms: f.polls_p99_ms,
            errors: f.polls_errors,
            service_cpu_us: f.polls_service_cpu_us,
            loadgen_cpu_us: f.polls_loadgen_cpu_us,
        } = phase.polls(f, "polls", "polls", Arc::new(ids))?;
        f.vm_hwm_api_mib = svc.memory()?.hwm_kib as f64 / 1024.0;
        svc.stop(Duration::from_secs(30))
    }

    /// The API instance's configuration on the database with the stored jobs: submit and
    /// polls; then the jobs the run submitted are deleted again.
    fn stored_instance(&self, f: &mut Figures, stored: &StoredDb) -> anyhow::Result<()> {
        let (o, rt) = (self.o, self.rt);
        let mut svc = Service::start_at(
            stored.db.clone(),
            self.sandbox.path().join("stored.log"),
            &api_env(&self.bin),
            &o.service_env,
        )?;
        rt.block_on(svc.wait_healthy(&self.client))?;
        let phase = Phase {
            run: self,
            svc: &svc,
        };
        f.stored_jobs = Some(stored.jobs as f64);
        eprintln!(
            "   submit with {} stored jobs: POST /bootstrap/users, {} clients",
            stored.jobs, o.clients
        );
        let (submit, submitted) =
            phase.submit(f, "stored_submit", "submit with the stored jobs", "l")?;
        Load {
            rps: f.stored_submit_rps,
            p50_ms: f.stored_submit_p50_ms,
            p99_ms: f.stored_submit_p99_ms,
            errors: f.stored_submit_errors,
            service_cpu_us: f.stored_submit_service_cpu_us,
            loadgen_cpu_us: f.stored_submit_loadgen_cpu_us,
        } = submit.some();
        let ids = stored.poll_ids(submitted);
        eprintln!(
            "   polls with {} stored jobs: GET /jobs/{{id}} over {} ids (stored and just \
             submitted), {} clients",
            stored.jobs,
            ids.len(),
            o.clients
        );
        let polls = phase.polls(
            f,
            "stored_polls",
            "polls with the stored jobs",
            Arc::new(ids),
        )?;
        Load {
            rps: f.stored_polls_rps,
            p50_ms: f.stored_polls_p50_ms,
            p99_ms: f.stored_polls_p99_ms,
            errors: f.stored_polls_errors,
            service_cpu_us: f.stored_polls_service_cpu_us,
            loadgen_cpu_us: f.stored_polls_loadgen_cpu_us,
        } = polls.some();
        f.vm_hwm_stored_mib = Some(svc.memory()?.hwm_kib as f64 / 1024.0);
        svc.stop(Duration::from_secs(30))?;
        rt.block_on(stored.reset())
    }

    /// The jobs instance: fast fakes, `WORKER_CONCURRENCY=--workers`, `--replicas` services on
    /// one database. The spawn floors (the services idle), end to end, memory, database size.
    fn jobs_instance(&self, f: &mut Figures) -> anyhow::Result<()> {
        let db = Db::fresh(
            self.o,
            self.rt,
            self.sandbox.path(),
            &format!("jobs_{}", self.run),
        )?;
        let mut replicas = Vec::with_capacity(self.o.replicas);
        for n in 0..self.o.replicas {
            let name = if n == 0 {
                "jobs".to_string()
            } else {
                format!("jobs-{n}")
            };
            replicas.push(self.start_jobs_service(&name, db.clone())?);
        }
        for svc in &replicas {
            self.rt.block_on(svc.wait_healthy(&self.client))?;
        }
        self.spawn_floors(f)?;
        let complete = self.end_to_end(f, &replicas)?;
        // The database's size on disk: SQLite's file and WAL (PostgreSQL's files are the
        // server's).
        let file = replicas[0].db.file().map(Path::to_path_buf);
        if let Some(file) = &file {
            let (db_bytes, wal_bytes) = (file_size(file), file_size(&wal_of(file)));
            // Per job only when every job finished: queued jobs are smaller than finished ones.
            if let Some(jobs) = complete {
                f.db_bytes_per_job = Some((db_bytes + wal_bytes) as f64 / jobs as f64);
            }
            eprintln!("   db {db_bytes} B, wal {wal_bytes} B");
        }
        for svc in &mut replicas {
            svc.stop(Duration::from_secs(60))?;
        }
        if let (Some(file), Some(jobs)) = (&file, complete) {
            let checkpointed = file_size(file) + file_size(&wal_of(file));
            f.db_checkpointed_bytes_per_job = Some(checkpointed as f64 / jobs as f64);
        }
        Ok(())
    }

    /// A service of the jobs instance, `name`, on `db`.
    fn start_jobs_service(&self, name: &str, db: Db) -> anyhow::Result<Service> {
        let (bin, dir) = (&self.bin, self.sandbox.path());
        Service::start(
            dir,
            name,
            db,
            &[
                (
                    "EVERESTCTL_BIN",
                    bin.join("everestctl").display().to_string(),
                ),
                ("KUBECTL_BIN", bin.join("kubectl").display().to_string()),
                ("WORKER_CONCURRENCY", self.o.workers.to_string()),
                // Each replica its own private folder (they share the run's temp dir).
                (
                    "PRIVATE_TMP_DIR",
                    dir.join(format!("{name}-tmp")).display().to_string(),
                ),
            ],
            &self.o.service_env,
        )
    }

    /// The spawn floors, each for half of `--duration`.
    fn spawn_floors(&self, f: &mut Figures) -> anyhow::Result<()> {
        let (bin, workers, duration) = (&self.bin, self.o.workers, self.o.duration / 2);
        eprintln!("   spawn floor: std::process, parallelism {workers}");
        (f.floor_jobs_per_s, f.floor_cpu_ms_per_job) = floor(f, "the spawn floor", || {
            spawn_floor_std(bin, workers, duration)
        })?;
        eprintln!("   spawn floor: exec::run, parallelism {workers}");
        (f.floor_exec_jobs_per_s, f.floor_exec_cpu_ms_per_job) =
            floor(f, "the exec::run floor", || {
                spawn_floor_exec(bin, workers, duration)
            })?;
        Ok(())
    }

    /// `--jobs` bootstraps submitted round-robin to the `replicas`, until the last one
    /// finished (bounded by `--e2e-timeout`). Returns the number of jobs when every job that
    /// was accepted finished.
    fn end_to_end(&self, f: &mut Figures, replicas: &[Service]) -> anyhow::Result<Option<u64>> {
        let (o, rt) = (self.o, self.rt);
        eprintln!(
            "   end to end: {} bootstrap jobs (bound {:?})",
            o.jobs, o.e2e_timeout
        );
        let pids: Vec<u32> = replicas.iter().map(Service::pid).collect();
        let svc = &replicas[0];
        let phase_start = Instant::now();
        let profiler = Profile::attach(o.profile, svc.pid(), self.run, "e2e")?;
        let before = Cpu::sample(&pids);
        let first_submit_ms = epoch_ms();
        let submits = rt.block_on(drive(
            o,
            Some(o.jobs),
            submit_op(&self.client, replicas, "e", None),
        ));
        if submits.errors > 0 {
            replicas.iter().for_each(Service::report_errors);
        }
        submits.check("end-to-end submit")?;
        let remaining = o.e2e_timeout.saturating_sub(phase_start.elapsed());
        let finished = rt.block_on(wait_finished(
            &self.client,
            replicas,
            submits.ok,
            remaining,
            first_submit_ms,
        ))?;
        let cpu = Cpu::sample(&pids).since(&before);
        note_noise(f, "end to end", &cpu);
        profiler.finish()?;
        let mem = svc.memory()?;
        let db = rt.block_on(db_facts(&svc.db))?;
        ensure!(db.finished > 0, "no job finished");
        let done_ms = db.last_finished_ms.unwrap_or(finished);
        eprintln!(
            "     jobs stored from +{} ms to +{} ms, last finished at +{} ms after the first \
             submit",
            db.first_created_ms - first_submit_ms,
            db.last_created_ms - first_submit_ms,
            done_ms - first_submit_ms
        );
        let seconds = (done_ms - first_submit_ms) as f64 / 1e3;
        let jobs = db.finished as f64;
        f.e2e_jobs_per_s = jobs / seconds;
        f.e2e_finished = jobs;
        f.e2e_succeeded = db.succeeded as f64;
        f.e2e_submit_rps = submits.rate();
        f.e2e_submit_p99_ms = submits.pct(99.0);
        f.e2e_service_cpu_ms_per_job = cpu.service * 1e3 / jobs;
        f.e2e_cli_cpu_ms_per_job = cpu.service_children * 1e3 / jobs;
        if o.backend == Backend::Postgres {
            f.e2e_db_cpu_ms_per_job = Some(cpu.db * 1e3 / jobs);
        }
        f.events_per_job = db.events as f64 / db.succeeded.max(1) as f64;
        if db.succeeded != db.finished || db.finished != submits.ok as i64 {
            eprintln!(
                "   warning: {} of {} jobs succeeded (statuses: {:?}); first failure: {}",
                db.succeeded, submits.ok, db.statuses, db.first_error
            );
        }
        f.vm_hwm_mib = mem.hwm_kib as f64 / 1024.0;
        eprintln!(
            "   after {} finished jobs: VmHWM {} KiB, VmRSS {} KiB",
            db.finished, mem.hwm_kib, mem.rss_kib
        );
        Ok((db.finished == submits.ok as i64).then_some(submits.ok))
    }
}

/// Runs a spawn floor; returns its jobs per second and CPU (this process's and its
/// children's) per job in milliseconds.
fn floor(
    f: &mut Figures,
    what: &str,
    run: impl FnOnce() -> anyhow::Result<(u64, Duration)>,
) -> anyhow::Result<(f64, f64)> {
    let before = Cpu::sample(&[]);
    let (jobs, elapsed) = run()?;
    let cpu = Cpu::sample(&[]).since(&before);
    note_noise(f, what, &cpu);
    let jobs = jobs as f64;
    Ok((
        jobs / elapsed.as_secs_f64(),
        (cpu.bench + cpu.bench_children) * 1e3 / jobs,
    ))
}

/// Environment of the API instance (on the empty and on the stored-jobs database): the worker
/// pool is blocked by a command that never returns, and the retention is 100 years, so that
/// the pruner deletes none of the stored jobs.
pub fn api_env(bin: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "EVERESTCTL_BIN",
            bin.join("everestctl-blocking").display().to_string(),
        ),
        ("KUBECTL_BIN", bin.join("kubectl").display().to_string()),
        ("WORKER_CONCURRENCY", "1".into()),
        ("SUBPROCESS_TIMEOUT", "3600".into()),
        ("SHUTDOWN_GRACE_SECONDS", "0".into()),
        ("KILL_GRACE_SECONDS", "0".into()),
        ("JOB_RETENTION_DAYS", "36500".into()),
    ]
}

/// A submit or poll phase against one service; the same phases run on the empty database and
/// on the one with the stored jobs.
struct Phase<'a> {
    run: &'a Run<'a>,
    svc: &'a Service,
}

impl Phase<'_> {
    /// `POST /bootstrap/users` (usernames `prefix` and a sequence number) for `--duration`.
    /// Returns the figures and the ids of the accepted jobs.
    fn submit(
        &self,
        f: &mut Figures,
        key: &str,
        what: &str,
        prefix: &'static str,
    ) -> anyhow::Result<(Load, Vec<String>)> {
        let ids = Arc::new(Mutex::new(Vec::new()));
        let op = submit_op(
            &self.run.client,
            std::slice::from_ref(self.svc),
            prefix,
            Some(ids.clone()),
        );
        let load = self.measure(f, key, what, op)?;
        let ids = std::mem::take(&mut *ids.lock().expect("ids"));
        Ok((load, ids))
    }

    /// `GET /jobs/{id}` over `ids` for `--duration`.
    fn polls(
        &self,
        f: &mut Figures,
        key: &str,
        what: &str,
        ids: Arc<Vec<String>>,
    ) -> anyhow::Result<Load> {
        let op = poll_op(&self.run.client, self.svc, ids);
        self.measure(f, key, what, op)
    }

    /// Drives `op` for `--duration`, with the profiler of `--profile` (its output named after
    /// `key`) attached; notes the noise in `f`.
    fn measure<F, Fut>(&self, f: &mut Figures, key: &str, what: &str, op: F) -> anyhow::Result<Load>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let (o, pid) = (self.run.o, self.svc.pid());
        let profiler = Profile::attach(o.profile, pid, self.run.run, key)?;
        let before = Cpu::sample(&[pid]);
        let r = self.run.rt.block_on(drive(o, None, op));
        let cpu = Cpu::sample(&[pid]).since(&before);
        note_noise(f, what, &cpu);
        profiler.finish()?;
        if r.errors > 0 {
            self.svc.report_errors();
        }
        r.check(what)?;
        Ok(Load {
            rps: r.rate(),
            p50_ms: r.pct(50.0),
            p99_ms: r.pct(99.0),
            errors: r.errors as f64,
            service_cpu_us: cpu.service * 1e6 / r.total() as f64,
            loadgen_cpu_us: cpu.bench * 1e6 / r.total() as f64,
        })
    }
}
