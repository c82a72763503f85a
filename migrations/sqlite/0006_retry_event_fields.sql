-- A `retry_scheduled` event says when the retry is due in machine-readable form, not only in
-- its prose detail: `retry_at` (ms since the epoch, the job's new `run_at`) and `delay_ms`.
-- Both are NULL for every other event and for retries scheduled before this migration.

ALTER TABLE job_events ADD COLUMN retry_at INTEGER;
ALTER TABLE job_events ADD COLUMN delay_ms INTEGER;
