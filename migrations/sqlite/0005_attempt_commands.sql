-- The command an attempt runs, as identified across a restart of the service: its pid (also
-- its process group id) and its start time (field 22 of `/proc/<pid>/stat`, clock ticks since
-- boot). Written right after spawn, for the command that runs last in a multi-command step. A
-- process that took over a job stops a command that still runs with both values matching before
-- it runs the step again; a pid given to another process since never matches its start time.
ALTER TABLE step_attempts ADD COLUMN pid INTEGER;
ALTER TABLE step_attempts ADD COLUMN pid_start INTEGER;
