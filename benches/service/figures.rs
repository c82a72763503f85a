//! One run's figures, and their medians over runs.
//!
//! The field names are the keys of the JSON results: they stay as they are, since earlier
//! results are compared by them. A figure of a phase that did not run (the stored jobs with
//! `--stored-jobs 0`, the PostgreSQL server on SQLite, the database size when not every job
//! finished) is `None` and left out of the JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::report::NOISE_LIMIT_PCT;

/// One run's figures (the table in `report.rs` says what each is).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
// Medians are built back from their JSON (see `median`), where a figure that is not a number
// (a NaN is written as null) is left out: it is then 0, not a failed run.
#[serde(default)]
pub struct Figures {
    // API instance (workers blocked): the load generator's ceiling.
    pub ceiling_healthz_rps: f64,
    pub ceiling_healthz_p99_ms: f64,
    pub ceiling_loadgen_cpu_us: f64,
    pub ceiling_service_cpu_us: f64,
    pub ceiling_bare_rps: f64,
    // API instance: `POST /bootstrap/users` and `GET /jobs/{id}` on the empty database.
    pub submit_rps: f64,
    pub submit_p50_ms: f64,
    pub submit_p99_ms: f64,
    pub submit_errors: f64,
    pub submit_service_cpu_us: f64,
    pub submit_loadgen_cpu_us: f64,
    pub polls_rps: f64,
    pub polls_p50_ms: f64,
    pub polls_p99_ms: f64,
    pub polls_errors: f64,
    pub polls_service_cpu_us: f64,
    pub polls_loadgen_cpu_us: f64,
    pub vm_hwm_api_mib: f64,
    // Stored-jobs instance (`--stored-jobs`): the same phases, and their ratios to the above.
    pub stored_jobs: Option<f64>,
    pub stored_submit_rps: Option<f64>,
    pub stored_submit_p50_ms: Option<f64>,
    pub stored_submit_p99_ms: Option<f64>,
    pub stored_submit_errors: Option<f64>,
    pub stored_submit_service_cpu_us: Option<f64>,
    pub stored_submit_loadgen_cpu_us: Option<f64>,
    pub stored_submit_rps_ratio: Option<f64>,
    pub stored_submit_p50_ratio: Option<f64>,
    pub stored_submit_p99_ratio: Option<f64>,
    pub stored_polls_rps: Option<f64>,
    pub stored_polls_p50_ms: Option<f64>,
    pub stored_polls_p99_ms: Option<f64>,
    pub stored_polls_errors: Option<f64>,
    pub stored_polls_service_cpu_us: Option<f64>,
    pub stored_polls_loadgen_cpu_us: Option<f64>,
    pub stored_polls_rps_ratio: Option<f64>,
    pub stored_polls_p50_ratio: Option<f64>,
    pub stored_polls_p99_ratio: Option<f64>,
    pub vm_hwm_stored_mib: Option<f64>,
    // Jobs instance: the spawn floors.
    pub floor_jobs_per_s: f64,
    pub floor_cpu_ms_per_job: f64,
    pub floor_exec_jobs_per_s: f64,
    pub floor_exec_cpu_ms_per_job: f64,
    // Jobs instance: end to end, memory, database.
    pub e2e_jobs_per_s: f64,
    pub e2e_finished: f64,
    pub e2e_succeeded: f64,
    pub e2e_submit_rps: f64,
    pub e2e_submit_p99_ms: f64,
    pub e2e_service_cpu_ms_per_job: f64,
    pub e2e_cli_cpu_ms_per_job: f64,
    /// PostgreSQL only.
    pub e2e_db_cpu_ms_per_job: Option<f64>,
    pub events_per_job: f64,
    pub vm_hwm_mib: f64,
    /// SQLite only, and only when every job finished.
    pub db_bytes_per_job: Option<f64>,
    pub db_checkpointed_bytes_per_job: Option<f64>,
    /// CPU of other processes, the largest share over the phases.
    pub other_cpu_pct: f64,
    // Ratios of the above, the targets of issue 14 (`report.rs`), in % unless named `_x_`
    // (times).
    pub submit_pct_of_healthz: Option<f64>,
    pub submit_p99_x_healthz: Option<f64>,
    pub e2e_submit_pct_of_submit: Option<f64>,
    pub polls_pct_of_healthz: Option<f64>,
    pub e2e_pct_of_floor: f64,
    pub e2e_service_cpu_pct_of_cli: Option<f64>,
    /// PostgreSQL only: the server's CPU added to the service's.
    pub e2e_service_db_cpu_pct_of_cli: Option<f64>,
}

/// What one load phase of the submit or poll kind gave (`run.rs`: `Phase::measure`).
pub struct Load<T = f64> {
    pub rps: T,
    pub p50_ms: T,
    pub p99_ms: T,
    pub errors: T,
    pub service_cpu_us: T,
    pub loadgen_cpu_us: T,
}

impl Load {
    /// The same figures, each as `Some`: for the phases that may not run.
    pub fn some(self) -> Load<Option<f64>> {
        Load {
            rps: Some(self.rps),
            p50_ms: Some(self.p50_ms),
            p99_ms: Some(self.p99_ms),
            errors: Some(self.errors),
            service_cpu_us: Some(self.service_cpu_us),
            loadgen_cpu_us: Some(self.loadgen_cpu_us),
        }
    }
}

impl Figures {
    /// The figures that are ratios of others of the same run.
    pub fn ratios(&mut self) {
        self.submit_pct_of_healthz = pct(self.submit_rps, self.ceiling_healthz_rps);
        self.submit_p99_x_healthz = ratio(self.submit_p99_ms, self.ceiling_healthz_p99_ms);
        self.e2e_submit_pct_of_submit = pct(self.e2e_submit_rps, self.submit_rps);
        self.polls_pct_of_healthz = pct(self.polls_rps, self.ceiling_healthz_rps);
        self.e2e_pct_of_floor = 100.0 * self.e2e_jobs_per_s / self.floor_jobs_per_s;
        let cpu = self.e2e_service_cpu_ms_per_job;
        self.e2e_service_cpu_pct_of_cli = pct(cpu, self.e2e_cli_cpu_ms_per_job);
        self.e2e_service_db_cpu_pct_of_cli = self
            .e2e_db_cpu_ms_per_job
            .and_then(|db| pct(cpu + db, self.e2e_cli_cpu_ms_per_job));
        let stored = |stored: Option<f64>, empty: f64| stored.map(|s| s / empty);
        self.stored_submit_rps_ratio = stored(self.stored_submit_rps, self.submit_rps);
        self.stored_submit_p50_ratio = stored(self.stored_submit_p50_ms, self.submit_p50_ms);
        self.stored_submit_p99_ratio = stored(self.stored_submit_p99_ms, self.submit_p99_ms);
        self.stored_polls_rps_ratio = stored(self.stored_polls_rps, self.polls_rps);
        self.stored_polls_p50_ratio = stored(self.stored_polls_p50_ms, self.polls_p50_ms);
        self.stored_polls_p99_ratio = stored(self.stored_polls_p99_ms, self.polls_p99_ms);
    }

    /// Whether other processes used more than `NOISE_LIMIT_PCT` of the machine's CPU in a
    /// phase of the run.
    pub fn noisy(&self) -> bool {
        self.other_cpu_pct > NOISE_LIMIT_PCT
    }

    /// The figures as they are written to the JSON results: numbers by key, without the figures
    /// that are `None`.
    pub fn json(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map.into_iter().filter(|(_, v)| !v.is_null()).collect(),
            _ => unreachable!("Figures serializes as a map of numbers"),
        }
    }

    /// The median of each figure over `runs` (of the runs that have it).
    pub fn median(runs: &[Figures]) -> Figures {
        let runs: Vec<Map<String, Value>> = runs.iter().map(Figures::json).collect();
        let mut medians = Map::new();
        for key in runs.iter().flat_map(|r| r.keys()) {
            if medians.contains_key(key) {
                continue;
            }
            let mut values: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.get(key).and_then(Value::as_f64))
                .collect();
            if !values.is_empty() {
                medians.insert(key.clone(), median(&mut values).into());
            }
        }
        serde_json::from_value(Value::Object(medians)).expect("medians of figures are figures")
    }
}

/// `a / b`, where `b` is above 0.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// `a / b` in %, where `b` is above 0.
fn pct(a: f64, b: f64) -> Option<f64> {
    ratio(a, b).map(|r| 100.0 * r)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
