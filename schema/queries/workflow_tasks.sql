-- name: read_run_for_task
-- What a leased workflow task shows about its run.
SELECT r.id, r.workflow_id, r.workflow_type, r.task_queue, r.payload_codec, r.arguments, r.status,
       r.last_history_sequence
  FROM workflow_runs r
 WHERE r.id = $1;

-- name: mark_run_running
-- A workflow task was leased: an open run shows as running, and a deferred wake is covered
-- (the task reads the history after this row lock). Locks every open run, so a wake
-- racing the claim waits and then sees the task leased.
UPDATE workflow_runs SET status = 'running', wake_pending = false, updated_at = now()
 WHERE id = $1 AND status IN ('pending', 'running', 'waiting');
