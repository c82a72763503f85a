-- Indexes for the audit queries (`GET /jobs`) and the retention pruner.
--
-- `GET /jobs` lists newest first, `ORDER BY created_at DESC, id DESC`, with a keyset cursor
-- `(created_at, id) < (?, ?)`. The unfiltered list and the `created_after` / `created_before`
-- filters walk `jobs_created (created_at, id)` of 0001 backwards; each equality filter has its
-- own index ending in `(created_at, id)`, so a page is an index range read that stops after
-- `limit + 1` rows, never a scan and sort of every matching job.

CREATE INDEX jobs_status_created ON jobs (status, created_at, id);
CREATE INDEX jobs_kind_created ON jobs (kind, created_at, id);
CREATE INDEX jobs_username_created ON jobs (username, created_at, id);
CREATE INDEX jobs_namespace_created ON jobs (namespace, created_at, id);
CREATE INDEX jobs_submitted_by_created ON jobs (submitted_by, created_at, id);

-- The pruner deletes the oldest finished jobs first. Only finished jobs are in this index, so
-- queued and running jobs (whatever their age) cost it nothing; the pruner names it with
-- `INDEXED BY` so that a schema change can never silently turn its query into a table scan.
CREATE INDEX jobs_prunable ON jobs (finished_at) WHERE status IN ('succeeded', 'failed', 'canceled');
