-- name: insert_instance_with_first_run
-- Create an instance and its pending first run (codec avro, command 1 = the start); no row: id taken.
WITH instance AS (
    INSERT INTO workflow_instances (workflow_id, namespace, workflow_type, business_key,
                                    execution_timeout_seconds, execution_deadline_at,
                                    current_run_id, run_count)
    VALUES ($2, $3, $4, $5, $10::integer, now() + make_interval(secs => $10::integer), $1, 1)
    -- No conflict target: a racing start may collide on (workflow_id, namespace) first,
    -- and that too means the id is taken (with a target it raised a unique violation).
    ON CONFLICT DO NOTHING
    RETURNING workflow_id, namespace, execution_deadline_at
)
INSERT INTO workflow_runs (id, workflow_id, namespace, run_number, workflow_type, business_key,
                           task_queue, payload_codec, arguments, memo, search_attributes,
                           run_timeout_seconds, execution_deadline_at, run_deadline_at,
                           last_command_sequence, last_progress_at)
SELECT $1, instance.workflow_id, instance.namespace, 1, $4, $5, $6, 'avro', $7, $8::jsonb,
       $9::jsonb, $11::integer, instance.execution_deadline_at,
       now() + make_interval(secs => $11::integer), 1, now()
  FROM instance
RETURNING started_at, execution_deadline_at, run_deadline_at;

-- name: get_instance_for_start
-- The instance owning a workflow_id (any namespace) with its current run's business key.
SELECT i.namespace, i.workflow_type, i.current_run_id, r.business_key
  FROM workflow_instances i
  LEFT JOIN workflow_runs r ON r.id = i.current_run_id
 WHERE i.workflow_id = $1;

-- name: get_current_run_id
-- The instance's current run (re-checked after locking that run).
SELECT current_run_id FROM workflow_instances WHERE workflow_id = $1;

-- name: allocate_command_sequence
-- Next control-plane command number of a run (caller holds the run lock).
UPDATE workflow_runs
   SET last_command_sequence = last_command_sequence + 1, updated_at = now()
 WHERE id = $1
RETURNING last_command_sequence;

-- name: insert_workflow_command
-- Record a control-plane command and its outcome (accepted or rejected).
INSERT INTO workflow_commands (id, namespace, workflow_id, run_id, resolved_run_id, command_type,
                               target_scope, context, status, outcome, rejection_reason,
                               workflow_type, payload_codec, payload, command_sequence,
                               accepted_at, applied_at, rejected_at)
VALUES ($1, $2, $3, $4, $4, $5, $6, $7::jsonb, $8::text, $9, $10, $11, $12, $13, $14,
        CASE WHEN $8::text = 'accepted' THEN now() END,
        CASE WHEN $8::text = 'accepted' THEN now() END,
        CASE WHEN $8::text = 'rejected' THEN now() END);

-- name: get_workflow_run_view
-- Describe view of one run of an instance in a namespace: the current run when $3 is NULL.
SELECT r.id AS run_id, r.workflow_id, r.namespace, r.workflow_type, r.business_key, r.status,
       r.status_bucket, r.closed_reason, r.task_queue, r.run_number, i.run_count,
       COALESCE(i.current_run_id = r.id, false) AS is_current_run, r.compatibility,
       r.payload_codec, i.execution_timeout_seconds, r.run_timeout_seconds,
       r.execution_deadline_at, r.run_deadline_at, r.arguments, r.output, r.memo,
       r.search_attributes, r.wait_kind, r.wait_reason, r.started_at, r.closed_at,
       r.last_progress_at, r.archived_at
  FROM workflow_instances i
  JOIN workflow_runs r ON r.id = COALESCE($3::text, i.current_run_id)
                      AND r.workflow_id = i.workflow_id
 WHERE i.workflow_id = $1 AND i.namespace = $2;

-- name: list_instance_runs
-- Every run of an instance in a namespace, oldest first (empty: no such instance here).
SELECT r.id AS run_id, r.workflow_id, r.namespace, r.workflow_type, r.business_key, r.status,
       r.status_bucket, r.closed_reason, r.task_queue, r.run_number, i.run_count,
       COALESCE(i.current_run_id = r.id, false) AS is_current_run, r.compatibility,
       r.payload_codec, r.started_at, r.closed_at
  FROM workflow_instances i
  JOIN workflow_runs r ON r.workflow_id = i.workflow_id AND r.namespace = i.namespace
 WHERE i.workflow_id = $1 AND i.namespace = $2
 ORDER BY r.run_number;

-- name: workflow_run_exists
-- Whether a run belongs to this instance and namespace (history reads).
SELECT EXISTS (SELECT 1 FROM workflow_runs WHERE workflow_id = $1 AND namespace = $2 AND id = $3);

-- name: list_workflow_runs_page
-- Visibility list: runs of a namespace newest first; NULL filters are off; offset paging.
SELECT r.id AS run_id, r.workflow_id, r.namespace, r.workflow_type, r.business_key, r.status,
       r.status_bucket, r.task_queue, r.payload_codec, r.memo, r.search_attributes,
       r.started_at, r.closed_at
  FROM workflow_runs r
 WHERE r.namespace = $1
   AND ($2::text IS NULL OR r.status_bucket = $2::text)
   AND ($3::text IS NULL OR r.status = $3::text)
   AND ($4::text IS NULL OR r.workflow_type = $4::text)
   AND ($5::text IS NULL OR strpos(r.workflow_id, $5::text) > 0
                         OR strpos(COALESCE(r.business_key, ''), $5::text) > 0)
 ORDER BY r.started_at DESC, r.id DESC
OFFSET $6 LIMIT $7;

-- name: start_new_workflow
-- A start of a new workflow id as one atomic statement (one round trip, no explicit
-- transaction): instance, first run, start command, StartAccepted + WorkflowStarted
-- and the first workflow task. No row: the id is taken (the caller then runs the
-- transactional start, which answers for the existing instance).
-- $14/$15 are the two events' payloads; WorkflowStarted gets the run's deadlines here.
-- Sync match: with a lease owner ($19, its poll request $20, lease seconds $21) the task is
-- written leased to that worker (attempt 1) and the run running, as a claim would leave
-- them. Then one row per event (the handed-over task's history), else one row; none
-- when the id is taken.
WITH instance AS (
    INSERT INTO workflow_instances (workflow_id, namespace, workflow_type, business_key,
                                    execution_timeout_seconds, execution_deadline_at,
                                    current_run_id, run_count)
    VALUES ($2, $3, $4, $5, $10::integer, now() + make_interval(secs => $10::integer), $1, 1)
    -- No conflict target: a racing start may collide on (workflow_id, namespace) first,
    -- and that too means the id is taken (with a target it raised a unique violation).
    ON CONFLICT DO NOTHING
    RETURNING workflow_id, namespace, execution_deadline_at
), run AS (
    INSERT INTO workflow_runs (id, workflow_id, namespace, run_number, workflow_type,
                               business_key, task_queue, payload_codec, arguments, memo,
                               search_attributes, run_timeout_seconds, execution_deadline_at,
                               run_deadline_at, last_command_sequence, last_history_sequence,
                               last_progress_at, status)
    SELECT $1, instance.workflow_id, instance.namespace, 1, $4, $5, $6, 'avro', $7, $8::jsonb,
           $9::jsonb, $11::integer, instance.execution_deadline_at,
           now() + make_interval(secs => $11::integer), 1, 2, now(),
           CASE WHEN $19::text IS NULL THEN 'pending' ELSE 'running' END
      FROM instance
    RETURNING id, started_at, execution_deadline_at, run_deadline_at
), command AS (
    INSERT INTO workflow_commands (id, namespace, workflow_id, run_id, resolved_run_id,
                                   command_type, target_scope, context, status, outcome,
                                   workflow_type, payload_codec, payload, command_sequence,
                                   accepted_at, applied_at)
    SELECT $12, $3, $2, run.id, run.id, 'start', 'instance', $13::jsonb, 'accepted',
           'started_new', $4, 'avro', $7, 1, now(), now()
      FROM run
), events AS (
    INSERT INTO history_events (id, run_id, sequence, event_type, payload, workflow_command_id)
    SELECT $16, run.id, 1, 'StartAccepted', $14::jsonb, $12 FROM run
    UNION ALL
    SELECT $17, run.id, 2, 'WorkflowStarted',
           $15::jsonb || jsonb_build_object(
               'execution_deadline_at',
               to_char(run.execution_deadline_at AT TIME ZONE 'UTC',
                       'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'run_deadline_at',
               to_char(run.run_deadline_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
           $12
      FROM run
    RETURNING id, sequence, event_type, payload, workflow_task_id, workflow_command_id,
              recorded_at
), task AS (
    INSERT INTO workflow_tasks (id, namespace, task_queue, kind, run_id, workflow_id,
                                workflow_type, available_at, state, lease_owner,
                                poll_request_id, leased_at, lease_expires_at, attempt)
    SELECT $18, $3, $6, 'workflow', run.id, $2, $4, now(),
           CASE WHEN $19::text IS NULL THEN 'ready' ELSE 'leased' END, $19::text, $20::text,
           CASE WHEN $19::text IS NOT NULL THEN now() END,
           CASE WHEN $19::text IS NOT NULL THEN now() + make_interval(secs => $21::integer) END,
           CASE WHEN $19::text IS NULL THEN 0 ELSE 1 END
      FROM run
    RETURNING attempt, lease_owner, lease_expires_at
)
SELECT run.started_at, task.attempt, task.lease_owner, task.lease_expires_at, events.*
  FROM run CROSS JOIN task LEFT JOIN events ON $19::text IS NOT NULL
 ORDER BY events.sequence;
