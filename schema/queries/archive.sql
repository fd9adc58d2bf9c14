-- Archiving closed runs (POST /api/workflows/{wf}/archive, docs/workflow-maintenance.md).

-- name: get_run_archive
-- The archive stamp of a locked run (archived_at NULL: not archived).
SELECT archived_at, archive_command_id, archive_reason FROM workflow_runs WHERE id = :run_id;

-- name: archive_run
-- Stamp a closed run as archived by a command; nothing when it is open or already archived.
UPDATE workflow_runs
   SET archived_at = now(), archive_command_id = :command_id, archive_reason = :reason,
       updated_at = now()
 WHERE id = :run_id AND closed_at IS NOT NULL AND archived_at IS NULL
RETURNING archived_at;
