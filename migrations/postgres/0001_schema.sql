-- The data model of the SQLite migrations 0001-0006, written for PostgreSQL, for several
-- replicas sharing one database.
--
-- Timestamps are milliseconds since the Unix epoch (UTC), as on SQLite: records read from
-- either backend are identical. Times that decide who may do what (leases, lock expiry, the
-- claim) come from the database clock, `now_ms()` below, never from a replica's clock.

-- The database clock in milliseconds since the epoch. The time of the transaction's start
-- (`now()`): every statement of one transaction sees the same instant. STABLE and written in
-- SQL, so the planner inlines it and can use it as an index bound (`run_at <= now_ms()`).
CREATE FUNCTION now_ms() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT (extract(epoch FROM now()) * 1000)::bigint $$;

CREATE TABLE jobs (
    id                text PRIMARY KEY,            -- UUIDv7
    kind              text NOT NULL,
    status            text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    inputs            jsonb NOT NULL,              -- resolved inputs, never a secret
    username          text,
    namespace         text,
    summary           text,
    error             jsonb,                       -- {step, kind, detail} when failed
    -- Idempotency keys are scoped per admin key name (SQLite 0004). NULLs are distinct, so
    -- jobs without a key never conflict.
    idempotency_key   text,
    request_hash      text,                        -- HMAC-SHA256 keyed with service_secrets
    submitted_by      text NOT NULL,
    request_id        text NOT NULL,
    created_at        bigint NOT NULL,
    started_at        bigint,
    finished_at       bigint,
    updated_at        bigint NOT NULL,
    attempt           bigint NOT NULL DEFAULT 0,   -- number of claims; with lease_owner it fences writes
    run_at            bigint NOT NULL,             -- earliest time a queued job may be claimed
    lease_owner       text,
    lease_expires_at  bigint,
    previous_owner    text,                        -- owner whose expired lease the last claim took over
    cancel_requested  boolean NOT NULL DEFAULT false,
    current_step      text,
    CONSTRAINT jobs_idempotency UNIQUE (submitted_by, idempotency_key)
);

-- The claim reads due queued jobs in (run_at, id) order from this partial index only: finished
-- jobs, however many, cost it nothing.
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE status = 'queued';
-- The claim's other candidates: running jobs, first the one whose lease expires first (taken
-- over once expired).
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';

-- `GET /jobs` (SQLite 0001 and 0003): newest first with a keyset cursor on (created_at, id);
-- each equality filter has its own index ending in (created_at, id), so a page is an index
-- range read that stops after `limit + 1` rows.
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_status_created ON jobs (status, created_at, id);
CREATE INDEX jobs_kind_created ON jobs (kind, created_at, id);
CREATE INDEX jobs_username_created ON jobs (username, created_at, id);
CREATE INDEX jobs_namespace_created ON jobs (namespace, created_at, id);
CREATE INDEX jobs_submitted_by_created ON jobs (submitted_by, created_at, id);
-- The retention pruner deletes the oldest finished jobs first.
CREATE INDEX jobs_prunable ON jobs (finished_at) WHERE status IN ('succeeded', 'failed', 'canceled');

CREATE TABLE job_steps (
    job_id       text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position     bigint NOT NULL,
    name         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'canceled')),
    attempts     bigint NOT NULL DEFAULT 0,        -- every attempt, interrupted ones included
    failures     bigint NOT NULL DEFAULT 0,        -- attempts that count against MAX_ATTEMPTS
    started_at   bigint,
    finished_at  bigint,
    exit_code    bigint,
    output       jsonb,                            -- step-specific (existed, rbac_applied, ...)
    PRIMARY KEY (job_id, position)
);

CREATE TABLE step_attempts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id         text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position       bigint NOT NULL,
    step           text NOT NULL,
    attempt        bigint NOT NULL,                -- 1-based per step
    job_attempt    bigint NOT NULL,                -- the claim it ran under
    worker         text NOT NULL,
    command        text,                           -- redacted
    stdin_preview  text,
    outcome        text CHECK (outcome IN ('succeeded', 'failed', 'timed_out', 'interrupted', 'canceled')),
    error_kind     text,                           -- transient | permanent | not_found | ...
    exit_code      bigint,
    stdout         text NOT NULL DEFAULT '',
    stderr         text NOT NULL DEFAULT '',
    started_at     bigint NOT NULL,
    finished_at    bigint,
    duration_ms    bigint,
    -- The command as identified across a restart (SQLite 0005): pid (= process group id) and
    -- start time (field 22 of /proc/<pid>/stat). On PostgreSQL they only matter to the
    -- replica on the same host.
    pid            bigint,
    pid_start      bigint
);

CREATE INDEX step_attempts_job ON step_attempts (job_id, position, id);

CREATE TABLE job_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id    text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at        bigint NOT NULL,
    type      text NOT NULL,
    attempt   bigint,
    worker    text,
    detail    text,
    -- Of a `retry_scheduled` event (SQLite 0006): the job's new run_at and the delay.
    retry_at  bigint,
    delay_ms  bigint
);

CREATE INDEX job_events_job ON job_events (job_id, id);

-- The password a job sets. Kept until the job has finished and CREDENTIALS_TTL_SECONDS passed.
CREATE TABLE job_secrets (
    job_id      text PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    password    text,                              -- NULL once purged
    generated   boolean NOT NULL,
    expires_at  bigint                             -- set when the job finishes
);

CREATE INDEX job_secrets_expiry ON job_secrets (expires_at) WHERE password IS NOT NULL;

-- Named locks that keep two jobs, on any replica, from changing the same thing at once:
-- `everest-accounts`, `everest-rbac`, `namespace:<ns>`. A lock is taken when it is free, expired
-- or already its job's, renewed with its job's lease and released with the job's attempt, only
-- ever in writes fenced on that lease: a dead replica's locks free themselves, and a holder that
-- lost its lease (hence its locks) changes nothing.
CREATE TABLE resource_locks (
    name        text PRIMARY KEY,
    job_id      text NOT NULL,
    owner       text NOT NULL,                     -- the lease owner that took it
    expires_at  bigint NOT NULL
);

CREATE INDEX resource_locks_job ON resource_locks (job_id);

-- The replica that runs maintenance (retention pruner, secret expiry).
-- At most one row. `term` grows at every election; a maintenance write re-checks it, so a
-- leader that was paused past its expiry cannot write after a successor was elected.
CREATE TABLE leader (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    term        bigint NOT NULL,
    owner       text NOT NULL,
    expires_at  bigint NOT NULL
);

-- Secrets of this database, created by the service when it first opens it (random bytes).
-- `idempotency_hmac`: the key of `jobs.request_hash`.
CREATE TABLE service_secrets (
    name   text PRIMARY KEY,
    value  bytea NOT NULL
);
