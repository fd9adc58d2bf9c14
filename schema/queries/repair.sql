-- name: expire_workflow_task_leases
-- Task repair: workflow tasks whose lease expired become ready again; the next lease
-- increments workflow_task_attempt, which fences the late completion of the lost one.
WITH expired AS (
    SELECT id FROM workflow_tasks
     WHERE state = 'leased' AND lease_expires_at <= now() AND kind = 'workflow'
     ORDER BY lease_expires_at
     LIMIT $1
       FOR UPDATE SKIP LOCKED
)
UPDATE workflow_tasks t
   SET state = 'ready', lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL,
       poll_request_id = NULL, repair_count = t.repair_count + 1, available_at = now(),
       updated_at = now()
  FROM expired
 WHERE t.id = expired.id
RETURNING t.namespace, t.task_queue;

-- name: claim_expired_activity_lease
-- Task repair: the activity task whose lease expired first (locked; other nodes skip it).
SELECT id AS task_id, run_id, state, activity_attempt_id, activity_execution_id
  FROM workflow_tasks
 WHERE state = 'leased' AND lease_expires_at <= now() AND kind = 'activity'
 ORDER BY lease_expires_at
 LIMIT 1
   FOR UPDATE SKIP LOCKED;

-- name: count_task_repair
-- A repaired task keeps count of its repairs (diagnostics).
UPDATE workflow_tasks SET repair_count = repair_count + 1, updated_at = now() WHERE id = $1;
