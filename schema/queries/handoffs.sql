-- name: lease_created_workflow_task
-- Sync match (matching/handoffs.py): lease the ready workflow task :task_id, created by
-- the caller's operation, to a parked poll's worker, under claim_workflow_task's
-- conditions (only of the poll's types; a run pinned to a build goes to that build's
-- workers; nothing while the worker's build-id cohort drains); mark its run running and clear its deferred wake, as
-- that claim does. Its columns; no row when that poll's claim could not have taken the
-- task, which then stays ready.
WITH task AS (
    UPDATE workflow_tasks t
       SET state = 'leased', lease_owner = :worker_id, poll_request_id = :poll_request_id,
           leased_at = now(), lease_expires_at = now() + make_interval(secs => :lease_s),
           attempt = t.attempt + 1, updated_at = now()
     WHERE t.id = :task_id AND t.kind = 'workflow' AND t.state = 'ready'
       AND (cardinality(:workflow_types::text[]) = 0
            OR t.workflow_type = ANY(:workflow_types::text[]))
       AND (t.compatibility IS NULL
            OR t.compatibility = (SELECT build_id FROM worker_registrations
                                   WHERE namespace = :namespace AND worker_id = :worker_id))
       AND NOT EXISTS (
           SELECT 1 FROM worker_registrations w
             JOIN build_id_rollouts b ON b.namespace = w.namespace
                                     AND b.task_queue = :task_queue AND b.build_id = w.build_id
            WHERE w.namespace = :namespace AND w.worker_id = :worker_id
              AND b.drain_intent = 'draining')
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

-- name: lease_created_activity_task
-- Sync match: lease the ready activity task :task_id, scheduled by this very transaction,
-- to a parked poll's worker (not while its build-id cohort drains), start its attempt
-- (:attempt_id) and record ActivityStarted (:event_id), as claim_activity_task does, with
-- its columns. No row when that poll's claim could not have taken the task.
WITH task AS (
    UPDATE workflow_tasks t
       SET state = 'leased', lease_owner = :worker_id, poll_request_id = :poll_request_id,
           leased_at = now(),
           lease_expires_at = now() + make_interval(
               secs => COALESCE((e.options ->> 'start_to_close_timeout')::int, :default_lease_s)),
           activity_attempt_id = :attempt_id, attempt = e.attempt_count + 1, updated_at = now()
      FROM activity_executions e
     WHERE t.id = :task_id AND t.kind = 'activity' AND t.state = 'ready'
       AND e.id = t.activity_execution_id
       AND NOT EXISTS (
           SELECT 1 FROM worker_registrations w
             JOIN build_id_rollouts b ON b.namespace = w.namespace
                                     AND b.task_queue = :task_queue AND b.build_id = w.build_id
            WHERE w.namespace = :namespace AND w.worker_id = :worker_id
              AND b.drain_intent = 'draining')
    RETURNING t.id, t.run_id, t.activity_execution_id, t.lease_owner, t.lease_expires_at, t.attempt
), execution AS (
    UPDATE activity_executions e
       SET attempt_count = task.attempt, current_attempt_id = :attempt_id, status = 'running',
           started_at = COALESCE(e.started_at, now()), updated_at = now(),
           schedule_to_start_deadline_at = NULL,
           start_to_close_deadline_at = now() + make_interval(
               secs => (e.options ->> 'start_to_close_timeout')::int),
           heartbeat_deadline_at = now() + make_interval(
               secs => (e.options ->> 'heartbeat_timeout')::int)
      FROM task
     WHERE e.id = task.activity_execution_id
    RETURNING e.id, e.workflow_id, e.sequence, e.activity_type, e.arguments, e.retry_policy,
              e.parallel, e.schedule_to_close_deadline_at, e.start_to_close_deadline_at,
              e.heartbeat_deadline_at
), attempt AS (
    INSERT INTO activity_attempts (id, activity_execution_id, run_id, task_id, attempt_number,
                                   lease_owner)
    SELECT :attempt_id, task.activity_execution_id, task.run_id, task.id, task.attempt,
           :worker_id
      FROM task
), run AS (
    UPDATE workflow_runs r
       SET last_history_sequence = r.last_history_sequence + 1, last_progress_at = now(),
           updated_at = now()
      FROM task
     WHERE r.id = task.run_id AND r.status IN ('pending', 'running', 'waiting')
    RETURNING r.id, r.last_history_sequence AS sequence
), started AS (
    INSERT INTO history_events (id, run_id, sequence, event_type, payload)
    SELECT :event_id, run.id, run.sequence, 'ActivityStarted',
           jsonb_build_object('sequence', execution.sequence,
                              'activity_type', execution.activity_type,
                              'activity_class', execution.activity_type,
                              'activity_execution_id', execution.id)
           || COALESCE(execution.parallel, '{}'::jsonb)
           || jsonb_build_object('activity_attempt_id', :attempt_id::text,
                                 'attempt_number', task.attempt)
      FROM run, task, execution
)
SELECT task.id AS task_id, task.run_id, :attempt_id::text AS activity_attempt_id,
       task.lease_owner, task.lease_expires_at, task.attempt AS attempt_number,
       execution.id AS execution_id, execution.workflow_id, execution.activity_type,
       execution.arguments, execution.retry_policy, execution.schedule_to_close_deadline_at,
       execution.start_to_close_deadline_at, execution.heartbeat_deadline_at,
       run.id IS NOT NULL AS run_open, false AS replayed
  FROM task JOIN execution ON execution.id = task.activity_execution_id
  LEFT JOIN run ON true;
