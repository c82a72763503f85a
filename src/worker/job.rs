//! Running one claimed job: its steps in order, each under its resource locks, while a watcher
//! renews the lease and listens for cancel requests and shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Shared;
use super::outcome::{
    backoff, end, failed_end, failed_without_command, record_finish, succeeded_without_command,
};
use super::procedure::{self, Cli};
use super::verdict::{Verdict, judge, spawn_failure};
use super::watch::{Stop, StopReason, watch};
use crate::domain::{JobError, JobInput, StepName};
use crate::everest::classify::is_unknown_flag;
use crate::exec::{ExecError, ExecOutput, Termination};
use crate::plan::{self, Action, Confirm, Flavor, PlanError};
use crate::store::{AttemptEnd, Claimed, JobEnd, Lease, LockAttempt, StepEnd, StoreError};

/// What the job loop does after a step.
enum Flow {
    Next,
    Stop,
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
    /// Per position: failures so far, and the note of a succeeded step (for the summary).
    failures: Vec<i64>,
    notes: Vec<Option<String>>,
}

/// Runs a claimed job until it finishes, is rescheduled or given back, or the lease is lost.
pub(super) async fn run(shared: Arc<Shared>, claimed: Claimed) {
    let lease = claimed.lease.clone();
    let stop = Stop::default();
    let watcher = tokio::spawn(watch(shared.clone(), lease.clone(), stop.clone()));
    if let Err(e) = drive(shared.clone(), claimed, stop).await {
        // The lease will expire and the job will be claimed again; steps are safe to re-run.
        tracing::warn!(job.id = %lease.job_id, error = %e, "store error while running a job");
    }
    watcher.abort();
    if let Err(e) = shared.store.unlock_all(&lease.job_id).await {
        tracing::warn!(job.id = %lease.job_id, error = %e, "cannot release resource locks; they expire with the lease");
    }
    shared.locks_released.notify_waiters();
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
    };
    tracing::info!(job.id = %run.lease.job_id, job.attempt = run.lease.attempt, "job claimed");
    for (position, record) in claimed.steps.iter().enumerate() {
        if matches!(record.status.as_str(), "succeeded" | "skipped") {
            continue;
        }
        if !run.may_start_step(position).await? {
            return Ok(());
        }
        if let Flow::Stop = run.step(position).await? {
            return Ok(());
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
        let step = self.steps[position];
        let flavor = Flavor {
            legacy_mysql_flag: self.shared.legacy_mysql_flag.load(Ordering::Relaxed),
        };
        let action = match plan::action(
            step,
            &self.input,
            self.password.as_deref(),
            &self.shared.settings,
            flavor,
        ) {
            Ok(action) => action,
            Err(e) => {
                let kind = match e {
                    PlanError::PasswordGone => "secret_expired",
                    PlanError::RbacUnavailable(_) => "rbac_unavailable",
                    PlanError::Mismatch { .. } => "internal",
                };
                let error = JobError {
                    step: step.as_str().into(),
                    kind: kind.into(),
                    detail: e.to_string(),
                };
                end(&self.shared, &self.lease, self.meta(), failed_end(&error)).await?;
                return Ok(Flow::Stop);
            }
        };
        let locks = plan::locks(step, &self.input, &action);
        if !self.take_locks(&locks).await? {
            // Stopped while waiting: decide as between steps.
            self.may_start_step(position).await?;
            return Ok(Flow::Stop);
        }
        let flow = self.run_action(position, step, action).await;
        if !locks.is_empty() {
            self.shared.store.unlock_all(&self.lease.job_id).await?;
            self.shared.locks_released.notify_waiters();
        }
        flow
    }

    async fn run_action(
        &mut self,
        position: usize,
        step: StepName,
        action: Action,
    ) -> Result<Flow, StoreError> {
        let summary = plan::describe(step, &self.input);
        let started = Instant::now();
        let (command, stdin) = match &action {
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
        let Some(id) = self
            .start(position, step, &command, stdin.as_deref(), &summary)
            .await?
        else {
            return Ok(Flow::Stop);
        };
        let (mut end, verdict) = match action {
            Action::Record { output, note } => (
                succeeded_without_command(),
                Verdict::Succeeded { output, note },
            ),
            Action::Run { spec, confirm, .. } => {
                let mut result = self.cli().run(&spec).await;
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
                        result = self.cli().run(&spec).await;
                    }
                }
                self.judge_run(position, step, id, &confirm, result).await?
            }
            Action::RunInManagedNamespace {
                namespace, spec, ..
            } => procedure::in_managed_namespace(&self.cli(), &namespace, &spec).await,
            Action::ConfigMap(change) => procedure::configmap(&self.cli(), &change).await,
            Action::ApplyPolicy { policy, template } => match procedure::write_temp(&policy) {
                Ok(file) => {
                    let spec = plan::policy_command(
                        &template,
                        &file.path().to_string_lossy(),
                        &self.shared.settings,
                    );
                    let result = self.cli().run(&spec).await;
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
            },
        };
        if end.duration_ms == 0 {
            end.duration_ms = started.elapsed().as_millis() as i64;
        }
        self.conclude(position, id, end, verdict).await
    }

    fn cli(&self) -> Cli<'_> {
        Cli {
            settings: &self.shared.settings,
            stop: &self.stop.token,
        }
    }

    /// Waits until all `names` are taken for this job; `false` when the job was stopped meanwhile.
    async fn take_locks(&self, names: &[String]) -> Result<bool, StoreError> {
        if names.is_empty() {
            return Ok(true);
        }
        let mut pause = Duration::from_millis(10);
        loop {
            match self
                .shared
                .store
                .try_lock(&self.lease, names, self.shared.settings.lease)
                .await?
            {
                LockAttempt::Acquired => return Ok(true),
                LockAttempt::LeaseLost => {
                    self.stop.trigger(StopReason::LeaseLost);
                    return Ok(false);
                }
                LockAttempt::Busy { name, holder } => {
                    tracing::debug!(job.id = %self.lease.job_id, lock = %name, holder = %holder, "waiting for a resource lock");
                }
            }
            // Woken early when a job of this process releases its locks; other processes' locks
            // are polled.
            tokio::select! {
                _ = self.stop.token.cancelled() => return Ok(false),
                _ = self.shared.draining.cancelled() => return Ok(false),
                _ = self.shared.locks_released.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    async fn start(
        &self,
        position: usize,
        step: StepName,
        command: &str,
        stdin: Option<&str>,
        summary: &str,
    ) -> Result<Option<i64>, StoreError> {
        let id = self
            .shared
            .store
            .start_attempt(
                &self.lease,
                position as i64,
                step.as_str(),
                command,
                stdin,
                summary,
            )
            .await?;
        if id.is_none() {
            tracing::warn!(job.id = %self.lease.job_id, "lease lost before the step started");
        }
        Ok(id)
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
                let may_have_run = self
                    .shared
                    .store
                    .step_may_have_run(&self.lease.job_id, position as i64, attempt_id)
                    .await?;
                let verdict = judge(step, confirm, &out, may_have_run);
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

    /// Records the attempt and decides what happens to the step and the job.
    async fn conclude(
        &mut self,
        position: usize,
        attempt_id: i64,
        mut end: AttemptEnd,
        verdict: Verdict,
    ) -> Result<Flow, StoreError> {
        let step = self.steps[position];
        let settings = self.shared.settings.clone();
        if end.error_kind.is_none() {
            end.error_kind = verdict.error_kind();
        }
        let (step_end, job_end) = match verdict {
            Verdict::Interrupted => match self.stop.reason() {
                Some(StopReason::Canceled) => {
                    end.outcome = "canceled";
                    (
                        StepEnd::Canceled,
                        JobEnd::Canceled {
                            summary: format!("Canceled during {}.", step.as_str()),
                        },
                    )
                }
                Some(StopReason::Shutdown) => {
                    end.outcome = "interrupted";
                    let reason = format!(
                        "shutdown: {} was stopped after the grace period",
                        step.as_str()
                    );
                    (
                        StepEnd::Pending { counted: false },
                        JobEnd::Requeue { reason },
                    )
                }
                // The new owner records the interruption; this worker writes nothing more.
                Some(StopReason::LeaseLost) | None => return Ok(Flow::Stop),
            },
            Verdict::Succeeded { mut output, note } => {
                output["note"] = json!(note);
                self.notes[position] = Some(note);
                let job = if position + 1 == self.steps.len() {
                    JobEnd::Succeeded {
                        summary: self.summary(),
                    }
                } else {
                    JobEnd::Continue
                };
                (
                    StepEnd::Succeeded {
                        output: Some(output.to_string()),
                    },
                    job,
                )
            }
            Verdict::Transient { kind, detail } => {
                self.failures[position] += 1;
                let failures = self.failures[position];
                if failures >= i64::from(settings.max_attempts) {
                    let detail = format!("gave up after {failures} attempts: {detail}");
                    (
                        StepEnd::Failed,
                        failed_end(&JobError {
                            step: step.as_str().into(),
                            kind: kind.into(),
                            detail,
                        }),
                    )
                } else {
                    let delay = backoff(settings.retry_base, settings.retry_max, failures);
                    (
                        StepEnd::Pending { counted: true },
                        JobEnd::Retry {
                            delay,
                            reason: detail,
                        },
                    )
                }
            }
            Verdict::Permanent { kind, detail } => (
                StepEnd::Failed,
                failed_end(&JobError {
                    step: step.as_str().into(),
                    kind: kind.into(),
                    detail,
                }),
            ),
        };
        let kept = self
            .shared
            .store
            .finish_attempt(
                &self.lease,
                attempt_id,
                &end,
                &step_end,
                &job_end,
                settings.credentials_ttl,
            )
            .await?;
        if !kept {
            tracing::warn!(job.id = %self.lease.job_id, step = step.as_str(), "lease lost; result of the attempt discarded");
            return Ok(Flow::Stop);
        }
        tracing::info!(job.id = %self.lease.job_id, step = step.as_str(), outcome = end.outcome, exit_code = end.exit_code, duration_ms = end.duration_ms, "step attempt finished");
        let elapsed = Duration::from_millis(u64::try_from(end.duration_ms).unwrap_or(0));
        crate::telemetry::step_attempt(step.as_str(), end.outcome, elapsed);
        record_finish(&self.kind, self.created_at, &job_end);
        if matches!(job_end, JobEnd::Continue) {
            return Ok(Flow::Next);
        }
        // The job left this worker: another one may be able to take what it waited for.
        self.shared.wake.notify_one();
        Ok(Flow::Stop)
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
        && is_unknown_flag(&crate::everest::error_message(&out.stdout, &out.stderr, Some(1)), "--operator.mysql"))
}
