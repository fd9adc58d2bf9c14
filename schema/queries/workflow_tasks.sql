-- name: read_run_for_task
-- What a leased workflow task shows about its run.
SELECT r.id, r.workflow_id, r.workflow_type, r.task_queue, r.payload_codec, r.arguments, r.status,
       r.last_history_sequence
  FROM workflow_runs r
 WHERE r.id = $1;
