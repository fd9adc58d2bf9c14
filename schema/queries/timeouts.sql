-- name: claim_due_activity
-- The activity task whose execution has the earliest passed deadline (locked; other nodes
-- skip it): in :namespace (null: any), among :execution_ids (null: any), passing over
-- :exclude_ids (executions this pass failed to handle).
SELECT t.id AS task_id, t.run_id, t.state, t.activity_attempt_id, t.activity_execution_id,
       t.lease_owner
  FROM activity_executions e
  JOIN workflow_tasks t ON t.activity_execution_id = e.id
 WHERE e.status IN ('pending', 'running') AND e.next_deadline_at <= now()
   AND (CAST(:namespace AS text) IS NULL OR e.namespace = :namespace)
   AND (CAST(:execution_ids AS text[]) IS NULL OR e.id = ANY(:execution_ids))
   AND e.id <> ALL(:exclude_ids)
 ORDER BY e.next_deadline_at
 LIMIT 1
   FOR UPDATE OF t SKIP LOCKED;

-- name: due_activity_executions
-- Activity-timeout diagnostics: the executions of :namespace past a deadline, earliest
-- first, up to :limit (not locked).
SELECT e.id
  FROM activity_executions e
 WHERE e.status IN ('pending', 'running') AND e.next_deadline_at <= now()
   AND e.namespace = :namespace
 ORDER BY e.next_deadline_at
 LIMIT :limit;

-- name: due_activity_deadlines
-- Which of a locked execution's deadlines have passed (the execution is locked by the caller).
SELECT schedule_to_start_deadline_at <= now() AS schedule_to_start,
       start_to_close_deadline_at <= now() AS start_to_close,
       schedule_to_close_deadline_at <= now() AS schedule_to_close,
       heartbeat_deadline_at <= now() AS heartbeat
  FROM activity_executions
 WHERE id = :execution_id;

-- name: clear_stale_activity_deadlines
-- Passed deadlines that no longer apply (their attempt was released) stop counting.
UPDATE activity_executions
   SET schedule_to_start_deadline_at = CASE WHEN schedule_to_start_deadline_at <= now() THEN NULL
                                            ELSE schedule_to_start_deadline_at END,
       start_to_close_deadline_at = CASE WHEN start_to_close_deadline_at <= now() THEN NULL
                                         ELSE start_to_close_deadline_at END,
       heartbeat_deadline_at = CASE WHEN heartbeat_deadline_at <= now() THEN NULL
                                    ELSE heartbeat_deadline_at END,
       updated_at = now()
 WHERE id = :execution_id;

-- name: claim_due_run
-- The open run whose execution or run deadline passed first (locked; other nodes skip it).
SELECT id, execution_deadline_at, run_deadline_at
  FROM workflow_runs
 WHERE status_bucket = 'running' AND deadline_at <= now()
 ORDER BY deadline_at
 LIMIT 1
   FOR UPDATE SKIP LOCKED;
