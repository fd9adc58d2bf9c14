-- Reads behind GET .../history/export (docs/history-export.md). Every section is read
-- in keyset pages (the row's id, then a limit) so an export never holds a whole run in
-- memory. Section rows come back as (key, item): item is the bundle entry as jsonb, its
-- timestamps already in the wire's microsecond-Z form.

-- name: export_run_head
-- The run being exported with its instance's pointers; no row when the run is not in this
-- instance and namespace.
SELECT r.id, r.workflow_id, r.namespace, r.run_number, r.workflow_type, r.business_key,
       r.task_queue, r.compatibility, r.status, r.status_bucket, r.closed_reason,
       r.payload_codec, r.arguments, r.output, r.memo, r.search_attributes,
       r.visibility_labels, r.last_history_sequence, r.history_size_bytes,
       r.run_timeout_seconds, r.execution_deadline_at, r.run_deadline_at,
       r.wait_kind, r.wait_reason, r.wait_started_at, r.wait_deadline_at,
       r.started_at, r.closed_at, r.last_progress_at,
       r.archived_at, r.archive_command_id, r.archive_reason,
       r.continued_from_run_id,
       (SELECT n.id FROM workflow_runs n WHERE n.continued_from_run_id = r.id
         ORDER BY n.run_number LIMIT 1) AS continued_to_run_id,
       (SELECT p.closed_reason FROM workflow_runs p WHERE p.id = r.continued_from_run_id)
           AS continued_from_closed_reason,
       i.current_run_id, i.run_count
  FROM workflow_runs r
  JOIN workflow_instances i ON i.workflow_id = r.workflow_id
 WHERE r.id = :run_id AND r.workflow_id = :workflow_id AND r.namespace = :namespace;

-- name: export_events_page
-- Events of a run after a sequence and up to the sequence the export started at, oldest first.
SELECT id, sequence, event_type, payload, workflow_task_id, workflow_command_id, recorded_at
  FROM history_events
 WHERE run_id = :run_id AND sequence > :after_sequence AND sequence <= :upto_sequence
 ORDER BY sequence
 LIMIT :limit;

-- name: export_commands_page
-- Control-plane commands that targeted the run, by id (ids are time-ordered).
SELECT c.id AS key, jsonb_build_object(
           'id', c.id, 'type', c.command_type, 'target_scope', c.target_scope,
           'source', c.source, 'context', c.context, 'status', c.status,
           'outcome', c.outcome, 'rejection_reason', c.rejection_reason,
           'workflow_type', c.workflow_type, 'payload_codec', c.payload_codec,
           'payload', c.payload, 'command_sequence', c.command_sequence,
           'request_id', c.request_id, 'requested_run_id', c.requested_run_id,
           'resolved_run_id', c.resolved_run_id,
           'created_at', to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'accepted_at', to_char(c.accepted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'applied_at', to_char(c.applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'rejected_at', to_char(c.rejected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       ) AS item
  FROM workflow_commands c
 WHERE c.run_id = :run_id AND c.id > :after_key
 ORDER BY c.id
 LIMIT :limit;

-- name: export_signals_page
-- Signals received by the run, by id.
SELECT s.id AS key, jsonb_build_object(
           'id', s.id, 'command_id', s.command_id, 'signal_name', s.signal_name,
           'status', s.status, 'outcome', s.outcome, 'payload_codec', s.payload_codec,
           'arguments', s.arguments, 'workflow_sequence', s.workflow_sequence,
           'validation_errors', s.validation_errors, 'rejection_reason', s.rejection_reason,
           'received_at', to_char(s.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'applied_at', to_char(s.applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'rejected_at', to_char(s.rejected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'closed_at', to_char(s.closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       ) AS item
  FROM workflow_signals s
 WHERE s.run_id = :run_id AND s.id > :after_key
 ORDER BY s.id
 LIMIT :limit;

-- name: export_updates_page
-- Updates addressed to the run, by id.
SELECT u.id AS key, jsonb_build_object(
           'id', u.id, 'command_id', u.command_id, 'update_name', u.update_name,
           'status', u.status, 'outcome', u.outcome, 'payload_codec', u.payload_codec,
           'arguments', u.arguments, 'result', u.result,
           'workflow_sequence', u.workflow_sequence, 'validation_errors', u.validation_errors,
           'rejection_reason', u.rejection_reason, 'failure_id', u.failure_id,
           'failure_message', u.failure_message, 'failure', u.failure,
           'accepted_at', to_char(u.accepted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'applied_at', to_char(u.applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'rejected_at', to_char(u.rejected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'closed_at', to_char(u.closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       ) AS item
  FROM workflow_updates u
 WHERE u.run_id = :run_id AND u.id > :after_key
 ORDER BY u.id
 LIMIT :limit;

-- name: export_tasks_page
-- Workflow and activity task rows of the run (dispatch state, not their receipts), by id.
SELECT t.id AS key, jsonb_build_object(
           'id', t.id, 'task_type', t.kind, 'status', t.state, 'queue', t.task_queue,
           'workflow_update_id', t.workflow_update_id,
           'activity_execution_id', t.activity_execution_id,
           'activity_attempt_id', t.activity_attempt_id, 'compatibility', t.compatibility,
           'attempt', t.attempt, 'lease_owner', t.lease_owner,
           'failure_count', t.failure_count, 'repair_count', t.repair_count,
           'last_error', t.failure,
           'available_at', to_char(t.available_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'leased_at', to_char(t.leased_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'lease_expires_at', to_char(t.lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'completed_at', to_char(t.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'created_at', to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'updated_at', to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       ) AS item
  FROM workflow_tasks t
 WHERE t.run_id = :run_id AND t.id > :after_key
 ORDER BY t.id
 LIMIT :limit;

-- name: export_activities_page
-- Activity executions of the run with their attempts (oldest first), by id.
SELECT a.id AS key, jsonb_build_object(
           'id', a.id, 'sequence', a.sequence, 'activity_type', a.activity_type,
           'queue', a.task_queue, 'status', a.status, 'payload_codec', a.payload_codec,
           'arguments', a.arguments, 'result', a.result, 'failure', a.failure,
           'retry_policy', a.retry_policy, 'options', a.options, 'parallel', a.parallel,
           'attempt_count', a.attempt_count, 'current_attempt_id', a.current_attempt_id,
           'cancel_requested', a.cancel_requested, 'heartbeat_details', a.heartbeat_details,
           'scheduled_at', to_char(a.scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'started_at', to_char(a.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'last_heartbeat_at', to_char(a.last_heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'closed_at', to_char(a.closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'attempts', COALESCE((
               SELECT jsonb_agg(jsonb_build_object(
                          'id', t.id, 'attempt_number', t.attempt_number, 'status', t.status,
                          'task_id', t.task_id, 'lease_owner', t.lease_owner,
                          'failure', t.failure,
                          'started_at', to_char(t.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                          'last_heartbeat_at', to_char(t.last_heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                          'closed_at', to_char(t.closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
                      ORDER BY t.attempt_number)
                 FROM activity_attempts t WHERE t.activity_execution_id = a.id), '[]'::jsonb)
       ) AS item
  FROM activity_executions a
 WHERE a.run_id = :run_id AND a.id > :after_key
 ORDER BY a.id
 LIMIT :limit;

-- name: export_timers_page
-- Durable timers of the run (start_timer and condition-wait timeouts), by id.
SELECT t.id AS key, jsonb_build_object(
           'id', t.id, 'sequence', t.sequence, 'timer_kind', t.timer_kind,
           'condition_wait_id', t.condition_wait_id, 'delay_seconds', t.delay_seconds,
           'status', t.state, 'parallel', t.parallel,
           'fire_at', to_char(t.fire_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'fired_at', to_char(t.fired_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'cancelled_at', to_char(t.cancelled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'created_at', to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       ) AS item
  FROM timers t
 WHERE t.run_id = :run_id AND t.id > :after_key
 ORDER BY t.id
 LIMIT :limit;

-- name: export_failures_page
-- Failures recorded for the run, by id.
SELECT f.id AS key, jsonb_build_object(
           'id', f.id, 'source_kind', f.source_kind, 'source_id', f.source_id,
           'propagation_kind', f.propagation_kind, 'failure_category', f.failure_category,
           'non_retryable', f.non_retryable, 'handled', f.handled,
           'exception_type', f.exception_type, 'exception_class', f.exception_class,
           'message', f.message, 'file', f.file, 'line', f.line,
           'trace_preview', f.trace_preview, 'details', f.details,
           'created_at', to_char(f.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       ) AS item
  FROM workflow_failures f
 WHERE f.run_id = :run_id AND f.id > :after_key
 ORDER BY f.id
 LIMIT :limit;

-- name: export_children_page
-- Child workflows the run started (one per start_child_workflow), by id.
SELECT c.id AS key, jsonb_build_object(
           'link_type', 'child_workflow', 'id', c.id, 'sequence', c.sequence,
           'child_workflow_instance_id', c.child_workflow_id,
           'child_workflow_run_id', c.child_run_id, 'child_workflow_type', c.child_workflow_type,
           'queue', c.task_queue, 'parent_close_policy', c.parent_close_policy,
           'status', c.status, 'closed_reason', c.closed_reason,
           'scheduled_at', to_char(c.scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'started_at', to_char(c.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'closed_at', to_char(c.closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       ) AS item
  FROM child_workflow_calls c
 WHERE c.parent_run_id = :run_id AND c.id > :after_key
 ORDER BY c.id
 LIMIT :limit;

-- name: export_parent_calls
-- The child-workflow calls that started this run's instance (its parents), oldest first.
SELECT c.id AS key, jsonb_build_object(
           'link_type', 'child_workflow', 'id', c.id, 'sequence', c.sequence,
           'parent_workflow_instance_id', c.parent_workflow_id,
           'parent_workflow_run_id', c.parent_run_id,
           'status', c.status, 'closed_reason', c.closed_reason,
           'scheduled_at', to_char(c.scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       ) AS item
  FROM child_workflow_calls c
 WHERE c.child_workflow_id = :workflow_id
 ORDER BY c.scheduled_at, c.id
 LIMIT :limit;
