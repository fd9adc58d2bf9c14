-- name: find_update_instance
-- The instance an update targets, in its namespace, with its current run.
SELECT current_run_id FROM workflow_instances WHERE workflow_id = $1 AND namespace = $2;

-- name: find_retained_update
-- The update already recorded for a request_id of this instance, if any.
SELECT c.id AS command_id, c.requested_run_id, c.payload, u.id AS update_id, u.update_name
  FROM workflow_commands c
  JOIN workflow_updates u ON u.command_id = c.id
 WHERE c.workflow_id = $1 AND c.command_type = 'update' AND c.request_id = $2;

-- name: insert_update_command
-- Record an accepted update command (its outcome is filled in when the update closes).
INSERT INTO workflow_commands (id, namespace, workflow_id, run_id, requested_run_id,
                               resolved_run_id, command_type, target_scope, context, status,
                               workflow_type, payload_codec, payload, command_sequence,
                               request_id, accepted_at)
VALUES ($1, $2, $3, $4, $5, $4, 'update', $6, $7::jsonb, 'accepted', $8, 'avro', $9, $10, $11,
        now());

-- name: insert_workflow_update
-- The update row of an accepted update command.
INSERT INTO workflow_updates (id, command_id, workflow_id, run_id, update_name, status,
                              payload_codec, arguments)
VALUES ($1, $2, $3, $4, $5, 'accepted', 'avro', $6);

-- name: insert_update_task
-- Create a ready update task: a workflow task that carries its workflow_update_id.
INSERT INTO workflow_tasks (id, namespace, task_queue, kind, run_id, workflow_id, workflow_type,
                            compatibility, workflow_update_id)
VALUES ($1, $2, $3, 'workflow', $4, $5, $6, $7, $8);

-- name: read_update
-- An update with its command, as the update route answers it.
SELECT u.id AS update_id, u.update_name, u.status, u.outcome, u.run_id, u.result,
       u.workflow_sequence, u.failure_id, u.failure_message, u.accepted_at, u.applied_at,
       u.rejected_at, u.closed_at, c.id AS command_id, c.command_sequence, c.target_scope,
       c.requested_run_id, c.workflow_type, c.request_id
  FROM workflow_updates u
  JOIN workflow_commands c ON c.id = u.command_id
 WHERE u.id = $1;

-- name: lock_update
-- Lock an update for its complete_update / fail_update command.
SELECT id, run_id, update_name, status, arguments
  FROM workflow_updates
 WHERE id = $1
   FOR UPDATE;

-- name: run_open_wait_sequence
-- The sequence of the run's open condition wait, if any (UpdateApplied/UpdateCompleted carry it).
SELECT open_wait_sequence FROM workflow_runs WHERE id = $1;

-- name: close_update
-- Close an update (completed or failed) and record the outcome on its command.
WITH u AS (
    UPDATE workflow_updates
       SET status = $2, outcome = $3, result = $4, workflow_sequence = $5, failure_id = $6,
           failure_message = $7, failure = $8::jsonb,
           applied_at = CASE WHEN $2::text = 'completed' THEN now() END, closed_at = now()
     WHERE id = $1
    RETURNING command_id
)
UPDATE workflow_commands c
   SET outcome = $3, applied_at = COALESCE(c.applied_at, now())
  FROM u
 WHERE c.id = u.command_id;

-- name: fail_open_updates_of_run
-- The run closed: every update still waiting for its handler fails, and is answered.
WITH closed AS (
    UPDATE workflow_updates
       SET status = 'failed', outcome = 'update_failed', failure_message = $2, closed_at = now()
     WHERE run_id = $1 AND status = 'accepted'
    RETURNING id, command_id
), commands AS (
    UPDATE workflow_commands c
       SET outcome = 'update_failed'
      FROM closed
     WHERE c.id = closed.command_id
)
SELECT id FROM closed;
