-- name: find_query_target
-- The instance's current run as a query sees it (no row: no such instance in this namespace).
SELECT i.current_run_id, r.workflow_type, r.task_queue, r.status
  FROM workflow_instances i
  LEFT JOIN workflow_runs r ON r.id = i.current_run_id
 WHERE i.workflow_id = :workflow_id AND i.namespace = :namespace;

-- name: live_query_worker_exists
-- Whether an active, non-PHP worker with a fresh heartbeat serves this queue and workflow type.
SELECT EXISTS (
    SELECT 1 FROM worker_registrations
     WHERE namespace = :namespace AND task_queue = :task_queue AND status = 'active'
       AND runtime <> 'php'
       AND last_heartbeat_at > now() - make_interval(secs => :stale_after_s)
       AND (cardinality(supported_workflow_types) = 0
            OR :workflow_type = ANY(supported_workflow_types))
);

-- name: lock_query_queue
-- Serialise query admissions of one task queue until commit, so the pending cap is exact.
SELECT pg_advisory_xact_lock(
    hashtextextended('dwtrio:query_tasks:' || :namespace || ':' || :task_queue, 0));

-- name: purge_expired_query_tasks
-- Drop query tasks whose caller is long gone (a node died while waiting); callers delete their own.
DELETE FROM query_tasks
 WHERE id IN (SELECT id FROM query_tasks
               WHERE expires_at <= now() - interval '30 seconds'
               LIMIT 100
                 FOR UPDATE SKIP LOCKED);

-- name: insert_query_task
-- Enqueue a pending query task unless the queue already holds :max_pending pending ones
-- (no row: full).
INSERT INTO query_tasks (id, namespace, task_queue, workflow_id, run_id, workflow_type, query_name,
                         query_arguments, expires_at)
SELECT :id, :namespace, :task_queue, :workflow_id, :run_id, :workflow_type, :query_name,
       :query_arguments::jsonb, now() + make_interval(secs => :timeout_s)
 WHERE (SELECT count(*) FROM query_tasks
         WHERE namespace = :namespace AND task_queue = :task_queue AND state = 'pending'
           AND expires_at > now()) < :max_pending
RETURNING id;

-- name: claim_query_task
-- Lease the oldest pending query task of a queue (optionally of the worker's types) until
-- its caller stops waiting.
WITH next AS (
    SELECT id FROM query_tasks
     WHERE namespace = :namespace AND task_queue = :task_queue AND state = 'pending'
       AND expires_at > now()
       AND (cardinality(:workflow_types::text[]) = 0
            OR workflow_type = ANY(:workflow_types::text[]))
     ORDER BY created_at, id
     LIMIT 1
       FOR UPDATE SKIP LOCKED
)
UPDATE query_tasks q
   SET state = 'leased', lease_owner = :worker_id, poll_request_id = :poll_request_id,
       leased_at = now(), lease_expires_at = q.expires_at, attempt = q.attempt + 1
  FROM next
 WHERE q.id = next.id
RETURNING q.id, q.attempt, q.lease_owner, q.lease_expires_at, q.workflow_id, q.run_id,
          q.workflow_type, q.query_name, q.query_arguments;

-- name: find_polled_query_task
-- The query task a poll with this poll_request_id already leased (poll retries).
SELECT id, attempt, lease_owner, lease_expires_at, workflow_id, run_id, workflow_type, query_name,
       query_arguments
  FROM query_tasks
 WHERE lease_owner = :worker_id AND poll_request_id = :poll_request_id AND state = 'leased'
   AND namespace = :namespace AND task_queue = :task_queue AND lease_expires_at > now();

-- name: release_query_task
-- Undo a query lease that could not be delivered (the poller went away).
UPDATE query_tasks
   SET state = 'pending', lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL,
       poll_request_id = NULL, attempt = attempt - 1
 WHERE id = :id AND state = 'leased' AND attempt = :attempt AND lease_owner = :lease_owner
RETURNING namespace, task_queue;

-- name: lock_query_task
-- Lock a query task for fencing a worker's answer.
SELECT id, namespace, state, lease_owner, attempt, lease_expires_at <= now() AS lease_expired
  FROM query_tasks
 WHERE id = :id
   FOR UPDATE;

-- name: answer_query_task
-- Record a worker's answer (completed with a result, or failed).
UPDATE query_tasks
   SET state = :state, result = :result::jsonb, result_envelope = :result_envelope::jsonb,
       failure = :failure::jsonb
 WHERE id = :id;

-- name: take_query_answer
-- Remove an answered query task and return its answer (no row: not answered yet).
DELETE FROM query_tasks
 WHERE id = :id AND state IN ('completed', 'failed')
RETURNING state, result, result_envelope, failure;

-- name: drop_query_task
-- The caller stopped waiting: remove the task, returning an answer that arrived meanwhile.
DELETE FROM query_tasks
 WHERE id = :id
RETURNING state, result, result_envelope, failure;
