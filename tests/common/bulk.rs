//! The bulk load of finished jobs shared by the history-at-scale test (`tests/scale.rs`) and the
//! service benchmark (`benches/service/`, which includes this file by path).

/// Users the loaded jobs are spread over.
pub const USERS: i64 = 5_000;

/// The eleven events of every loaded job, as the rows of a `VALUES` list: (position, type,
/// detail).
const EVENTS: &str = "
            (0, 'submitted', 'submitted by ops (request r)'), (1, 'claimed', 'claim 1; lease 30.0s'),
            (2, 'step_started', 'create_account attempt 1'), (3, 'step_finished', 'create_account attempt 1: succeeded (exit code 0)'),
            (4, 'step_started', 'add_namespace attempt 1'), (5, 'step_finished', 'add_namespace attempt 1: succeeded (exit code 0)'),
            (6, 'step_started', 'apply_resource_quota attempt 1'), (7, 'step_finished', 'apply_resource_quota attempt 1: succeeded (exit code 0)'),
            (8, 'step_started', 'apply_rbac_policy attempt 1'), (9, 'step_finished', 'apply_rbac_policy attempt 1: succeeded (exit code 0)'),
            (10, 'finished', 'succeeded: done')";

/// The statements that load `jobs` finished bootstrap jobs in one transaction, job `i` created
/// at the SQL expression `created` (milliseconds; it may use `i`): 5,000 users, two admin keys,
/// 92 % succeeded / 5 % failed / 3 % canceled, each job with 4 steps, 4 attempts, 11 events
/// and a purged secret; then the WAL is checkpointed.
pub fn load_statements(jobs: i64, created: &str) -> Vec<String> {
    vec![
        "PRAGMA synchronous = OFF".to_string(),
        "PRAGMA cache_size = -512000".to_string(),
        "BEGIN".to_string(),
        format!(
            "INSERT INTO jobs (id, kind, status, inputs, username, namespace, summary, error,
                submitted_by, request_id, created_at, started_at, finished_at, updated_at, attempt, run_at)
             WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {jobs} - 1),
                  t(i, c) AS (SELECT i, {created} FROM seq)
             SELECT printf('%08x-%04x-7000-8000-%012x', c >> 16, c & 65535, i), 'bootstrap_user',
                    CASE WHEN i % 20 = 7 THEN 'failed' WHEN i % 50 = 3 THEN 'canceled' ELSE 'succeeded' END,
                    json_object('username', 'user' || (i % {USERS}), 'namespace', 'user' || (i % {USERS}),
                                'operators', json_object('postgresql', json('true')),
                                'resources', json_object('cpu_cores', 2, 'ram_mb', 2048, 'disk_gb', 20)),
                    'user' || (i % {USERS}), 'user' || (i % {USERS}),
                    'User user' || (i % {USERS}) || ' created; namespace created; quota applied; RBAC applied.',
                    CASE WHEN i % 20 = 7 THEN '{{\"step\":\"add_namespace\",\"kind\":\"cli_failed\",\"detail\":\"boom\"}}' END,
                    CASE WHEN i % 3 = 0 THEN 'ci' ELSE 'ops' END, 'req-' || i,
                    c, c + 50, c + 2000, c + 2000, 1, c
             FROM t"
        ),
        "INSERT INTO job_steps (job_id, position, name, status, attempts, failures, started_at, finished_at, exit_code, output)
         SELECT j.id, p.column1, p.column2, 'succeeded', 1, 0, j.created_at + 100 + p.column1 * 400,
                j.created_at + 400 + p.column1 * 400, 0, '{\"note\":\"created\"}'
         FROM jobs j CROSS JOIN (VALUES (0, 'create_account'), (1, 'add_namespace'),
                                        (2, 'apply_resource_quota'), (3, 'apply_rbac_policy')) AS p"
            .to_string(),
        "INSERT INTO step_attempts (job_id, position, step, attempt, job_attempt, worker, command,
                outcome, exit_code, stdout, stderr, started_at, finished_at, duration_ms)
         SELECT s.job_id, s.position, s.name, 1, 1, 'host-1:4242:0a1b2c3d4e5f',
                'everestctl ' || s.name || ' -u ' || j.username || ' -p ********', 'succeeded', 0,
                '✅ ' || s.name || ' done for ' || j.username, '', s.started_at, s.finished_at, 300
         FROM job_steps s JOIN jobs j ON j.id = s.job_id"
            .to_string(),
        format!(
            "INSERT INTO job_events (job_id, at, type, attempt, worker, detail)
             SELECT j.id, j.created_at + e.column1 * 150, e.column2, CASE WHEN e.column1 > 0 THEN 1 END,
                    CASE WHEN e.column1 > 0 THEN 'host-1:4242:0a1b2c3d4e5f' END, e.column3
             FROM jobs j CROSS JOIN (VALUES {EVENTS}) AS e"
        ),
        "INSERT INTO job_secrets (job_id, password, generated, expires_at)
         SELECT id, NULL, 1, finished_at + 3600000 FROM jobs"
            .to_string(),
        "COMMIT".to_string(),
        "PRAGMA wal_checkpoint(TRUNCATE)".to_string(),
    ]
}

/// The same load for PostgreSQL (`migrations/postgres`): the same jobs, ids and rows, from
/// `generate_series`, in one transaction. For speed, the indexes that back no constraint are
/// dropped for the load and built again after it (whichever the migrations made), and the
/// foreign-key triggers are off (the rows are consistent by construction;
/// `session_replication_role` needs a superuser, which the test cluster's `postgres` is).
/// Then `VACUUM ANALYZE`, so that the planner knows the tables and the first reads after the
/// load do not write hint bits, and a checkpoint. The statements run one by one outside a
/// transaction block (`VACUUM` cannot run inside one).
pub fn pg_load_statements(jobs: i64, created: &str) -> Vec<String> {
    // A step's times, from its job's `created_at` and its position.
    const STEPS: &str = "(VALUES (0, 'create_account'), (1, 'add_namespace'),
        (2, 'apply_resource_quota'), (3, 'apply_rbac_policy')) AS p (position, name)";
    const STARTED: &str = "j.created_at + 100 + p.position * 400";
    const FINISHED: &str = "j.created_at + 400 + p.position * 400";
    vec![
        // The load's own commit need not wait for its WAL flush: the checkpoint at the end
        // makes it durable.
        "SET synchronous_commit = off".to_string(),
        "SET maintenance_work_mem = '256MB'".to_string(),
        "SET session_replication_role = replica".to_string(),
        "BEGIN".to_string(),
        "CREATE TEMP TABLE dropped_indexes ON COMMIT DROP AS
         SELECT indexname, indexdef FROM pg_indexes i
         WHERE schemaname = 'public' AND NOT EXISTS (
             SELECT 1 FROM pg_constraint c
             WHERE c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)"
            .to_string(),
        "DO $$ DECLARE r record; BEGIN
             FOR r IN SELECT indexname FROM dropped_indexes LOOP
                 EXECUTE 'DROP INDEX ' || quote_ident(r.indexname);
             END LOOP;
         END $$"
            .to_string(),
        format!(
            "INSERT INTO jobs (id, kind, status, inputs, username, namespace, summary, error,
                submitted_by, request_id, created_at, started_at, finished_at, updated_at, attempt, run_at)
             SELECT lpad(to_hex(c >> 16), 8, '0') || '-' || lpad(to_hex(c & 65535), 4, '0')
                        || '-7000-8000-' || lpad(to_hex(i), 12, '0'),
                    'bootstrap_user',
                    CASE WHEN i % 20 = 7 THEN 'failed' WHEN i % 50 = 3 THEN 'canceled' ELSE 'succeeded' END,
                    jsonb_build_object('username', 'user' || (i % {USERS}), 'namespace', 'user' || (i % {USERS}),
                                       'operators', jsonb_build_object('postgresql', true),
                                       'resources', jsonb_build_object('cpu_cores', 2, 'ram_mb', 2048, 'disk_gb', 20)),
                    'user' || (i % {USERS}), 'user' || (i % {USERS}),
                    'User user' || (i % {USERS}) || ' created; namespace created; quota applied; RBAC applied.',
                    CASE WHEN i % 20 = 7 THEN '{{\"step\":\"add_namespace\",\"kind\":\"cli_failed\",\"detail\":\"boom\"}}'::jsonb END,
                    CASE WHEN i % 3 = 0 THEN 'ci' ELSE 'ops' END, 'req-' || i,
                    c, c + 50, c + 2000, c + 2000, 1, c
             FROM (SELECT i, {created} AS c FROM generate_series(0::bigint, {jobs} - 1) AS i) AS t"
        ),
        format!(
            "INSERT INTO job_steps (job_id, position, name, status, attempts, failures, started_at, finished_at, exit_code, output)
             SELECT j.id, p.position, p.name, 'succeeded', 1, 0, {STARTED}, {FINISHED}, 0, '{{\"note\":\"created\"}}'::jsonb
             FROM jobs j CROSS JOIN {STEPS}"
        ),
        format!(
            "INSERT INTO step_attempts (job_id, position, step, attempt, job_attempt, worker, command,
                outcome, exit_code, stdout, stderr, started_at, finished_at, duration_ms)
             SELECT j.id, p.position, p.name, 1, 1, 'host-1:4242:0a1b2c3d4e5f',
                    'everestctl ' || p.name || ' -u ' || j.username || ' -p ********', 'succeeded', 0,
                    '✅ ' || p.name || ' done for ' || j.username, '', {STARTED}, {FINISHED}, 300
             FROM jobs j CROSS JOIN {STEPS}"
        ),
        // A nested loop, as on SQLite: each job's events get increasing ids in their order.
        format!(
            "INSERT INTO job_events (job_id, at, type, attempt, worker, detail)
             SELECT j.id, j.created_at + e.n * 150, e.type, CASE WHEN e.n > 0 THEN 1 END,
                    CASE WHEN e.n > 0 THEN 'host-1:4242:0a1b2c3d4e5f' END, e.detail
             FROM jobs j CROSS JOIN (VALUES {EVENTS}) AS e (n, type, detail)"
        ),
        "INSERT INTO job_secrets (job_id, password, generated, expires_at)
         SELECT id, NULL, true, finished_at + 3600000 FROM jobs"
            .to_string(),
        "DO $$ DECLARE r record; BEGIN
             FOR r IN SELECT indexdef FROM dropped_indexes LOOP
                 EXECUTE r.indexdef;
             END LOOP;
         END $$"
            .to_string(),
        "COMMIT".to_string(),
        "SET session_replication_role = DEFAULT".to_string(),
        "VACUUM ANALYZE".to_string(),
        "CHECKPOINT".to_string(),
    ]
}
