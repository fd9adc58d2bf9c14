-- name: claim_expired_runs
-- Retention: lock up to :limit runs past their namespace's retention window, oldest
-- closed first, in one namespace (:namespace) or in all (:namespace null). A run is
-- expired when it is closed, not archived, closed longer ago than retention_days, and
-- no open run holds it as a child; runs in :exclude_ids (those a pass failed to prune)
-- are passed over. Rows another pruner holds are skipped (SKIP LOCKED),
-- so pruners on several nodes never take the same run. Each namespace's scan walks
-- workflow_runs_retention_idx (namespace, closed_at) from its oldest closed run.
SELECT r.id AS run_id, r.workflow_id, r.last_history_sequence AS event_count
  FROM namespaces n
 CROSS JOIN LATERAL (
        SELECT x.id, x.workflow_id, x.last_history_sequence
          FROM workflow_runs x
         WHERE x.namespace = n.name
           AND x.closed_at IS NOT NULL AND x.archived_at IS NULL
           AND x.closed_at < now() - make_interval(days => n.retention_days)
           AND x.id <> ALL(:exclude_ids)
           AND NOT EXISTS (
                 SELECT 1 FROM child_workflow_calls c
                   JOIN workflow_runs p ON p.id = c.parent_run_id
                  WHERE c.child_workflow_id = x.workflow_id AND p.closed_at IS NULL)
         ORDER BY x.closed_at
         LIMIT :limit
           FOR UPDATE OF x SKIP LOCKED
       ) r
 WHERE CAST(:namespace AS text) IS NULL OR n.name = :namespace
 LIMIT :limit;

-- name: claim_listed_expired_runs
-- Retention on named runs: lock those of :run_ids that are expired (the conditions of
-- claim_expired_runs), in :namespace or any (null); the others, and those another pruner
-- holds, are not returned.
SELECT r.id AS run_id, r.workflow_id, r.last_history_sequence AS event_count
  FROM workflow_runs r
  JOIN namespaces n ON n.name = r.namespace
 WHERE r.id = ANY(:run_ids)
   AND (CAST(:namespace AS text) IS NULL OR r.namespace = :namespace)
   AND r.closed_at IS NOT NULL AND r.archived_at IS NULL
   AND r.closed_at < now() - make_interval(days => n.retention_days)
   AND NOT EXISTS (
         SELECT 1 FROM child_workflow_calls c
           JOIN workflow_runs p ON p.id = c.parent_run_id
          WHERE c.child_workflow_id = r.workflow_id AND p.closed_at IS NULL)
 ORDER BY r.id
   FOR UPDATE OF r SKIP LOCKED;

-- name: retention_run_states
-- Why named runs were not pruned: for each of :run_ids (in :namespace, or any when
-- null), whether it is
-- open, archived, still inside the window, or held by an open parent (not locked).
SELECT r.id AS run_id,
       r.closed_at IS NULL AS is_open,
       r.archived_at IS NOT NULL AS archived,
       r.closed_at IS NOT NULL
         AND r.closed_at >= now() - make_interval(days => n.retention_days) AS within_window,
       EXISTS (SELECT 1 FROM child_workflow_calls c
                 JOIN workflow_runs p ON p.id = c.parent_run_id
                WHERE c.child_workflow_id = r.workflow_id AND p.closed_at IS NULL) AS parent_open
  FROM workflow_runs r
  JOIN namespaces n ON n.name = r.namespace
 WHERE r.id = ANY(:run_ids) AND (CAST(:namespace AS text) IS NULL OR r.namespace = :namespace);

-- name: delete_runs
-- Retention: delete locked runs; their history, tasks, activities and attempts, timers,
-- commands, signals, updates, child calls, failures and search-attribute rows cascade,
-- and a later run of the chain forgets its continued_from_run_id.
DELETE FROM workflow_runs WHERE id = ANY(:run_ids);

-- name: lock_empty_instances
-- Retention: lock the instances of :workflow_ids that no start holds (SKIP LOCKED: a start
-- locks its instance first; one held now keeps its row until a later pass).
SELECT workflow_id FROM workflow_instances
 WHERE workflow_id = ANY(:workflow_ids)
 ORDER BY workflow_id
   FOR UPDATE SKIP LOCKED;

-- name: delete_empty_instances
-- Retention: delete locked instances left without a run (their commands cascade). Run as
-- its own statement after lock_empty_instances, so it sees every run committed meanwhile.
DELETE FROM workflow_instances i
 WHERE i.workflow_id = ANY(:workflow_ids)
   AND NOT EXISTS (SELECT 1 FROM workflow_runs r WHERE r.workflow_id = i.workflow_id);

-- name: retention_status
-- Retention diagnostics of one namespace: its window, the cutoff, how many runs are
-- expired (counted up to :count_limit) and the oldest :limit of them (not locked).
WITH ns AS (
    SELECT name, retention_days, now() - make_interval(days => retention_days) AS cutoff
      FROM namespaces WHERE name = :namespace
), expired AS (
    SELECT x.id, x.closed_at
      FROM ns JOIN workflow_runs x ON x.namespace = ns.name
     WHERE x.closed_at IS NOT NULL AND x.archived_at IS NULL AND x.closed_at < ns.cutoff
       AND NOT EXISTS (
             SELECT 1 FROM child_workflow_calls c
               JOIN workflow_runs p ON p.id = c.parent_run_id
              WHERE c.child_workflow_id = x.workflow_id AND p.closed_at IS NULL)
     ORDER BY x.closed_at
     LIMIT :count_limit
)
SELECT ns.retention_days, ns.cutoff,
       (SELECT count(*) FROM expired) AS expired_run_count,
       COALESCE((SELECT array_agg(id ORDER BY closed_at)
                   FROM (SELECT id, closed_at FROM expired ORDER BY closed_at LIMIT :limit) e),
                '{}') AS expired_run_ids
  FROM ns;

-- name: lock_orphaned_instances
-- Retention: instances a pass could not delete with their last run (a start held them)
-- and that still have no run: their current run was pruned (current_run_id set null).
SELECT workflow_id FROM workflow_instances i
 WHERE i.current_run_id IS NULL
   AND NOT EXISTS (SELECT 1 FROM workflow_runs r WHERE r.workflow_id = i.workflow_id)
 ORDER BY i.workflow_id
 LIMIT :limit
   FOR UPDATE SKIP LOCKED;
