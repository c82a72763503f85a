//! Concluding an attempt: what its verdict means for the step and the job, recorded together
//! with the start of the next step when the job goes on.

use std::time::Duration;

use serde_json::json;

use super::{Attempt, Flow, JobRun, Prepared};
use crate::domain::{AttemptOutcome, JobError};
use crate::exec::withhold;
use crate::plan::Action;
use crate::store::{AttemptEnd, AttemptEnding, Finished, JobEnd, StepEnd, StoreError, Then};
use crate::worker::outcome::{backoff, failed_end, record_finish, succeeded_without_command};
use crate::worker::verdict::Verdict;
use crate::worker::watch::StopReason;

impl JobRun {
    /// Records the attempt and decides what happens to the step and the job. When the job goes
    /// on, the next step is started (or, if it runs nothing, recorded) in the same transaction.
    pub(super) async fn conclude(
        &mut self,
        position: usize,
        attempt: Attempt,
        mut end: AttemptEnd,
        verdict: Verdict,
    ) -> Result<Flow, StoreError> {
        // Whichever step printed it, no secret of the job is stored or shown.
        let secrets = self.secrets();
        end.stdout = withhold(&end.stdout, &secrets);
        end.stderr = withhold(&end.stderr, &secrets);
        let verdict = verdict.withheld(&secrets);
        let Some((step_end, job_end)) = self.settle(position, &mut end, verdict) else {
            // The new owner records the interruption; this worker writes nothing more.
            return Ok(Flow::Stop);
        };
        let store = self.shared.store.clone();
        let ttl = self.shared.settings.credentials_ttl;
        let id = match attempt {
            Attempt::Started(id) => id,
            Attempt::Unstarted(start) => {
                let kept = store
                    .record_attempt(&self.lease, start, &end, &step_end, &job_end, ttl)
                    .await?;
                let finished = if kept {
                    Finished::Ended
                } else {
                    Finished::LeaseLost
                };
                return Ok(self.after(position, &end, &job_end, finished, None));
            }
        };
        let (then, next) = match job_end {
            JobEnd::Continue => self.next_step(position + 1),
            _ => (Then::Nothing, None),
        };
        let ending = AttemptEnding {
            id,
            attempt: end,
            step: step_end,
            job: job_end,
        };
        let finished = store
            .finish_attempt_then(&self.lease, ending.clone(), then, ttl)
            .await?;
        Ok(self.after(position, &ending.attempt, &ending.job, finished, next))
    }

    /// The next step to start or record with this attempt's end, if it can be planned and the
    /// job is not being stopped (then the step loop decides, as between steps).
    fn next_step(&mut self, position: usize) -> (Then, Option<Next>) {
        let stopping = self.stop.reason().is_some() || self.shared.draining.is_cancelled();
        if stopping || position >= self.steps.len() || self.done[position] {
            return (Then::Nothing, None);
        }
        let Ok(prepared) = self.prepare(position) else {
            // The step loop plans it again and ends the job with the error.
            return (Then::Nothing, None);
        };
        if let Action::Record { output, note } = &prepared.action {
            let verdict = Verdict::Succeeded {
                output: output.clone(),
                note: note.clone(),
            };
            let mut end = succeeded_without_command();
            let Some((step_end, job_end)) = self.settle(position, &mut end, verdict) else {
                return (Then::Nothing, None);
            };
            let then = Then::Record {
                start: prepared.start,
                ending: Box::new((end.clone(), step_end, job_end.clone())),
            };
            return (
                then,
                Some(Next::Recorded {
                    position,
                    end,
                    job_end,
                }),
            );
        }
        let then = Then::Start {
            start: prepared.start.clone(),
            locks: prepared.locks.clone(),
            lock_for: self.shared.settings.lease,
        };
        (then, Some(Next::Start(Box::new(prepared))))
    }

    /// Logs and counts what was recorded, and says where the step loop goes on.
    fn after(
        &mut self,
        position: usize,
        end: &AttemptEnd,
        job_end: &JobEnd,
        finished: Finished,
        next: Option<Next>,
    ) -> Flow {
        let step = self.steps[position];
        if finished == Finished::LeaseLost {
            tracing::warn!(job.id = %self.lease.job_id, step = step.as_str(), "lease lost; result of the attempt discarded");
            return Flow::Stop;
        }
        self.recorded(position, end, job_end);
        if !matches!(job_end, JobEnd::Continue) {
            // The job left this worker: another one may be able to take what it waited for.
            self.shared.wake.notify_one();
            return Flow::Stop;
        }
        match (finished, next) {
            (Finished::Started(id), Some(Next::Start(prepared))) => Flow::Started(prepared, id),
            (
                Finished::Recorded,
                Some(Next::Recorded {
                    position,
                    end,
                    job_end,
                }),
            ) => self.after(position, &end, &job_end, Finished::Ended, None),
            // Not started (a lock was busy) or not asked: the step loop starts it.
            _ => Flow::At(position + 1),
        }
    }

    /// Logs and counts an attempt whose end is recorded.
    fn recorded(&self, position: usize, end: &AttemptEnd, job_end: &JobEnd) {
        let step = self.steps[position].as_str();
        tracing::info!(job.id = %self.lease.job_id, step, outcome = %end.outcome, exit_code = end.exit_code, duration_ms = end.duration_ms, "step attempt finished");
        let elapsed = Duration::from_millis(u64::try_from(end.duration_ms).unwrap_or(0));
        crate::telemetry::step_attempt(step, end.outcome, elapsed);
        record_finish(&self.kind, self.created_at, job_end);
    }

    /// What the verdict means for the step and the job; `None` when nothing is to be written.
    fn settle(
        &mut self,
        position: usize,
        end: &mut AttemptEnd,
        verdict: Verdict,
    ) -> Option<(StepEnd, JobEnd)> {
        let step = self.steps[position];
        let settings = self.shared.settings.clone();
        if end.error_kind.is_none() {
            end.error_kind = verdict.error_kind();
        }
        Some(match verdict {
            Verdict::Interrupted => match self.stop.reason() {
                Some(StopReason::Canceled) => {
                    end.outcome = AttemptOutcome::Canceled;
                    (
                        StepEnd::Canceled,
                        JobEnd::Canceled {
                            summary: format!("Canceled during {}.", step.as_str()),
                        },
                    )
                }
                Some(StopReason::Shutdown) => {
                    end.outcome = AttemptOutcome::Interrupted;
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
                Some(StopReason::LeaseLost) | None => return None,
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
        })
    }
}

/// The next step as recorded with the end of the previous one.
pub(super) enum Next {
    /// Its attempt starts: run it.
    Start(Box<Prepared>),
    /// It ran nothing and is recorded whole, ending its job or not.
    Recorded {
        position: usize,
        end: AttemptEnd,
        job_end: JobEnd,
    },
}
