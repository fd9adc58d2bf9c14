-- name: lock_run
-- Lock a run row for a use case and read what the engine needs.
SELECT id, workflow_id, namespace, workflow_type, task_queue, status, wake_pending,
       last_step_sequence, payload_codec, arguments, compatibility, open_wait_id
  FROM workflow_runs
 WHERE id = :id
   FOR UPDATE;

-- name: read_run_for_task
-- What a leased workflow task or a query task shows about its run (not locked).
SELECT r.id, r.workflow_id, r.workflow_type, r.task_queue, r.payload_codec, r.arguments, r.status,
       r.last_history_sequence
  FROM workflow_runs r
 WHERE r.id = :id;

-- name: set_wake_pending
-- Remember that a wake arrived while the run's workflow task was leased.
UPDATE workflow_runs SET wake_pending = :pending, updated_at = now() WHERE id = :id;

-- name: set_run_status
-- Move an open run between pending / running / waiting.
UPDATE workflow_runs SET status = :status, updated_at = now() WHERE id = :id;

-- name: close_run
-- Close a run in one statement: status, reason, output and (when not NULL) the last step
-- sequence; any pending wake and open condition wait cleared; the run's other
-- ready/leased tasks (:keep_task_id is the closing workflow task, completed separately),
-- open activity executions and pending timers cancelled.
WITH run AS (
    UPDATE workflow_runs
       SET status = :status, closed_reason = :reason, output = COALESCE(:output, output),
           last_step_sequence = COALESCE(:last_step_sequence, last_step_sequence),
           closed_at = now(), wake_pending = false, updated_at = now(),
           open_wait_id = NULL, open_wait_sequence = NULL, open_wait_timer_id = NULL,
           open_wait = NULL, wait_kind = NULL, wait_reason = NULL, wait_started_at = NULL,
           wait_deadline_at = NULL
     WHERE id = :id
), tasks AS (
    UPDATE workflow_tasks
       SET state = 'cancelled', lease_expires_at = NULL, updated_at = now()
     WHERE run_id = :id AND state IN ('ready', 'leased') AND id IS DISTINCT FROM :keep_task_id
), activities AS (
    UPDATE activity_executions SET status = 'cancelled', closed_at = now(), updated_at = now()
     WHERE run_id = :id AND status IN ('pending', 'running')
)
UPDATE timers SET state = 'cancelled', cancelled_at = now()
 WHERE run_id = :id AND state = 'pending';

-- name: settle_and_complete_workflow_task
-- A workflow task completed on a run that stays open, in one statement: the run gets
-- its step counter, status waiting and its deferred wake consumed; the task is
-- completed with its receipt; and the run's oldest accepted update without an open
-- update task is returned (it gets the run's next task).
WITH settled AS (
    UPDATE workflow_runs
       SET last_step_sequence = :last_step_sequence, status = 'waiting', wake_pending = false,
           updated_at = now()
     WHERE id = :run_id
), completed AS (
    UPDATE workflow_tasks
       SET state = 'completed', completed_at = now(), receipt = :receipt,
           lease_expires_at = NULL, updated_at = now()
     WHERE id = :task_id
)
SELECT u.id FROM workflow_updates u
 WHERE u.run_id = :run_id AND u.status = 'accepted'
   AND NOT EXISTS (SELECT 1 FROM workflow_tasks t
                    WHERE t.workflow_update_id = u.id AND t.state IN ('ready', 'leased')
                      AND t.id <> :task_id)
 ORDER BY u.accepted_at, u.id
 LIMIT 1;

-- name: count_settled_steps
-- How many steps of a run in a sequence range have reached a terminal state.
SELECT (SELECT count(*) FROM activity_executions
         WHERE run_id = :run_id AND sequence BETWEEN :first AND :last
           AND status IN ('completed', 'failed', 'timed_out', 'cancelled'))
     + (SELECT count(*) FROM timers
         WHERE run_id = :run_id AND sequence BETWEEN :first AND :last AND state = 'fired')
     + (SELECT count(*) FROM child_workflow_calls
         WHERE parent_run_id = :run_id AND sequence BETWEEN :first AND :last
           AND status IN ('completed', 'failed', 'cancelled', 'terminated'));

-- name: get_run_search_attributes
-- A locked run's search attributes, for an upsert to merge into.
SELECT search_attributes FROM workflow_runs WHERE id = :id;

-- name: set_run_search_attributes
-- Replace a run's search attributes with the merged map (the visibility projection).
UPDATE workflow_runs SET search_attributes = :search_attributes::jsonb, updated_at = now()
 WHERE id = :id;

-- name: get_run_memo
-- A locked run's memo, for an upsert to merge into.
SELECT memo FROM workflow_runs WHERE id = :id;

-- name: set_run_memo
-- Replace a run's memo with the merged map (what describe shows).
UPDATE workflow_runs SET memo = :memo::jsonb, updated_at = now() WHERE id = :id;
