-- Redriving a failed run (POST /api/workflows/{wf}/runs/{run}/redrive,
-- docs/workflow-maintenance.md).

-- name: run_in_instance
-- Whether a run id names a run of this instance in this namespace.
SELECT EXISTS (SELECT 1 FROM workflow_runs
                WHERE id = :run_id AND workflow_id = :workflow_id AND namespace = :namespace);

-- name: get_redrive_source
-- What decides whether a locked, closed run may be redriven.
SELECT closed_reason, archived_at IS NOT NULL AS archived, last_step_sequence
  FROM workflow_runs
 WHERE id = :run_id;

-- name: lock_instance_for_redrive
-- Lock the instance of the run being redriven (after the run lock): its run count and
-- whether its execution deadline has already passed.
SELECT run_count, execution_timeout_seconds,
       COALESCE(execution_deadline_at <= now(), false) AS execution_deadline_passed
  FROM workflow_instances
 WHERE workflow_id = :workflow_id
   FOR UPDATE;

-- name: set_reused_steps
-- The successor's step counter starts after the steps copied from the failed run.
UPDATE workflow_runs SET last_step_sequence = :last_step_sequence, updated_at = now()
 WHERE id = :run_id;
