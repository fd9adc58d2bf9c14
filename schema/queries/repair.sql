-- name: expire_workflow_task_leases
-- Task repair: workflow tasks whose lease expired become ready again; the next lease
-- increments workflow_task_attempt, which fences the late completion of the lost one.
WITH expired AS (
    SELECT id FROM workflow_tasks
     WHERE state = 'leased' AND lease_expires_at <= now() AND kind = 'workflow'
     ORDER BY lease_expires_at
     LIMIT :limit
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
SELECT id AS task_id, run_id, state, activity_attempt_id, activity_execution_id, lease_owner
  FROM workflow_tasks
 WHERE state = 'leased' AND lease_expires_at <= now() AND kind = 'activity'
 ORDER BY lease_expires_at
 LIMIT 1
   FOR UPDATE SKIP LOCKED;

-- name: count_task_repair
-- A repaired task keeps count of its repairs (diagnostics).
UPDATE workflow_tasks SET repair_count = repair_count + 1, updated_at = now() WHERE id = :id;

-- name: release_lost_worker_workflow_tasks
-- Task repair: workflow tasks leased to a lost worker become ready again at once (at most
-- :limit of them). A worker is lost when it registered (so it was told a heartbeat
-- cadence) and has not heartbeated for the stale window (:stale_after_s), and the lease
-- itself was not touched (claimed or heartbeated: both move updated_at) for as long; the
-- same condition as claim_lost_worker_activity_lease. Only the task is locked (SKIP LOCKED,
-- as the other repairs); the registration is only read, so this never waits on a
-- deregistration, which locks the registration before the tasks.
WITH lost AS (
    SELECT t.id FROM workflow_tasks t
      JOIN worker_registrations w ON w.namespace = t.namespace AND w.worker_id = t.lease_owner
     WHERE t.state = 'leased' AND t.kind = 'workflow'
       AND t.updated_at <= now() - make_interval(secs => :stale_after_s)
       AND w.heartbeat_interval_seconds IS NOT NULL
       AND w.last_heartbeat_at <= now() - make_interval(secs => :stale_after_s)
     ORDER BY t.lease_expires_at
     LIMIT :limit
       FOR UPDATE OF t SKIP LOCKED
)
UPDATE workflow_tasks t
   SET state = 'ready', lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL,
       poll_request_id = NULL, repair_count = t.repair_count + 1, available_at = now(),
       updated_at = now()
  FROM lost
 WHERE t.id = lost.id
RETURNING t.namespace, t.task_queue;

-- name: claim_lost_worker_activity_lease
-- Task repair: the activity task leased to a lost worker (release_lost_worker_workflow_tasks
-- says when a worker is lost; :stale_after_s is the stale window) whose lease ends first.
-- Locked, other nodes skip it; the registration is only read.
SELECT t.id AS task_id, t.run_id, t.state, t.activity_attempt_id, t.activity_execution_id,
       t.lease_owner
  FROM workflow_tasks t
  JOIN worker_registrations w ON w.namespace = t.namespace AND w.worker_id = t.lease_owner
 WHERE t.state = 'leased' AND t.kind = 'activity'
   AND t.updated_at <= now() - make_interval(secs => :stale_after_s)
   AND w.heartbeat_interval_seconds IS NOT NULL
   AND w.last_heartbeat_at <= now() - make_interval(secs => :stale_after_s)
 ORDER BY t.lease_expires_at
 LIMIT 1
   FOR UPDATE OF t SKIP LOCKED;

-- name: list_worker_activity_leases
-- Deregistration: the activity tasks leased to this worker now (not locked). Leases it
-- takes afterwards (a poll racing the deregistration) go when it is stale or they expire.
SELECT id FROM workflow_tasks
 WHERE namespace = :namespace AND lease_owner = :worker_id AND state = 'leased'
   AND kind = 'activity'
 ORDER BY lease_expires_at, id;

-- name: claim_worker_activity_lease
-- Deregistration: lock one activity task if it is still leased to this worker.
-- The task is the first lock of its transaction, as in the other repairs; a call of the
-- worker in flight on it is waited for (then the task has usually moved on: no row).
SELECT id AS task_id, run_id, state, activity_attempt_id, activity_execution_id, lease_owner
  FROM workflow_tasks
 WHERE id = :task_id AND namespace = :namespace AND lease_owner = :worker_id
   AND state = 'leased' AND kind = 'activity'
   FOR UPDATE;

-- name: expire_run_workflow_task_leases
-- Repair of one run (POST .../repair): its workflow task whose lease expired becomes
-- ready again, as expire_workflow_task_leases does for every run. The caller holds the
-- run locked; the task is skipped when someone else holds it (never waits).
WITH expired AS (
    SELECT id FROM workflow_tasks
     WHERE run_id = :run_id AND state = 'leased' AND lease_expires_at <= now()
       AND kind = 'workflow'
       FOR UPDATE SKIP LOCKED
)
UPDATE workflow_tasks t
   SET state = 'ready', lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL,
       poll_request_id = NULL, repair_count = t.repair_count + 1, available_at = now(),
       updated_at = now()
  FROM expired
 WHERE t.id = expired.id
RETURNING t.namespace, t.task_queue;

-- name: claim_expired_run_activity_lease
-- Repair of one run: its activity task whose lease expired first (locked, skipped when
-- held elsewhere), as claim_expired_activity_lease does for every run.
SELECT id AS task_id, run_id, state, activity_attempt_id, activity_execution_id, lease_owner
  FROM workflow_tasks
 WHERE run_id = :run_id AND state = 'leased' AND lease_expires_at <= now()
   AND kind = 'activity'
 ORDER BY lease_expires_at
 LIMIT 1
   FOR UPDATE SKIP LOCKED;

-- name: missing_workflow_task_reason
-- Why an open run needs a workflow task it does not have (ready or leased), or NULL when it
-- has one, is closed, or is legitimately waiting (engine/repair.py, repair_run):
-- 'not_started' (no task ever ran), 'wake_pending' (a wake nobody honoured), 'unseen_signal'
-- (a signal or update accepted after the last completed workflow task), 'unseen_history'
-- (nothing in flight: no activity, timer, child or update outstanding, and an event the
-- workflow has not seen was recorded after its last completed task by something other
-- than a task: an activity, timer or child result). A run that settled its last task and
-- waits for a signal has no task and needs none.
WITH r AS (
    SELECT id, status, wake_pending FROM workflow_runs WHERE id = :run_id
), last_task AS (
    SELECT COALESCE(max(completed_at), '-infinity'::timestamptz) AS at
      FROM workflow_tasks
     WHERE run_id = :run_id AND kind = 'workflow' AND state = 'completed'
), in_flight AS (
    SELECT EXISTS (SELECT 1 FROM activity_executions
                    WHERE run_id = :run_id AND status IN ('pending', 'running'))
        OR EXISTS (SELECT 1 FROM timers WHERE run_id = :run_id AND state = 'pending')
        OR EXISTS (SELECT 1 FROM child_workflow_calls
                    WHERE parent_run_id = :run_id AND status IN ('scheduled', 'started'))
        OR EXISTS (SELECT 1 FROM workflow_updates
                    WHERE run_id = :run_id AND status = 'accepted') AS busy
)
SELECT CASE
         WHEN r.status NOT IN ('pending', 'running', 'waiting') THEN NULL
         WHEN EXISTS (SELECT 1 FROM workflow_tasks t
                       WHERE t.run_id = r.id AND t.kind = 'workflow'
                         AND t.state IN ('ready', 'leased')) THEN NULL
         WHEN r.status = 'pending' THEN 'not_started'
         WHEN r.wake_pending THEN 'wake_pending'
         WHEN EXISTS (SELECT 1 FROM history_events e, last_task
                       WHERE e.run_id = r.id AND e.recorded_at > last_task.at
                         AND e.event_type IN ('SignalReceived', 'UpdateAccepted'))
              THEN 'unseen_signal'
         WHEN (SELECT busy FROM in_flight) THEN NULL
         WHEN EXISTS (SELECT 1 FROM history_events e, last_task
                       WHERE e.run_id = r.id AND e.recorded_at > last_task.at
                         AND e.workflow_task_id IS NULL AND e.workflow_command_id IS NULL)
              THEN 'unseen_history'
       END AS reason
  FROM r;

-- name: repair_candidates
-- GET /api/system/repair: the leases task repair would act on now, across namespaces:
-- expired ones, and those of lost workers (the condition of
-- release_lost_worker_workflow_tasks; :stale_after_s is the stale window), with the
-- oldest such task's creation time. Walks the leased tasks (workflow_tasks_lease_expiry_idx).
WITH c AS (
    SELECT t.created_at, t.lease_expires_at <= now() AS expired
      FROM workflow_tasks t
      LEFT JOIN worker_registrations w
             ON w.namespace = t.namespace AND w.worker_id = t.lease_owner
     WHERE t.state = 'leased'
       AND (t.lease_expires_at <= now()
            OR (t.updated_at <= now() - make_interval(secs => :stale_after_s)
                AND w.heartbeat_interval_seconds IS NOT NULL
                AND w.last_heartbeat_at <= now() - make_interval(secs => :stale_after_s)))
)
SELECT count(*) FILTER (WHERE expired) AS expired_lease_count,
       count(*) FILTER (WHERE NOT expired) AS lost_worker_lease_count,
       min(created_at) AS oldest_created_at,
       now() AS observed_at
  FROM c;
