-- name: find_update_instance
-- The instance an update targets, in its namespace, with its current run.
SELECT current_run_id FROM workflow_instances
 WHERE workflow_id = :workflow_id AND namespace = :namespace;

-- name: find_retained_update
-- The update already recorded for a request_id of this instance, if any.
SELECT c.id AS command_id, c.requested_run_id, c.payload, u.id AS update_id, u.update_name
  FROM workflow_commands c
  JOIN workflow_updates u ON u.command_id = c.id
 WHERE c.workflow_id = :workflow_id AND c.command_type = 'update' AND c.request_id = :request_id;

-- name: insert_update_command
-- Record an accepted update command (its outcome is filled in when the update closes).
INSERT INTO workflow_commands (id, namespace, workflow_id, run_id, requested_run_id,
                               resolved_run_id, command_type, target_scope, context, status,
                               workflow_type, payload_codec, payload, command_sequence,
                               request_id, accepted_at)
VALUES (:id, :namespace, :workflow_id, :run_id, :requested_run_id, :run_id, 'update',
        :target_scope, :context::jsonb, 'accepted', :workflow_type, 'avro', :payload,
        :command_sequence, :request_id, now());

-- name: insert_workflow_update
-- The update row of an accepted update command.
INSERT INTO workflow_updates (id, command_id, workflow_id, run_id, update_name, status,
                              payload_codec, arguments)
VALUES (:id, :command_id, :workflow_id, :run_id, :update_name, 'accepted', 'avro', :arguments);

-- name: insert_update_task
-- Create a ready update task: a workflow task that carries its workflow_update_id.
INSERT INTO workflow_tasks (id, namespace, task_queue, kind, run_id, workflow_id, workflow_type,
                            compatibility, workflow_update_id)
VALUES (:id, :namespace, :task_queue, 'workflow', :run_id, :workflow_id, :workflow_type,
        :compatibility, :update_id);

-- name: read_update
-- An update with its command, as the update route answers it.
SELECT u.id AS update_id, u.update_name, u.status, u.outcome, u.run_id, u.result,
       u.workflow_sequence, u.failure_id, u.failure_message, u.accepted_at, u.applied_at,
       u.rejected_at, u.closed_at, c.id AS command_id, c.command_sequence, c.target_scope,
       c.requested_run_id, c.workflow_type, c.request_id
  FROM workflow_updates u
  JOIN workflow_commands c ON c.id = u.command_id
 WHERE u.id = :id;

-- name: lock_update
-- Lock an update for its complete_update / fail_update command.
SELECT id, run_id, update_name, status, arguments
  FROM workflow_updates
 WHERE id = :id
   FOR UPDATE;

-- name: run_open_wait_sequence
-- The sequence of the run's open condition wait, if any (UpdateApplied/UpdateCompleted carry it).
SELECT open_wait_sequence FROM workflow_runs WHERE id = :run_id;

-- name: close_update
-- Close an update (completed or failed) and record the outcome on its command.
WITH u AS (
    UPDATE workflow_updates
       SET status = :status, outcome = :outcome, result = :result,
           workflow_sequence = :workflow_sequence, failure_id = :failure_id,
           failure_message = :failure_message, failure = :failure::jsonb,
           applied_at = CASE WHEN :status::text = 'completed' THEN now() END, closed_at = now()
     WHERE id = :id
    RETURNING command_id
)
UPDATE workflow_commands c
   SET outcome = :outcome, applied_at = COALESCE(c.applied_at, now())
  FROM u
 WHERE c.id = u.command_id;

-- name: fail_open_updates_of_run
-- The run closed: every update still waiting for its handler fails, and is answered.
WITH closed AS (
    UPDATE workflow_updates
       SET status = 'failed', outcome = 'update_failed', failure_message = :message,
           closed_at = now()
     WHERE run_id = :run_id AND status = 'accepted'
    RETURNING id, command_id
), commands AS (
    UPDATE workflow_commands c
       SET outcome = 'update_failed'
      FROM closed
     WHERE c.id = closed.command_id
)
SELECT id FROM closed;
