-- Named locks that keep two jobs from changing the same thing at once: `everest-accounts`,
-- `everest-rbac`, `namespace:<ns>`. A lock carries the holder's lease so that a crashed holder
-- cannot block forever.
CREATE TABLE resource_locks (
    name        TEXT PRIMARY KEY,
    job_id      TEXT NOT NULL,
    owner       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX resource_locks_job ON resource_locks (job_id);
