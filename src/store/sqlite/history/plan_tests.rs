//! `EXPLAIN QUERY PLAN` of the queries that must stay fast on millions of jobs: every filter of
//! `GET /jobs` (with and without a cursor), the history reads, the claim and the pruner. None
//! may scan a table, and no page of the list may be sorted (a sort reads every match).

use super::tests::fresh;
use super::*;
use crate::store::sqlite::lease::{CLAIM_SQL, NEXT_DUE_SQL};
use crate::store::sqlite::prune::PRUNE_SQL;

/// The plan's lines, e.g. `SEARCH jobs USING INDEX jobs_status_created (status=? AND ...)`.
async fn explain(s: &SqliteStore, sql: &str, args: &[Arg]) -> Vec<String> {
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as_with(
        &format!("EXPLAIN QUERY PLAN {sql}"),
        arguments(args).unwrap(),
    )
    .fetch_all(&s.pool)
    .await
    .unwrap();
    rows.into_iter().map(|r| r.3).collect()
}

/// A full scan is `SCAN <table>` without `USING ... INDEX` (`SCAN (subquery-1)` reads the few
/// rows a subquery produced).
fn assert_no_table_scan(what: &str, plan: &[String]) {
    for line in plan {
        assert!(
            !(line.starts_with("SCAN ")
                && !line.starts_with("SCAN (")
                && !line.contains(" USING ")),
            "{what} scans a table: {plan:#?}"
        );
    }
}

fn assert_uses(what: &str, plan: &[String], index: &str) {
    assert!(
        plan.iter()
            .any(|l| l.contains(&format!("INDEX {index} "))
                || l.ends_with(&format!("INDEX {index}"))),
        "{what} should use {index}: {plan:#?}"
    );
}

#[tokio::test]
async fn every_list_filter_reads_one_index_range_in_order() {
    let (s, _d) = fresh().await;
    let text = |v: &str| Some(v.to_string());
    let cases: [(&str, JobFilter, &str); 9] = [
        ("no filter", JobFilter::default(), "jobs_created"),
        (
            "status",
            JobFilter {
                status: Some(crate::domain::JobStatus::Failed),
                ..Default::default()
            },
            "jobs_status_created",
        ),
        (
            "kind",
            JobFilter {
                kind: text("bootstrap_user"),
                ..Default::default()
            },
            "jobs_kind_created",
        ),
        (
            "username",
            JobFilter {
                username: text("alice"),
                ..Default::default()
            },
            "jobs_username_created",
        ),
        (
            "namespace",
            JobFilter {
                namespace: text("alice"),
                ..Default::default()
            },
            "jobs_namespace_created",
        ),
        (
            "submitted_by",
            JobFilter {
                submitted_by: text("ops"),
                ..Default::default()
            },
            "jobs_submitted_by_created",
        ),
        (
            "created_after",
            JobFilter {
                created_after: Some(1),
                ..Default::default()
            },
            "jobs_created",
        ),
        (
            "created_before",
            JobFilter {
                created_before: Some(1),
                ..Default::default()
            },
            "jobs_created",
        ),
        (
            "created_after and created_before",
            JobFilter {
                created_after: Some(1),
                created_before: Some(5),
                ..Default::default()
            },
            "jobs_created",
        ),
    ];
    let cursor = Cursor {
        created_at: 3,
        id: "x".into(),
    };
    for (name, filter, index) in &cases {
        for after in [None, Some(&cursor)] {
            let (sql, args) = list_query(filter, after, 50);
            let what = format!("GET /jobs with {name}, cursor {}", after.is_some());
            let plan = explain(&s, &sql, &args).await;
            assert_no_table_scan(&what, &plan);
            assert!(
                !plan.iter().any(|l| l.contains("TEMP B-TREE")),
                "{what} sorts: {plan:#?}"
            );
            assert_uses(&what, &plan, index);
            if after.is_some() {
                assert!(
                    plan.iter()
                        .any(|l| l.contains("(created_at,id)<(?,?)") || l.contains("created_at<?")),
                    "{what} must seek to the cursor, not filter up to it: {plan:#?}"
                );
            }
        }
    }
    // All filters at once still read an index range.
    let all = JobFilter {
        status: Some(crate::domain::JobStatus::Failed),
        kind: text("bootstrap_user"),
        username: text("alice"),
        namespace: text("alice"),
        submitted_by: text("ops"),
        created_after: Some(1),
        created_before: Some(9),
    };
    let (sql, args) = list_query(&all, Some(&cursor), 50);
    let plan = explain(&s, &sql, &args).await;
    assert_no_table_scan("GET /jobs with every filter", &plan);
    assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{plan:#?}");
}

#[tokio::test]
async fn history_claim_and_pruner_use_indexes() {
    let (s, _d) = fresh().await;
    let job = [Arg::Text("j".into())];
    let plan = explain(&s, &events_sql(), &job).await;
    assert_uses("history events", &plan, "job_events_job");
    assert_no_table_scan("history events", &plan);
    let plan = explain(&s, &attempts_sql(), &job).await;
    assert_uses("history attempts", &plan, "step_attempts_job");
    assert_no_table_scan("history attempts", &plan);

    let claim = [Arg::Text("w".into()), Arg::Int(2), Arg::Int(1)];
    let plan = explain(&s, CLAIM_SQL, &claim).await;
    assert_no_table_scan("claim", &plan);
    assert_uses("claim", &plan, "jobs_due");
    assert_uses("claim", &plan, "jobs_leased");
    // Only the final pick between the two candidates is sorted, not the candidates' indexes.
    let sorts = plan.iter().filter(|l| l.contains("TEMP B-TREE")).count();
    assert_eq!(sorts, 1, "{plan:#?}");
    let plan = explain(&s, NEXT_DUE_SQL, &[]).await;
    assert_no_table_scan("next due", &plan);
    assert_uses("next due", &plan, "jobs_due");
    assert_uses("next due", &plan, "jobs_leased");

    let prune = [Arg::Int(1), Arg::Int(500)];
    let plan = explain(&s, PRUNE_SQL, &prune).await;
    assert_no_table_scan("pruner", &plan);
    assert_uses("pruner", &plan, "jobs_prunable");
    assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{plan:#?}");
    // What `ON DELETE CASCADE` runs for each pruned job.
    for (table, index) in [
        ("job_steps", "sqlite_autoindex_job_steps_1"),
        ("step_attempts", "step_attempts_job"),
        ("job_events", "job_events_job"),
        ("job_secrets", "sqlite_autoindex_job_secrets_1"),
    ] {
        let sql = format!("DELETE FROM {table} WHERE job_id = ?");
        let plan = explain(&s, &sql, &job).await;
        assert_no_table_scan(&sql, &plan);
        assert_uses(&sql, &plan, index);
    }
}

#[tokio::test]
async fn the_idempotency_lookup_uses_its_scoped_index() {
    let (s, _d) = fresh().await;
    let args = [Arg::Text("ops".into()), Arg::Text("key-1".into())];
    let plan = explain(&s, crate::store::sqlite::submit::IDEMPOTENCY_SQL, &args).await;
    assert_no_table_scan("idempotency lookup", &plan);
    assert_uses("idempotency lookup", &plan, "jobs_idempotency");
}
