-- name: list_task_queue_names
-- The task queues of a namespace (docs/task-queues.md): those with ready or leased tasks and
-- those a worker that has not deregistered polls, by name. Task queues are not stored: the
-- names of the task rows come from a skip scan of each partial index (one probe per queue,
-- however deep its backlog).
WITH RECURSIVE ready(name) AS (
    (SELECT task_queue FROM workflow_tasks
      WHERE namespace = :namespace AND state = 'ready'
      ORDER BY task_queue LIMIT 1)
    UNION ALL
    SELECT (SELECT t.task_queue FROM workflow_tasks t
             WHERE t.namespace = :namespace AND t.state = 'ready' AND t.task_queue > r.name
             ORDER BY t.task_queue LIMIT 1)
      FROM ready r
     WHERE r.name IS NOT NULL
), leased(name) AS (
    (SELECT task_queue FROM workflow_tasks
      WHERE namespace = :namespace AND state = 'leased'
      ORDER BY task_queue LIMIT 1)
    UNION ALL
    SELECT (SELECT t.task_queue FROM workflow_tasks t
             WHERE t.namespace = :namespace AND t.state = 'leased' AND t.task_queue > l.name
             ORDER BY t.task_queue LIMIT 1)
      FROM leased l
     WHERE l.name IS NOT NULL
)
SELECT name FROM ready WHERE name IS NOT NULL
UNION
SELECT name FROM leased WHERE name IS NOT NULL
UNION
SELECT task_queue FROM worker_registrations
 WHERE namespace = :namespace AND status <> 'deregistered'
ORDER BY 1;

-- name: task_queue_stats
-- Backlog, leases, repair candidates, pollers and pending queries of each of :task_queues, one
-- row each in the array's order (a queue nobody knows has zero counts). Ready means due
-- (available_at <= now()); overdue means due for :overdue_after_s or longer, counted as the
-- ready tasks less the recent ones (a short range, where counting the overdue ones would
-- walk the backlog again). A lost worker's lease is one task repair recovers before it
-- expires (engine/repair.py's rule: the worker registered, its heartbeats stopped
-- :stale_after_s ago and the lease was not touched since). Each count is a plain count(*)
-- over one index range (workflow_tasks_claim_idx per kind, index-only; the leases from
-- workflow_tasks_leased_queue_idx); the oldest ready task is the head of the claim index per
-- kind.
SELECT q.name AS task_queue,
       r.workflow_ready_count, r.activity_ready_count,
       r.workflow_ready_count + r.activity_ready_count - r.recent_count AS overdue_count,
       o.id AS oldest_task_id, o.kind AS oldest_task_kind, o.workflow_id AS oldest_workflow_id,
       o.run_id AS oldest_run_id, o.available_at AS oldest_available_at,
       floor(extract(epoch FROM now() - o.available_at))::bigint AS oldest_age_s,
       l.workflow_leased_count, l.workflow_expired_count, l.activity_leased_count,
       l.activity_expired_count, l.oldest_lease_expired_at,
       lw.lost_worker_lease_count,
       p.active_count AS poller_active_count, p.stale_count AS poller_stale_count,
       p.active_worker_count, p.workflow_slot_count, p.activity_slot_count,
       qt.query_pending_count
  FROM unnest(:task_queues::text[]) WITH ORDINALITY AS q(name, position)
 CROSS JOIN LATERAL (
    SELECT (SELECT count(*) FROM workflow_tasks t
             WHERE t.namespace = :namespace AND t.task_queue = q.name AND t.kind = 'workflow'
               AND t.state = 'ready' AND t.available_at <= now()) AS workflow_ready_count,
           (SELECT count(*) FROM workflow_tasks t
             WHERE t.namespace = :namespace AND t.task_queue = q.name AND t.kind = 'activity'
               AND t.state = 'ready' AND t.available_at <= now()) AS activity_ready_count,
           (SELECT count(*) FROM workflow_tasks t
             WHERE t.namespace = :namespace AND t.task_queue = q.name
               AND t.kind IN ('workflow', 'activity') AND t.state = 'ready'
               AND t.available_at > now() - make_interval(secs => :overdue_after_s)
               AND t.available_at <= now()) AS recent_count
    OFFSET 0  -- evaluated once: the counts are used twice above
 ) r
  LEFT JOIN LATERAL (
    SELECT h.id, h.kind, h.workflow_id, h.run_id, h.available_at
      FROM ((SELECT t.id, t.kind, t.workflow_id, t.run_id, t.available_at
               FROM workflow_tasks t
              WHERE t.namespace = :namespace AND t.task_queue = q.name AND t.kind = 'workflow'
                AND t.state = 'ready' AND t.available_at <= now()
              ORDER BY t.available_at, t.id LIMIT 1)
            UNION ALL
            (SELECT t.id, t.kind, t.workflow_id, t.run_id, t.available_at
               FROM workflow_tasks t
              WHERE t.namespace = :namespace AND t.task_queue = q.name AND t.kind = 'activity'
                AND t.state = 'ready' AND t.available_at <= now()
              ORDER BY t.available_at, t.id LIMIT 1)) h
     ORDER BY h.available_at, h.id
     LIMIT 1
 ) o ON true
 CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE t.kind = 'workflow') AS workflow_leased_count,
           count(*) FILTER (WHERE t.kind = 'workflow' AND t.lease_expires_at <= now())
               AS workflow_expired_count,
           count(*) FILTER (WHERE t.kind = 'activity') AS activity_leased_count,
           count(*) FILTER (WHERE t.kind = 'activity' AND t.lease_expires_at <= now())
               AS activity_expired_count,
           min(t.lease_expires_at) FILTER (WHERE t.lease_expires_at <= now())
               AS oldest_lease_expired_at
      FROM workflow_tasks t
     WHERE t.namespace = :namespace AND t.task_queue = q.name AND t.state = 'leased'
 ) l
 CROSS JOIN LATERAL (
    SELECT count(*) AS lost_worker_lease_count
      FROM workflow_tasks t
      JOIN worker_registrations w ON w.namespace = t.namespace AND w.worker_id = t.lease_owner
     WHERE t.namespace = :namespace AND t.task_queue = q.name AND t.state = 'leased'
       AND t.lease_expires_at > now()
       AND t.updated_at <= now() - make_interval(secs => :stale_after_s)
       AND w.heartbeat_interval_seconds IS NOT NULL
       AND w.last_heartbeat_at <= now() - make_interval(secs => :stale_after_s)
 ) lw
 CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE NOT s.is_stale) AS active_count,
           count(*) FILTER (WHERE s.is_stale) AS stale_count,
           count(*) FILTER (WHERE NOT s.is_stale AND s.status = 'active') AS active_worker_count,
           coalesce(sum(greatest(s.max_concurrent_workflow_tasks, 0))
                        FILTER (WHERE NOT s.is_stale AND s.status = 'active'), 0)::bigint
               AS workflow_slot_count,
           coalesce(sum(greatest(s.max_concurrent_activity_tasks, 0))
                        FILTER (WHERE NOT s.is_stale AND s.status = 'active'), 0)::bigint
               AS activity_slot_count
      FROM (SELECT w.status, w.max_concurrent_workflow_tasks, w.max_concurrent_activity_tasks,
                   (w.last_heartbeat_at IS NULL
                    OR w.last_heartbeat_at <= now() - make_interval(secs => :stale_after_s))
                       AS is_stale
              FROM worker_registrations w
             WHERE w.namespace = :namespace AND w.task_queue = q.name
               AND w.status <> 'deregistered') s
 ) p
 CROSS JOIN LATERAL (
    SELECT count(*) AS query_pending_count
      FROM query_tasks qt
     WHERE qt.namespace = :namespace AND qt.task_queue = q.name AND qt.state = 'pending'
       AND qt.expires_at > now()
 ) qt
 ORDER BY q.position;

-- name: task_queue_members
-- Who works a task queue: its pollers (workers that have not deregistered; fresh ones first,
-- then by id; stale after :stale_after_s without a heartbeat) and its first :lease_limit leases
-- by expiry (expired ones first), at most :lease_limit of each kind read.
SELECT
    (SELECT array_agg(ROW(w.worker_id, w.runtime, w.sdk_version, w.build_id,
                          w.last_heartbeat_at,
                          w.last_heartbeat_at + make_interval(secs => :stale_after_s),
                          w.status, w.is_stale, w.supported_workflow_types,
                          w.supported_activity_types, w.max_concurrent_workflow_tasks,
                          w.max_concurrent_activity_tasks)
                      ORDER BY w.is_stale, w.worker_id)
       FROM (SELECT r.*,
                    (r.last_heartbeat_at IS NULL
                     OR r.last_heartbeat_at <= now() - make_interval(secs => :stale_after_s))
                        AS is_stale
               FROM worker_registrations r
              WHERE r.namespace = :namespace AND r.task_queue = :task_queue
                AND r.status <> 'deregistered') w) AS pollers,
    (SELECT array_agg(ROW(l.id, l.kind, l.workflow_id, l.run_id, l.lease_owner,
                          l.lease_expires_at, l.lease_expires_at <= now(), l.attempt,
                          l.activity_attempt_id)
                      ORDER BY l.lease_expires_at, l.id)
       FROM (SELECT h.* FROM
                 ((SELECT t.id, t.kind, t.workflow_id, t.run_id, t.lease_owner,
                          t.lease_expires_at, t.attempt, t.activity_attempt_id
                     FROM workflow_tasks t
                    WHERE t.namespace = :namespace AND t.task_queue = :task_queue
                      AND t.kind = 'workflow' AND t.state = 'leased'
                    ORDER BY t.lease_expires_at, t.id LIMIT :lease_limit)
                  UNION ALL
                  (SELECT t.id, t.kind, t.workflow_id, t.run_id, t.lease_owner,
                          t.lease_expires_at, t.attempt, t.activity_attempt_id
                     FROM workflow_tasks t
                    WHERE t.namespace = :namespace AND t.task_queue = :task_queue
                      AND t.kind = 'activity' AND t.state = 'leased'
                    ORDER BY t.lease_expires_at, t.id LIMIT :lease_limit)) h
              ORDER BY h.lease_expires_at, h.id
              LIMIT :lease_limit) l) AS current_leases;
