-- name: lock_admission_scope
-- Hold an admission scope (a queue, a namespace or a budget group of one task kind)
-- until the claim's transaction ends, waiting at most a second for it (lock_timeout,
-- for the rest of this transaction only): every node's claims on the scope take turns.
SELECT set_config('lock_timeout', '1000', true),
       pg_advisory_xact_lock(hashtextextended(:scope, 0));

-- name: record_dispatch
-- Count one dispatch in this UTC minute for each of :scopes, dropping their rows of
-- minutes that are over (nobody reads them again).
WITH gone AS (
    DELETE FROM task_dispatch_counts
     WHERE scope = ANY(:scopes::text[]) AND minute < date_trunc('minute', now())
)
INSERT INTO task_dispatch_counts (scope, minute, count)
SELECT scope, date_trunc('minute', now()), 1 FROM unnest(:scopes::text[]) AS scope
ON CONFLICT (scope, minute) DO UPDATE SET count = task_dispatch_counts.count + 1;

-- name: cohort_draining
-- Whether the worker's build-id cohort on this queue is draining (an operator drained
-- it): such a worker claims nothing new.
SELECT EXISTS (
    SELECT 1 FROM worker_registrations w
      JOIN build_id_rollouts b
        ON b.namespace = w.namespace AND b.task_queue = :task_queue AND b.build_id = w.build_id
     WHERE w.namespace = :namespace AND w.worker_id = :worker_id
       AND b.drain_intent = 'draining');

-- name: admission_counts
-- What the caps of (queue, kind) pairs of one namespace count right now, in the order
-- given (one pair for a claim, every queue's two for the task-queue list): active
-- leases of the queue and of the namespace (0 unless :with_namespace, a count that
-- costs more), and this UTC minute's dispatches of the queue, namespace and group
-- scopes; and the seconds left in the minute. An active lease is a leased task whose
-- lease has not expired (workflow_tasks_leased_queue_idx).
WITH q AS (
    SELECT * FROM unnest(:task_queues::text[], :kinds::text[], :queue_scopes::text[],
                         :namespace_scopes::text[], :group_scopes::text[])
                  WITH ORDINALITY AS q(task_queue, kind, queue_scope, namespace_scope,
                                       group_scope, n)
), namespace_leases AS (
    SELECT kind, count(*) AS leases FROM workflow_tasks
     WHERE :with_namespace AND namespace = :namespace AND state = 'leased'
       AND (lease_expires_at IS NULL OR lease_expires_at > now())
     GROUP BY kind
), minute_counts AS (
    SELECT scope, count FROM task_dispatch_counts
     WHERE minute = date_trunc('minute', now())
       AND scope IN (SELECT queue_scope FROM q UNION ALL SELECT namespace_scope FROM q
                     UNION ALL SELECT group_scope FROM q WHERE group_scope IS NOT NULL)
)
SELECT (SELECT count(*) FROM workflow_tasks t
         WHERE t.namespace = :namespace AND t.task_queue = q.task_queue AND t.kind = q.kind
           AND t.state = 'leased' AND (t.lease_expires_at IS NULL OR t.lease_expires_at > now()))
           AS queue_leases,
       coalesce((SELECT leases FROM namespace_leases l WHERE l.kind = q.kind), 0)
           AS namespace_leases,
       coalesce((SELECT count FROM minute_counts c WHERE c.scope = q.queue_scope), 0)
           AS queue_dispatches,
       coalesce((SELECT count FROM minute_counts c WHERE c.scope = q.namespace_scope), 0)
           AS namespace_dispatches,
       coalesce((SELECT count FROM minute_counts c WHERE c.scope = q.group_scope), 0)
           AS group_dispatches,
       extract(epoch FROM date_trunc('minute', now()) + interval '1 minute' - now())::float8
           AS minute_left_s
  FROM q
 ORDER BY q.n;
