//! Running one claimed job: its steps in order, each under its resource locks, while a watcher
//! renews the lease and listens for cancel requests and shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Shared;
use super::outcome::{end, failed_end, failed_without_command, succeeded_without_command};
use super::procedure::{self, AttemptRef, Cli};
use super::verdict::{Verdict, judge, spawn_failure};
use super::watch::{Stop, StopReason, watch};
use crate::domain::{JobError, JobInput, StepName, StepStatus};
use crate::everest::classify::is_unknown_flag;
use crate::exec::{ExecError, ExecOutput, Termination, redact, withhold};
use crate::plan::{self, Action, Confirm, Flavor, PlanError};
use crate::store::{AttemptEnd, AttemptStart, Claimed, JobEnd, Lease, Started, StoreError};

mod conclude;

/// The attempt being concluded.
enum Attempt {
    /// Its start is recorded under this id.
    Started(i64),
    /// It ran nothing, and nothing is recorded yet.
    Unstarted(AttemptStart),
}

/// What the job loop does after a step.
enum Flow {
    /// Go on at this position.
    At(usize),
    /// This step's attempt has started (with the previous step's end): run it.
    Started(Box<Prepared>, i64),
    Stop,
}

/// A step ready to start: what it runs, under which locks, and the record of its start.
struct Prepared {
    position: usize,
    step: StepName,
    action: Action,
    locks: Vec<String>,
    start: AttemptStart,
}

/// The state of one job while this worker holds it.
struct JobRun {
    shared: Arc<Shared>,
    lease: Lease,
    input: JobInput,
    /// Kind and submission time, for metrics.
    kind: String,
    created_at: i64,
    password: Option<String>,
    stop: Stop,
    steps: Vec<StepName>,
    /// Per position: failures so far, the note of a succeeded step (for the summary), and
    /// whether the step had already succeeded (or was skipped) when the job was claimed.
    failures: Vec<i64>,
    notes: Vec<Option<String>>,
    done: Vec<bool>,
}

/// Runs a claimed job until it finishes, is rescheduled or given back, or the lease is lost.
pub(super) async fn run(shared: Arc<Shared>, claimed: Claimed) {
    let lease = claimed.lease.clone();
    let stop = Stop::default();
    let watcher = tokio::spawn(watch(shared.clone(), lease.clone(), stop.clone()));
    let result = drive(shared.clone(), claimed, stop).await;
    watcher.abort();
    if let Err(e) = result {
        // The lease will expire and the job will be claimed again; steps are safe to re-run.
        tracing::warn!(job.id = %lease.job_id, error = %e, "store error while running a job");
        // Otherwise the locks went with the attempt's or the job's end, in the same transaction.
        if let Err(e) = shared.store.unlock_all(&lease).await {
            tracing::warn!(job.id = %lease.job_id, error = %e, "cannot release resource locks; they expire with the lease");
        }
    }
}

async fn drive(shared: Arc<Shared>, claimed: Claimed, stop: Stop) -> Result<(), StoreError> {
    let lease = claimed.lease.clone();
    let input = match JobInput::decode(&claimed.job.kind, &claimed.job.inputs) {
        Ok(input) => input,
        Err(detail) => {
            let error = JobError {
                step: String::new(),
                kind: "internal".into(),
                detail,
            };
            let meta = (claimed.job.kind.as_str(), claimed.job.created_at);
            return end(&shared, &lease, meta, failed_end(&error)).await;
        }
    };
    if claimed.taken_over {
        crate::telemetry::lease_recoveries(1);
        // The step must not run again while the previous owner's command still runs.
        super::stop_left_running(&shared, &claimed.left_running).await;
    }
    let mut run = JobRun {
        shared,
        lease,
        input,
        kind: claimed.job.kind.clone(),
        created_at: claimed.job.created_at,
        password: claimed.password,
        stop,
        steps: claimed
            .steps
            .iter()
            .filter_map(|s| StepName::parse(&s.name))
            .collect(),
        failures: claimed.steps.iter().map(|s| s.failures).collect(),
        notes: claimed
            .steps
            .iter()
            .map(|s| note_of(s.output.as_deref()))
            .collect(),
        done: claimed
            .steps
            .iter()
            .map(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped))
            .collect(),
    };
    tracing::info!(job.id = %run.lease.job_id, job.attempt = run.lease.attempt, "job claimed");
    let mut position = 0;
    let mut started = None;
    loop {
        let flow = match started.take() {
            Some((prepared, id)) => run.execute(prepared, id).await?,
            None => {
                while run.done.get(position) == Some(&true) {
                    position += 1;
                }
                if position >= run.steps.len() {
                    break;
                }
                if !run.may_start_step(position).await? {
                    return Ok(());
                }
                run.step(position).await?
            }
        };
        match flow {
            Flow::At(next) => position = next,
            Flow::Started(prepared, id) => started = Some((*prepared, id)),
            Flow::Stop => return Ok(()),
        }
    }
    // Every step had already succeeded (the last one ends the job itself, so this is rare).
    let summary = run.summary();
    end(
        &run.shared,
        &run.lease,
        run.meta(),
        JobEnd::Succeeded { summary },
    )
    .await
}

fn note_of(output: Option<&str>) -> Option<String> {
    let value: Value = serde_json::from_str(output?).ok()?;
    value["note"].as_str().map(String::from)
}

impl JobRun {
    /// Between steps: a canceled job ends, a draining worker gives the job back.
    async fn may_start_step(&self, position: usize) -> Result<bool, StoreError> {
        let step = self.steps[position].as_str();
        let job_end = match self.stop.reason() {
            Some(StopReason::LeaseLost) => return Ok(false),
            Some(StopReason::Canceled) => JobEnd::Canceled {
                summary: format!("Canceled before {step}."),
            },
            Some(StopReason::Shutdown) => JobEnd::Requeue {
                reason: format!("shutdown before {step}"),
            },
            None if self.shared.draining.is_cancelled() => JobEnd::Requeue {
                reason: format!("shutdown: the worker stopped before {step}"),
            },
            None => return Ok(true),
        };
        end(&self.shared, &self.lease, self.meta(), job_end).await?;
        Ok(false)
    }

    async fn step(&mut self, position: usize) -> Result<Flow, StoreError> {
        let prepared = match self.prepare(position) {
            Ok(prepared) => prepared,
            Err(error) => {
                end(&self.shared, &self.lease, self.meta(), failed_end(&error)).await?;
                return Ok(Flow::Stop);
            }
        };
        if let Action::Record { output, note } = prepared.action {
            // Nothing runs: the whole attempt is one transaction.
            let verdict = Verdict::Succeeded { output, note };
            let attempt = Attempt::Unstarted(prepared.start);
            return self
                .conclude(position, attempt, succeeded_without_command(), verdict)
                .await;
        }
        let Some(id) = self.start(prepared.start.clone(), &prepared.locks).await? else {
            return Ok(Flow::Stop);
        };
        self.execute(prepared, id).await
    }

    /// What the step at `position` runs, under which locks; an error ends the job.
    fn prepare(&self, position: usize) -> Result<Prepared, JobError> {
        let step = self.steps[position];
        let flavor = Flavor {
            legacy_mysql_flag: self.shared.legacy_mysql_flag.load(Ordering::Relaxed),
        };
        let action = plan::action(
            step,
            &self.input,
            self.password.as_deref(),
            &self.shared.settings,
            flavor,
        )
        .map_err(|e| JobError {
            step: step.as_str().into(),
            kind: match e {
                PlanError::PasswordGone => "secret_expired",
                PlanError::RbacUnavailable(_) => "rbac_unavailable",
                PlanError::Mismatch { .. } => "internal",
            }
            .into(),
            detail: e.to_string(),
        })?;
        let locks = plan::locks(step, &self.input, &action);
        let (command, stdin_preview) = match &action {
            Action::Run {
                spec,
                stdin_preview,
                ..
            }
            | Action::RunInManagedNamespace {
                spec,
                stdin_preview,
                ..
            } => (spec.display(), stdin_preview.clone()),
            Action::ConfigMap(_) => (
                plan::configmap_commands(&self.shared.settings, "<candidate-policy-file>"),
                None,
            ),
            Action::ApplyPolicy { policy, template } => (
                plan::policy_command(template, "<policy-file>", &self.shared.settings).display(),
                Some(policy.clone()),
            ),
            Action::Record { .. } => ("(nothing to run)".to_string(), None),
        };
        let secrets = self.secrets();
        let start = AttemptStart {
            position: position as i64,
            step: step.as_str().to_string(),
            command: redact(&command, &secrets),
            stdin_preview: stdin_preview.map(|text| withhold(&text, &secrets)),
            summary: plan::describe(step, &self.input),
        };
        Ok(Prepared {
            position,
            step,
            action,
            locks,
            start,
        })
    }

    /// Runs a started attempt and records its end.
    async fn execute(&mut self, prepared: Prepared, id: i64) -> Result<Flow, StoreError> {
        let Prepared {
            position,
            step,
            action,
            ..
        } = prepared;
        let started = Instant::now();
        let (mut end, verdict) = match action {
            Action::Record { .. } => (
                succeeded_without_command(),
                Verdict::Permanent {
                    kind: "internal",
                    detail: "a step with nothing to run was started".into(),
                },
            ),
            Action::Run { spec, confirm, .. } => {
                let mut result = self.cli(id).run(&spec).await;
                if matches!(step, StepName::AddNamespace | StepName::UpdateNamespace)
                    && needs_legacy_flag(&result)
                {
                    // everestctl < 1.6 only knows --operator.xtradb-cluster: use it from now on.
                    self.shared.legacy_mysql_flag.store(true, Ordering::Relaxed);
                    let legacy = Flavor {
                        legacy_mysql_flag: true,
                    };
                    if let Ok(Action::Run { spec, .. }) =
                        plan::action(step, &self.input, None, &self.shared.settings, legacy)
                    {
                        result = self.cli(id).run(&spec).await;
                    }
                }
                self.judge_run(position, step, id, &confirm, result).await?
            }
            Action::RunInManagedNamespace {
                namespace, spec, ..
            } => procedure::in_managed_namespace(&self.cli(id), &namespace, &spec).await,
            Action::ConfigMap(change) => procedure::configmap(&self.cli(id), &change).await,
            Action::ApplyPolicy { policy, template } => {
                match procedure::write_temp(&self.shared.settings.private_tmp_dir, &policy) {
                    Ok(file) => {
                        let spec = plan::policy_command(
                            &template,
                            &file.path().to_string_lossy(),
                            &self.shared.settings,
                        );
                        let result = self.cli(id).run(&spec).await;
                        self.judge_run(position, step, id, &Confirm::ExitCode, result)
                            .await?
                    }
                    Err(e) => {
                        let detail = format!("cannot write the policy file: {e}");
                        (
                            failed_without_command(&detail),
                            Verdict::Permanent {
                                kind: "internal",
                                detail,
                            },
                        )
                    }
                }
            }
        };
        if end.duration_ms == 0 {
            end.duration_ms = started.elapsed().as_millis() as i64;
        }
        self.conclude(position, Attempt::Started(id), end, verdict)
            .await
    }

    /// Runs commands for attempt `id`, recording each one's pid.
    fn cli(&self, id: i64) -> Cli<'_> {
        Cli {
            settings: &self.shared.settings,
            stop: &self.stop.token,
            attempt: Some(AttemptRef {
                store: &self.shared.store,
                lease: &self.lease,
                id,
            }),
        }
    }

    /// Takes the step's locks, waiting while another job holds one, and records the start of
    /// the attempt. `None` when the job stopped meanwhile (it is then ended as between steps) or
    /// the lease was lost.
    ///
    /// While it waits, the attempt is parked: a job of this process that releases the lock
    /// starts this attempt in the same commit (see `store::handoff`). Releases nobody handed
    /// off (of other processes, or of locks left free) wake it to try again itself, and so does
    /// a timer, for a notification that was lost.
    async fn start(
        &self,
        start: AttemptStart,
        locks: &[String],
    ) -> Result<Option<i64>, StoreError> {
        let mut pause = Duration::from_millis(10);
        let store = &self.shared.store;
        let lock_for = self.shared.settings.lease;
        loop {
            // Listen before trying, so that a release right after a refusal is not missed.
            let released = store.locks_released().notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match store
                .begin_attempt(&self.lease, start.clone(), locks, lock_for)
                .await?
            {
                Started::Attempt(id) => return Ok(Some(id)),
                Started::LeaseLost => {
                    self.stop.trigger(StopReason::LeaseLost);
                    tracing::warn!(job.id = %self.lease.job_id, "lease lost before the step started");
                    return Ok(None);
                }
                Started::Busy { name, holder } => {
                    tracing::debug!(job.id = %self.lease.job_id, lock = %name, holder = %holder, "waiting for a resource lock");
                }
            }
            let mut parked = store.park(&self.lease, start.clone(), locks, lock_for);
            let (stopped, answer) = tokio::select! {
                _ = self.stop.token.cancelled() => (true, None),
                _ = self.shared.draining.cancelled() => (true, None),
                _ = released => (false, None),
                _ = tokio::time::sleep(pause) => (false, None),
                answer = &mut parked.started => (false, Some(answer)),
            };
            let told = match answer {
                Some(answer) => Some(answer),
                // Not handed off yet: take the place back, unless a holder just took it (its
                // answer then comes with its commit).
                None if store.unpark(&parked) => None,
                None => Some(parked.started.await),
            };
            if let Some(told) = told {
                // Taken but not told an id: the holder's commit may still have started it.
                let id = match told {
                    Ok(id) => Some(id),
                    Err(_) => store.handed_off(&self.lease, start.position).await?,
                };
                if id.is_some() {
                    crate::telemetry::lock_handoff();
                    return Ok(id);
                }
            }
            if stopped {
                // Decide as between steps.
                self.may_start_step(start.position as usize).await?;
                return Ok(None);
            }
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The record and verdict of a single command.
    async fn judge_run(
        &self,
        position: usize,
        step: StepName,
        attempt_id: i64,
        confirm: &Confirm,
        result: Result<ExecOutput, ExecError>,
    ) -> Result<(AttemptEnd, Verdict), StoreError> {
        Ok(match result {
            Ok(out) => {
                // Earlier attempts matter only when they would change the verdict.
                let mut verdict = judge(step, confirm, &out, false);
                let if_run = judge(step, confirm, &out, true);
                if if_run != verdict
                    && self
                        .shared
                        .store
                        .step_may_have_run(&self.lease.job_id, position as i64, attempt_id)
                        .await?
                {
                    verdict = if_run;
                }
                let end = AttemptEnd {
                    outcome: verdict.outcome(out.termination),
                    error_kind: verdict.error_kind(),
                    exit_code: out.exit_code().map(i64::from),
                    stdout: out.stdout,
                    stderr: out.stderr,
                    duration_ms: out.duration.as_millis() as i64,
                };
                (end, verdict)
            }
            Err(e) => (failed_without_command(&e.to_string()), spawn_failure(&e)),
        })
    }

    /// Every secret the job carries (its password), withheld from whatever any of its steps
    /// prints and from its errors.
    fn secrets(&self) -> Vec<String> {
        self.password.iter().cloned().collect()
    }

    fn summary(&self) -> String {
        plan::summary(&self.input, &self.notes)
    }

    fn meta(&self) -> (&str, i64) {
        (&self.kind, self.created_at)
    }
}

fn needs_legacy_flag(result: &Result<ExecOutput, ExecError>) -> bool {
    matches!(result, Ok(out) if out.termination == Termination::Exited(1)
        && is_unknown_flag(&crate::everest::error_message(out.matchable_stdout(), out.matchable_stderr(), Some(1)), "--operator.mysql"))
}
