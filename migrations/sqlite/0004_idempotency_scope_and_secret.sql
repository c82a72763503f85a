-- Idempotency keys scoped per admin key name, and a keyed request hash.
--
-- An Idempotency-Key was unique across all admin keys, so one key name could replay another's
-- job. Now each key name has its own keys: unique (submitted_by, idempotency_key). SQLite cannot
-- drop a column's UNIQUE constraint without rebuilding `jobs` and every table that references it,
-- so the old column is renamed, emptied and no longer used.
ALTER TABLE jobs RENAME COLUMN idempotency_key TO unscoped_idempotency_key;
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;

-- `request_hash` was an unsalted SHA-256 of the route and body, password included: anyone with
-- the file could test guesses of a password against it. New hashes are HMAC-SHA256 with the
-- secret below. The old hashes are cleared; their keys stay, and reusing one is refused as
-- unverifiable (its job is still named).
UPDATE jobs
   SET idempotency_key = unscoped_idempotency_key,
       unscoped_idempotency_key = NULL,
       request_hash = NULL
 WHERE unscoped_idempotency_key IS NOT NULL OR request_hash IS NOT NULL;

CREATE UNIQUE INDEX jobs_idempotency ON jobs (submitted_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Secrets of this database, created by the service when it first opens it (random bytes).
-- `idempotency_hmac`: the key of `jobs.request_hash`. Never leaves the database but to the
-- process that hashes requests.
CREATE TABLE service_secrets (
    name   TEXT PRIMARY KEY,
    value  BLOB NOT NULL
) STRICT;
