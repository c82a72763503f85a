-- Jobs, their steps, every attempt of every step, the audit trail, and generated secrets.
-- Timestamps are milliseconds since the Unix epoch (UTC).

CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,           -- UUIDv7
    kind              TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    inputs            TEXT NOT NULL,              -- resolved inputs as JSON, never a secret
    username          TEXT,
    namespace         TEXT,
    summary           TEXT,
    error             TEXT,                       -- JSON {step, kind, detail} when failed
    idempotency_key   TEXT UNIQUE,
    request_hash      TEXT,
    submitted_by      TEXT NOT NULL,
    request_id        TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    updated_at        INTEGER NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 0, -- number of claims; with lease_owner it fences writes
    run_at            INTEGER NOT NULL,           -- earliest time a queued job may be claimed
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    previous_owner    TEXT,                       -- owner whose expired lease the last claim took over
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    current_step      TEXT
) STRICT;

CREATE INDEX jobs_due ON jobs (run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_created ON jobs (created_at, id);

CREATE TABLE job_steps (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'canceled')),
    attempts     INTEGER NOT NULL DEFAULT 0,      -- every attempt, interrupted ones included
    failures     INTEGER NOT NULL DEFAULT 0,      -- attempts that count against MAX_ATTEMPTS
    started_at   INTEGER,
    finished_at  INTEGER,
    exit_code    INTEGER,
    output       TEXT,                            -- step-specific JSON (existed, rbac_applied, ...)
    PRIMARY KEY (job_id, position)
) STRICT;

CREATE TABLE step_attempts (
    id             INTEGER PRIMARY KEY,
    job_id         TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    step           TEXT NOT NULL,
    attempt        INTEGER NOT NULL,              -- 1-based per step
    job_attempt    INTEGER NOT NULL,              -- the claim it ran under
    worker         TEXT NOT NULL,
    command        TEXT,                          -- redacted
    stdin_preview  TEXT,
    outcome        TEXT CHECK (outcome IN ('succeeded', 'failed', 'timed_out', 'interrupted', 'canceled')),
    error_kind     TEXT,                          -- transient | permanent | not_found | ...
    exit_code      INTEGER,
    stdout         TEXT NOT NULL DEFAULT '',
    stderr         TEXT NOT NULL DEFAULT '',
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    duration_ms    INTEGER
) STRICT;

CREATE INDEX step_attempts_job ON step_attempts (job_id, position, id);

CREATE TABLE job_events (
    id        INTEGER PRIMARY KEY,
    job_id    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at        INTEGER NOT NULL,
    type      TEXT NOT NULL,
    attempt   INTEGER,
    worker    TEXT,
    detail    TEXT
) STRICT;

CREATE INDEX job_events_job ON job_events (job_id, id);

-- The password a job sets. Kept until the job has finished and CREDENTIALS_TTL_SECONDS passed.
CREATE TABLE job_secrets (
    job_id      TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    password    TEXT,                              -- NULL once purged
    generated   INTEGER NOT NULL,
    expires_at  INTEGER                            -- set when the job finishes
) STRICT;

CREATE INDEX job_secrets_expiry ON job_secrets (expires_at) WHERE password IS NOT NULL;
