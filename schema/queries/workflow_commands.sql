-- name: find_retained_command
-- The command already recorded for a request_id (per instance and command type), if any.
SELECT c.id, c.status, c.outcome, c.context, c.response
  FROM workflow_commands c
 WHERE c.workflow_id = :workflow_id AND c.command_type = :command_type
   AND c.request_id = :request_id;

-- name: allocate_command_slot
-- Next command number of a locked run, with its open condition wait (a signal's hint).
UPDATE workflow_runs
   SET last_command_sequence = last_command_sequence + 1, updated_at = now()
 WHERE id = :run_id
RETURNING last_command_sequence, open_wait_sequence;

-- name: insert_control_command
-- Record a signal/cancel/terminate command with its request_id and the receipt it answered.
INSERT INTO workflow_commands (id, namespace, workflow_id, run_id, requested_run_id,
                               resolved_run_id, command_type, target_scope, context, status,
                               outcome, rejection_reason, workflow_type, payload_codec, payload,
                               command_sequence, request_id, response, accepted_at, applied_at,
                               rejected_at)
VALUES (:id, :namespace, :workflow_id, :run_id, :requested_run_id, :run_id, :command_type,
        :target_scope, :context::jsonb, :status::text, :outcome, :rejection_reason,
        :workflow_type, CASE WHEN :payload::text IS NOT NULL THEN 'avro' END, :payload::text,
        :command_sequence, :request_id, :response::jsonb,
        CASE WHEN :status::text = 'accepted' THEN now() END,
        CASE WHEN :status::text = 'accepted' THEN now() END,
        CASE WHEN :status::text = 'rejected' THEN now() END);

-- name: insert_workflow_signal
-- The signal row of an accepted signal command (history export "signals").
INSERT INTO workflow_signals (id, command_id, workflow_id, run_id, signal_name, status, outcome,
                              payload_codec, arguments, workflow_sequence)
VALUES (:id, :command_id, :workflow_id, :run_id, :signal_name, 'received', 'signal_received',
        'avro', :arguments, :workflow_sequence);
