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

-- name: close_run
-- Close a run in one statement: status, reason, output and (when $6 is not NULL) the
-- last step sequence; any pending wake and open condition wait cleared; the run's
-- other ready/leased tasks ($5 is the closing workflow task, completed separately),
-- open activity executions and pending timers cancelled.
WITH run AS (
    UPDATE workflow_runs
       SET status = $2, closed_reason = $3, output = COALESCE($4, output),
           last_step_sequence = COALESCE($6, last_step_sequence),
           closed_at = now(), wake_pending = false, updated_at = now(),
           open_wait_id = NULL, open_wait_sequence = NULL, open_wait_timer_id = NULL,
           open_wait = NULL, wait_kind = NULL, wait_reason = NULL, wait_started_at = NULL,
           wait_deadline_at = NULL
     WHERE id = $1
), tasks AS (
    UPDATE workflow_tasks
       SET state = 'cancelled', lease_expires_at = NULL, updated_at = now()
     WHERE run_id = $1 AND state IN ('ready', 'leased') AND id IS DISTINCT FROM $5
), activities AS (
    UPDATE activity_executions SET status = 'cancelled', closed_at = now(), updated_at = now()
     WHERE run_id = $1 AND status IN ('pending', 'running')
)
UPDATE timers SET state = 'cancelled', cancelled_at = now()
 WHERE run_id = $1 AND state = 'pending';

-- name: settle_and_complete_workflow_task
-- A workflow task completed on a run that stays open, in one statement: the run gets
-- its step counter ($3), status waiting and its deferred wake consumed; the task ($2)
-- is completed with its receipt ($4); and the run's oldest accepted update without an
-- open update task is returned (it gets the run's next task).
WITH settled AS (
    UPDATE workflow_runs
       SET last_step_sequence = $3, status = 'waiting', wake_pending = false, updated_at = now()
     WHERE id = $1
), completed AS (
    UPDATE workflow_tasks
       SET state = 'completed', completed_at = now(), receipt = $4, lease_expires_at = NULL,
           updated_at = now()
     WHERE id = $2
)
SELECT u.id FROM workflow_updates u
 WHERE u.run_id = $1 AND u.status = 'accepted'
   AND NOT EXISTS (SELECT 1 FROM workflow_tasks t
                    WHERE t.workflow_update_id = u.id AND t.state IN ('ready', 'leased')
                      AND t.id <> $2)
 ORDER BY u.accepted_at, u.id
 LIMIT 1;
