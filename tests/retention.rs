//! The retention pruner of the running app: jobs that finished before `JOB_RETENTION_DAYS` go,
//! with everything they own; the others stay. On both backends.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;

both_backends!(jobs_finished_before_the_retention_period_are_pruned);
async fn jobs_finished_before_the_retention_period_are_pruned(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let old = app.bootstrap(json!({"username": "alice"})).await;
    let recent = app
        .bootstrap(json!({"username": "bob_1", "namespace": "bob"}))
        .await;
    app.wait_final(&old).await;
    app.wait_final(&recent).await;
    let sandbox = app.stop().await;
    // alice's job finished 91 days ago; the retention is 90 days.
    // The products in Rust: PostgreSQL would compute them in 32 bits, and overflow.
    let day: i64 = 86_400_000;
    let (created, finished) = (92 * day, 91 * day);
    sandbox
        .database()
        .execute(&format!(
            "UPDATE jobs SET created_at = created_at - {created}, finished_at = finished_at - {finished} WHERE id = '{old}'"
        ))
        .await;
    let app = TestApp::start_in(sandbox, |c| c.job_retention_days = 90).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.get(&format!("/jobs/{old}")).await.status() != StatusCode::NOT_FOUND {
        assert!(Instant::now() < deadline, "the old job was not pruned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for table in ["job_steps", "step_attempts", "job_events", "job_secrets"] {
        let n = app.count(table, &format!("job_id = '{old}'")).await;
        assert_eq!(n, 0, "{table} rows of the pruned job");
    }
    let (status, _) = app.get_json(&format!("/jobs/{old}/history")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.wait_final(&recent).await["status"], "succeeded");
    let (_, list) = app.get_json("/jobs").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["job_id"], recent.as_str());
    let (status, h) = app.get_json(&format!("/jobs/{recent}/history")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(h["events"].as_array().unwrap().len() > 5, "{h}");
    app.stop().await;
}
