-- name: read_run_for_task
-- What a leased workflow task shows about its run.
SELECT r.id, r.workflow_id, r.workflow_type, r.task_queue, r.payload_codec, r.arguments, r.status,
       r.last_history_sequence
  FROM workflow_runs r
 WHERE r.id = $1;

-- name: mark_run_running
-- A workflow task was leased: an open run shows as running.
UPDATE workflow_runs SET status = 'running', updated_at = now()
 WHERE id = $1 AND status IN ('pending', 'waiting');
