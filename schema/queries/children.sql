-- name: count_open_child_calls
-- Open children of a parent run (the pending-children limit).
SELECT count(*) FROM child_workflow_calls
 WHERE parent_run_id = $1 AND status IN ('scheduled', 'started');

-- name: insert_child_call
-- Link a parent step to the child instance and run it started.
INSERT INTO child_workflow_calls (id, parent_run_id, parent_workflow_id, sequence,
                                  child_workflow_id, child_run_id, child_workflow_type,
                                  task_queue, parent_close_policy, cancellation_policy,
                                  timeout_policy, parallel, status, arguments, started_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb, 'started', $13, now());

-- name: lock_open_parent_call
-- The open parent link of a child run, locked (none: not a child, or already settled).
SELECT id, parent_run_id, parent_workflow_id, sequence, child_workflow_id, child_run_id,
       child_workflow_type, parallel
  FROM child_workflow_calls
 WHERE child_workflow_id = $1 AND child_run_id = $2 AND status IN ('scheduled', 'started')
   FOR UPDATE;

-- name: lock_open_child_calls
-- The open children of a closing parent run, locked, in step order.
SELECT id, sequence, child_workflow_id, child_run_id, child_workflow_type, parent_close_policy
  FROM child_workflow_calls
 WHERE parent_run_id = $1 AND status IN ('scheduled', 'started')
 ORDER BY sequence
   FOR UPDATE;

-- name: close_child_call
-- A child call reached its end (child closed, or the parent-close policy applied).
UPDATE child_workflow_calls SET status = $2, closed_reason = $3, closed_at = now() WHERE id = $1;

-- name: follow_child_run
-- The child continued as new: the link follows its new run.
UPDATE child_workflow_calls SET child_run_id = $2 WHERE id = $1;

-- name: last_closing_event
-- The newest closing event of a run (to tell a parent why its child closed).
SELECT event_type, payload FROM history_events
 WHERE run_id = $1
   AND event_type IN ('WorkflowFailed', 'WorkflowTimedOut', 'WorkflowCancelled', 'WorkflowTerminated')
 ORDER BY sequence DESC
 LIMIT 1;
