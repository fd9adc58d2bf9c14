-- name: lock_run
-- Lock a run row for a use case and read what the engine needs.
SELECT id, workflow_id, namespace, workflow_type, task_queue, status, wake_pending,
       last_step_sequence, payload_codec, arguments, compatibility, open_wait_id
  FROM workflow_runs
 WHERE id = $1
   FOR UPDATE;

-- name: set_wake_pending
-- Remember that a wake arrived while the run's workflow task was leased.
UPDATE workflow_runs SET wake_pending = $2, updated_at = now() WHERE id = $1;

-- name: set_run_status
-- Move an open run between pending / running / waiting.
UPDATE workflow_runs SET status = $2, updated_at = now() WHERE id = $1;

-- name: set_last_step_sequence
-- Record the last workflow step sequence allocated on a run.
UPDATE workflow_runs SET last_step_sequence = $2, updated_at = now() WHERE id = $1;

-- name: close_run
-- Close a run: status, reason, output; clears any pending wake.
UPDATE workflow_runs
   SET status = $2, closed_reason = $3, output = COALESCE($4, output),
       closed_at = now(), wake_pending = false, updated_at = now()
 WHERE id = $1;

-- name: settle_open_run
-- After a non-terminal completion: the step counter, status waiting, deferred wake consumed.
UPDATE workflow_runs
   SET last_step_sequence = $2, status = 'waiting', wake_pending = false, updated_at = now()
 WHERE id = $1;
