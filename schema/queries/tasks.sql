-- name: open_workflow_task_state
-- State of the run's open (ready or leased) workflow task, if any.
SELECT state FROM workflow_tasks
 WHERE run_id = :run_id AND kind = 'workflow' AND state IN ('ready', 'leased');

-- name: insert_workflow_task
-- Create a ready workflow task for a run.
INSERT INTO workflow_tasks (id, namespace, task_queue, kind, run_id, workflow_id, workflow_type,
                            compatibility, available_at)
VALUES (:id, :namespace, :task_queue, 'workflow', :run_id, :workflow_id, :workflow_type,
        :compatibility, now());

-- name: claim_workflow_task
-- Lease the oldest ready workflow task on a queue (optionally of the worker's types;
-- only runs unpinned or pinned to its build; nothing while its cohort drains), mark
-- its run running and clear its deferred wake, in one statement. Updating the run row
-- locks it, so a wake racing the claim either commits first (and its event is in the
-- history read next) or runs after and sees the task leased (and defers itself).
WITH next AS (
    SELECT id FROM workflow_tasks
     WHERE namespace = :namespace AND task_queue = :task_queue AND kind = 'workflow'
       AND state = 'ready' AND available_at <= now()
       AND (cardinality(:workflow_types::text[]) = 0
            OR workflow_type = ANY(:workflow_types::text[]))
       AND (compatibility IS NULL  -- a run pinned to a build goes to that build's workers
            OR compatibility = (SELECT build_id FROM worker_registrations
                                 WHERE namespace = :namespace AND worker_id = :worker_id))
       AND NOT EXISTS (  -- the worker's build-id cohort is not draining (an InitPlan: once)
           SELECT 1 FROM worker_registrations w
             JOIN build_id_rollouts b ON b.namespace = w.namespace
                                     AND b.task_queue = :task_queue AND b.build_id = w.build_id
            WHERE w.namespace = :namespace AND w.worker_id = :worker_id
              AND b.drain_intent = 'draining')
     ORDER BY available_at, id
     LIMIT 1
       FOR UPDATE SKIP LOCKED
), task AS (
    UPDATE workflow_tasks t
       SET state = 'leased', lease_owner = :worker_id, poll_request_id = :poll_request_id,
           leased_at = now(), lease_expires_at = now() + make_interval(secs => :lease_s),
           attempt = t.attempt + 1, updated_at = now()
      FROM next
     WHERE t.id = next.id
    RETURNING t.id, t.run_id, t.attempt, t.lease_owner, t.lease_expires_at, t.workflow_update_id
), run AS (
    UPDATE workflow_runs r
       SET status = CASE WHEN r.status IN ('pending', 'waiting') THEN 'running' ELSE r.status END,
           wake_pending = false, updated_at = now()
      FROM task
     WHERE r.id = task.run_id
    RETURNING r.id, r.workflow_id, r.workflow_type, r.payload_codec, r.arguments,
              r.last_history_sequence
)
SELECT task.id, task.run_id, task.attempt, task.lease_owner, task.lease_expires_at,
       task.workflow_update_id,
       run.workflow_id, run.workflow_type, run.payload_codec, run.arguments,
       run.last_history_sequence
  FROM task JOIN run ON run.id = task.run_id;

-- name: find_polled_workflow_task
-- The workflow task a poll with this poll_request_id already leased (poll retries), while
-- its run is open (a lease on a closed run is being retired, not worth running), with
-- what the task shows of its run: claim_workflow_task's columns.
SELECT t.id, t.run_id, t.attempt, t.lease_owner, t.lease_expires_at, t.workflow_update_id,
       r.workflow_id, r.workflow_type, r.payload_codec, r.arguments, r.last_history_sequence
  FROM workflow_tasks t JOIN workflow_runs r ON r.id = t.run_id
 WHERE t.lease_owner = :worker_id AND t.poll_request_id = :poll_request_id
   AND t.state = 'leased' AND t.kind = 'workflow'
   AND t.namespace = :namespace AND t.task_queue = :task_queue AND t.lease_expires_at > now()
   AND r.status IN ('pending', 'running', 'waiting');

-- name: lock_workflow_task_and_run
-- Lock a workflow task and its run together for a completion (one round trip instead
-- of two; the task is locked first, as when they were two statements). The task's
-- columns are lock_task's; the run's are those of lock_run, prefixed run_ (its id as
-- run_id_).
SELECT t.id, t.namespace, t.kind, t.run_id, t.state, t.lease_owner, t.lease_expires_at,
       t.lease_expires_at <= now() AS lease_expired, t.attempt, t.receipt, t.failure_count,
       t.workflow_update_id,
       r.id AS run_id_, r.workflow_id AS run_workflow_id, r.namespace AS run_namespace,
       r.workflow_type AS run_workflow_type, r.task_queue AS run_task_queue,
       r.status AS run_status, r.wake_pending AS run_wake_pending,
       r.last_step_sequence AS run_last_step_sequence, r.payload_codec AS run_payload_codec,
       r.arguments AS run_arguments, r.compatibility AS run_compatibility,
       r.open_wait_id AS run_open_wait_id
  FROM workflow_tasks t JOIN workflow_runs r ON r.id = t.run_id
 WHERE t.id = :id
   FOR UPDATE OF t, r;

-- name: lock_task
-- Lock a task for fencing and read its lease.
SELECT id, namespace, kind, run_id, state, lease_owner, lease_expires_at,
       lease_expires_at <= now() AS lease_expired, attempt, receipt, failure_count,
       workflow_update_id
  FROM workflow_tasks
 WHERE id = :id
   FOR UPDATE;

-- name: complete_task
-- Close a task as completed, remembering the accepted completion for re-sends.
UPDATE workflow_tasks
   SET state = 'completed', completed_at = now(), receipt = :receipt, lease_expires_at = NULL,
       updated_at = now()
 WHERE id = :id;

-- name: reoffer_workflow_task
-- Put a failed workflow task back after a backoff; the attempt counter keeps growing.
UPDATE workflow_tasks
   SET state = 'ready', lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL,
       poll_request_id = NULL, available_at = now() + make_interval(secs => :backoff_s),
       failure = :failure, failure_count = failure_count + 1, updated_at = now()
 WHERE id = :id;

-- name: release_task
-- Undo a lease that could not be delivered (the poller went away); the queue to wake.
UPDATE workflow_tasks
   SET state = 'ready', lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL,
       poll_request_id = NULL, attempt = attempt - 1, updated_at = now()
 WHERE id = :id AND state = 'leased' AND attempt = :attempt AND lease_owner = :lease_owner
RETURNING namespace, task_queue, kind;

-- name: extend_task_lease
-- Extend a lease by n seconds from now.
UPDATE workflow_tasks
   SET lease_expires_at = now() + make_interval(secs => :lease_s), updated_at = now()
 WHERE id = :id
RETURNING lease_expires_at;

-- name: wake_run
-- A wake of a locked, open run in one statement (engine/wakes.py): nothing when its
-- workflow task is ready, wake_pending when it is leased, otherwise a new ready task
-- (:task_id), whose id is returned.
WITH open_task AS (
    SELECT state FROM workflow_tasks
     WHERE run_id = :run_id AND kind = 'workflow' AND state IN ('ready', 'leased')
     LIMIT 1
), pending AS (
    UPDATE workflow_runs SET wake_pending = true, updated_at = now()
     WHERE id = :run_id AND NOT wake_pending AND (SELECT state FROM open_task) = 'leased'
), created AS (
    INSERT INTO workflow_tasks (id, namespace, task_queue, kind, run_id, workflow_id,
                                workflow_type, compatibility, available_at)
    SELECT :task_id, :namespace, :task_queue, 'workflow', :run_id, :workflow_id,
           :workflow_type, :compatibility, now()
     WHERE NOT EXISTS (SELECT 1 FROM open_task)
    RETURNING id
)
SELECT id FROM created;
