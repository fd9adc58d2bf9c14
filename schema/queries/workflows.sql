-- name: insert_instance_with_first_run
-- Create an instance and its pending first run (codec avro, command 1 = the start); no row: id taken.
-- The run is pinned (compatibility) to the build promoted last on its queue, if any.
WITH instance AS (
    INSERT INTO workflow_instances (workflow_id, namespace, workflow_type, business_key,
                                    execution_timeout_seconds, execution_deadline_at,
                                    current_run_id, run_count)
    VALUES (:workflow_id, :namespace, :workflow_type, :business_key,
            :execution_timeout_seconds::integer,
            now() + make_interval(secs => :execution_timeout_seconds::integer), :run_id, 1)
    -- No conflict target: a racing start may collide on (workflow_id, namespace) first,
    -- and that too means the id is taken (with a target it raised a unique violation).
    ON CONFLICT DO NOTHING
    RETURNING workflow_id, namespace, execution_deadline_at
)
INSERT INTO workflow_runs (id, workflow_id, namespace, run_number, workflow_type, business_key,
                           task_queue, compatibility, payload_codec, arguments, memo,
                           search_attributes, run_timeout_seconds, execution_deadline_at,
                           run_deadline_at, last_command_sequence, last_progress_at)
SELECT :run_id, instance.workflow_id, instance.namespace, 1, :workflow_type, :business_key,
       :task_queue,
       -- build_id_rollouts' promoted build, as in start_new_workflow ('' = unpinned)
       (SELECT NULLIF(b.build_id, '') FROM build_id_rollouts b
         WHERE b.namespace = :namespace AND b.task_queue = :task_queue
           AND b.promoted_at IS NOT NULL
         ORDER BY b.promoted_at DESC, b.build_id DESC
         LIMIT 1),
       'avro', :arguments, :memo::jsonb, :search_attributes::jsonb,
       :run_timeout_seconds::integer, instance.execution_deadline_at,
       now() + make_interval(secs => :run_timeout_seconds::integer), 1, now()
  FROM instance
RETURNING started_at, execution_deadline_at, run_deadline_at, compatibility;

-- name: get_instance_for_start
-- The instance owning a workflow_id (any namespace) with its current run's business key.
SELECT i.namespace, i.workflow_type, i.current_run_id, r.business_key
  FROM workflow_instances i
  LEFT JOIN workflow_runs r ON r.id = i.current_run_id
 WHERE i.workflow_id = :workflow_id;

-- name: get_current_run_id
-- The instance's current run (re-checked after locking that run).
SELECT current_run_id FROM workflow_instances WHERE workflow_id = :workflow_id;

-- name: allocate_command_sequence
-- Next control-plane command number of a run (caller holds the run lock).
UPDATE workflow_runs
   SET last_command_sequence = last_command_sequence + 1, updated_at = now()
 WHERE id = :run_id
RETURNING last_command_sequence;

-- name: insert_workflow_command
-- Record a control-plane command and its outcome (accepted or rejected).
INSERT INTO workflow_commands (id, namespace, workflow_id, run_id, resolved_run_id, command_type,
                               target_scope, context, status, outcome, rejection_reason,
                               workflow_type, payload_codec, payload, command_sequence,
                               accepted_at, applied_at, rejected_at)
VALUES (:id, :namespace, :workflow_id, :run_id, :run_id, :command_type, :target_scope,
        :context::jsonb, :status::text, :outcome, :rejection_reason, :workflow_type,
        :payload_codec, :payload, :command_sequence,
        CASE WHEN :status::text = 'accepted' THEN now() END,
        CASE WHEN :status::text = 'accepted' THEN now() END,
        CASE WHEN :status::text = 'rejected' THEN now() END);

-- name: get_workflow_run_view
-- Describe view of one run of an instance in a namespace: the current run when run_id is NULL.
SELECT r.id AS run_id, r.workflow_id, r.namespace, r.workflow_type, r.business_key, r.status,
       r.status_bucket, r.closed_reason, r.task_queue, r.run_number, i.run_count,
       COALESCE(i.current_run_id = r.id, false) AS is_current_run, r.compatibility,
       r.payload_codec, r.started_at, r.closed_at, i.execution_timeout_seconds,
       r.run_timeout_seconds, r.execution_deadline_at, r.run_deadline_at, r.arguments, r.output,
       r.memo, r.search_attributes, r.wait_kind, r.wait_reason, r.last_progress_at,
       r.archived_at
  FROM workflow_instances i
  JOIN workflow_runs r ON r.id = COALESCE(:run_id::text, i.current_run_id)
                      AND r.workflow_id = i.workflow_id
 WHERE i.workflow_id = :workflow_id AND i.namespace = :namespace;

-- name: list_instance_runs
-- Every run of an instance in a namespace, oldest first (empty: no such instance here).
SELECT r.id AS run_id, r.workflow_id, r.namespace, r.workflow_type, r.business_key, r.status,
       r.status_bucket, r.closed_reason, r.task_queue, r.run_number, i.run_count,
       COALESCE(i.current_run_id = r.id, false) AS is_current_run, r.compatibility,
       r.payload_codec, r.started_at, r.closed_at
  FROM workflow_instances i
  JOIN workflow_runs r ON r.workflow_id = i.workflow_id AND r.namespace = i.namespace
 WHERE i.workflow_id = :workflow_id AND i.namespace = :namespace
 ORDER BY r.run_number;

-- name: workflow_run_status
-- The status of a run of this instance and namespace (history reads); no row: none such.
SELECT status FROM workflow_runs
 WHERE workflow_id = :workflow_id AND namespace = :namespace AND id = :run_id;

-- name: start_new_workflow
-- A start of a new workflow id as one atomic statement (one round trip, no explicit
-- transaction): instance, first run, start command, StartAccepted + WorkflowStarted
-- and the first workflow task. No row: the id is taken (the caller then runs the
-- transactional start, which answers for the existing instance).
-- WorkflowStarted gets the run's deadlines here, added to its payload.
-- The run and its task are pinned (compatibility) to the build promoted last on the
-- queue (build_id_rollouts; the unversioned cohort's '' pins nothing), if any.
-- Sync match: with a lease owner (its poll request, lease seconds) the task is written
-- leased to that worker (attempt 1) and the run running, as a claim would leave them;
-- unless a claim by that worker could not take it (the run is pinned to another build, or
-- the worker's cohort is draining): then it is written ready, as without a lease owner.
-- Then one row per event (the handed-over task's history), else one row; none when the id
-- is taken.
WITH pin AS (
    SELECT (SELECT NULLIF(b.build_id, '') FROM build_id_rollouts b
             WHERE b.namespace = :namespace AND b.task_queue = :task_queue
               AND b.promoted_at IS NOT NULL
             ORDER BY b.promoted_at DESC, b.build_id DESC
             LIMIT 1) AS compatibility
), lease AS (  -- the lease owner, when claim_workflow_task's build-id checks let it take it
    SELECT :lease_owner::text AS owner
      FROM pin
     WHERE :lease_owner::text IS NOT NULL
       AND (pin.compatibility IS NULL
            OR pin.compatibility = (SELECT w.build_id FROM worker_registrations w
                                     WHERE w.namespace = :namespace
                                       AND w.worker_id = :lease_owner::text))
       AND NOT EXISTS (SELECT 1 FROM worker_registrations w
                         JOIN build_id_rollouts b ON b.namespace = w.namespace
                                                 AND b.task_queue = :task_queue
                                                 AND b.build_id = w.build_id
                        WHERE w.namespace = :namespace AND w.worker_id = :lease_owner::text
                          AND b.drain_intent = 'draining')
), instance AS (
    INSERT INTO workflow_instances (workflow_id, namespace, workflow_type, business_key,
                                    execution_timeout_seconds, execution_deadline_at,
                                    current_run_id, run_count)
    VALUES (:workflow_id, :namespace, :workflow_type, :business_key,
            :execution_timeout_seconds::integer,
            now() + make_interval(secs => :execution_timeout_seconds::integer), :run_id, 1)
    -- No conflict target: a racing start may collide on (workflow_id, namespace) first,
    -- and that too means the id is taken (with a target it raised a unique violation).
    ON CONFLICT DO NOTHING
    RETURNING workflow_id, namespace, execution_deadline_at
), run AS (
    INSERT INTO workflow_runs (id, workflow_id, namespace, run_number, workflow_type,
                               business_key, task_queue, compatibility, payload_codec, arguments,
                               memo, search_attributes, run_timeout_seconds,
                               execution_deadline_at, run_deadline_at, last_command_sequence,
                               last_history_sequence, last_progress_at, status)
    SELECT :run_id, instance.workflow_id, instance.namespace, 1, :workflow_type, :business_key,
           :task_queue, pin.compatibility, 'avro', :arguments, :memo::jsonb,
           :search_attributes::jsonb, :run_timeout_seconds::integer,
           instance.execution_deadline_at,
           now() + make_interval(secs => :run_timeout_seconds::integer), 1, 2, now(),
           CASE WHEN EXISTS (SELECT 1 FROM lease) THEN 'running' ELSE 'pending' END
      FROM instance, pin
    RETURNING id, compatibility, started_at, execution_deadline_at, run_deadline_at
), command AS (
    INSERT INTO workflow_commands (id, namespace, workflow_id, run_id, resolved_run_id,
                                   command_type, target_scope, context, status, outcome,
                                   workflow_type, payload_codec, payload, command_sequence,
                                   accepted_at, applied_at)
    SELECT :command_id, :namespace, :workflow_id, run.id, run.id, 'start', 'instance',
           :command_context::jsonb, 'accepted', 'started_new', :workflow_type, 'avro',
           :arguments, 1, now(), now()
      FROM run
), events AS (
    INSERT INTO history_events (id, run_id, sequence, event_type, payload, workflow_command_id)
    SELECT :accepted_event_id, run.id, 1, 'StartAccepted', :accepted_payload::jsonb,
           :command_id
      FROM run
    UNION ALL
    SELECT :started_event_id, run.id, 2, 'WorkflowStarted',
           :started_payload::jsonb || jsonb_build_object(
               'execution_deadline_at',
               to_char(run.execution_deadline_at AT TIME ZONE 'UTC',
                       'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'run_deadline_at',
               to_char(run.run_deadline_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
           :command_id
      FROM run
    RETURNING id, sequence, event_type, payload, workflow_task_id, workflow_command_id,
              recorded_at
), task AS (
    INSERT INTO workflow_tasks (id, namespace, task_queue, kind, run_id, workflow_id,
                                workflow_type, compatibility, available_at, state, lease_owner,
                                poll_request_id, leased_at, lease_expires_at, attempt)
    SELECT :task_id, :namespace, :task_queue, 'workflow', run.id, :workflow_id, :workflow_type,
           run.compatibility, now(), CASE WHEN lease.owner IS NULL THEN 'ready' ELSE 'leased' END,
           lease.owner, CASE WHEN lease.owner IS NOT NULL THEN :poll_request_id::text END,
           CASE WHEN lease.owner IS NOT NULL THEN now() END,
           CASE WHEN lease.owner IS NOT NULL
                THEN now() + make_interval(secs => :lease_s::integer) END,
           CASE WHEN lease.owner IS NULL THEN 0 ELSE 1 END
      FROM run LEFT JOIN lease ON true
    RETURNING attempt, lease_owner, lease_expires_at
)
SELECT run.started_at, task.attempt, task.lease_owner, task.lease_expires_at, events.*
  FROM run CROSS JOIN task LEFT JOIN events ON task.lease_owner IS NOT NULL
 ORDER BY events.sequence;

-- name: lock_instance_for_continue
-- Lock the instance of a run that continues as new (after the run lock); its run count.
SELECT run_count, execution_timeout_seconds FROM workflow_instances
 WHERE workflow_id = :workflow_id
   FOR UPDATE;

-- name: insert_continued_run
-- The next run of a continued instance (becomes current): memo, search attributes and run
-- timeout carry over; the workflow type too unless a new one is given.
WITH prev AS (
    SELECT * FROM workflow_runs WHERE id = :previous_run_id
), instance AS (
    UPDATE workflow_instances
       SET current_run_id = :run_id, run_count = :run_number, updated_at = now()
     WHERE workflow_id = (SELECT workflow_id FROM prev)
    RETURNING execution_deadline_at
)
INSERT INTO workflow_runs (id, workflow_id, namespace, run_number, workflow_type, business_key,
                           task_queue, compatibility, payload_codec, arguments, memo,
                           search_attributes, run_timeout_seconds, execution_deadline_at,
                           run_deadline_at, continued_from_run_id, last_progress_at)
SELECT :run_id, prev.workflow_id, prev.namespace, :run_number,
       COALESCE(:workflow_type::text, prev.workflow_type), prev.business_key, :task_queue,
       prev.compatibility, 'avro', :arguments, prev.memo, prev.search_attributes,
       prev.run_timeout_seconds, instance.execution_deadline_at,
       now() + make_interval(secs => prev.run_timeout_seconds), prev.id, now()
  FROM prev, instance
RETURNING workflow_type, business_key, memo, search_attributes, run_timeout_seconds,
          execution_deadline_at, run_deadline_at, compatibility;
