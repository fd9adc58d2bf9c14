-- name: count_open_child_calls
-- Open children of a parent run (the pending-children limit).
SELECT count(*) FROM child_workflow_calls
 WHERE parent_run_id = :parent_run_id AND status IN ('scheduled', 'started');

-- name: insert_child_call
-- Link a parent step to the child instance and run it started.
INSERT INTO child_workflow_calls (id, parent_run_id, parent_workflow_id, sequence,
                                  child_workflow_id, child_run_id, child_workflow_type,
                                  task_queue, parent_close_policy, cancellation_policy,
                                  timeout_policy, parallel, status, arguments, started_at)
VALUES (:id, :parent_run_id, :parent_workflow_id, :sequence, :child_workflow_id, :child_run_id,
        :child_workflow_type, :task_queue, :parent_close_policy, :cancellation_policy,
        :timeout_policy::jsonb, :parallel::jsonb, 'started', :arguments, now());

-- name: lock_open_parent_call
-- The open parent link of a child run, locked (none: not a child, or already settled).
SELECT id, parent_run_id, parent_workflow_id, sequence, child_workflow_id, child_run_id,
       child_workflow_type, parallel
  FROM child_workflow_calls
 WHERE child_workflow_id = :child_workflow_id AND child_run_id = :child_run_id
   AND status IN ('scheduled', 'started')
   FOR UPDATE;

-- name: lock_open_child_calls
-- The open children of a closing parent run, locked, in step order.
SELECT id, child_run_id, parent_close_policy
  FROM child_workflow_calls
 WHERE parent_run_id = :parent_run_id AND status IN ('scheduled', 'started')
 ORDER BY sequence
   FOR UPDATE;

-- name: close_child_call
-- A child call reached its end (child closed, or the parent-close policy applied).
UPDATE child_workflow_calls SET status = :status, closed_reason = :reason, closed_at = now()
 WHERE id = :id;

-- name: follow_child_run
-- The child continued as new: the link follows its new run.
UPDATE child_workflow_calls SET child_run_id = :child_run_id WHERE id = :id;
