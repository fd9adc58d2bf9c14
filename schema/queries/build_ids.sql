-- name: list_build_id_cohorts
-- The build-id cohorts of one task queue (schedules-and-admission.md §3): the queue's
-- registrations that have not deregistered, grouped by build id ('' = unversioned), joined
-- with the queue's rollout rows (a rollout row without workers is a cohort with zero
-- counts). A worker whose last heartbeat is older than :stale_after_s (or who never sent
-- one) counts as stale whatever its stored status. new_start_selected: the cohort holds
-- the queue's latest promoted_at (ties: the greater build id), the one start_new_workflow
-- pins new runs to.
WITH workers AS (
    SELECT w.build_id, w.status, w.runtime, w.sdk_version, w.last_heartbeat_at, w.created_at,
           (w.last_heartbeat_at IS NULL
            OR w.last_heartbeat_at <= now() - make_interval(secs => :stale_after_s))
               AS is_stale
      FROM worker_registrations w
     WHERE w.namespace = :namespace AND w.task_queue = :task_queue
       AND w.status <> 'deregistered'
), cohorts AS (
    SELECT build_id,
           count(*) FILTER (WHERE NOT is_stale AND status = 'active') AS active_worker_count,
           count(*) FILTER (WHERE NOT is_stale AND status = 'draining') AS draining_worker_count,
           count(*) FILTER (WHERE is_stale) AS stale_worker_count,
           count(*) AS total_worker_count,
           array_agg(DISTINCT runtime) FILTER (WHERE runtime <> '') AS runtimes,
           array_agg(DISTINCT sdk_version) FILTER (WHERE sdk_version <> '') AS sdk_versions,
           max(last_heartbeat_at) AS last_heartbeat_at,
           min(created_at) AS first_seen_at
      FROM workers
     GROUP BY build_id
), rollouts AS (
    SELECT r.build_id, r.drain_intent, r.drained_at, r.promoted_at,
           r.promoted_at IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM build_id_rollouts later
                WHERE later.namespace = r.namespace AND later.task_queue = r.task_queue
                  AND (later.promoted_at, later.build_id) > (r.promoted_at, r.build_id))
               AS new_start_selected
      FROM build_id_rollouts r
     WHERE r.namespace = :namespace AND r.task_queue = :task_queue
)
SELECT COALESCE(c.build_id, r.build_id) AS build_id,
       COALESCE(c.active_worker_count, 0) AS active_worker_count,
       COALESCE(c.draining_worker_count, 0) AS draining_worker_count,
       COALESCE(c.stale_worker_count, 0) AS stale_worker_count,
       COALESCE(c.total_worker_count, 0) AS total_worker_count,
       COALESCE(c.runtimes, '{}') AS runtimes,
       COALESCE(c.sdk_versions, '{}') AS sdk_versions,
       c.last_heartbeat_at, c.first_seen_at,
       COALESCE(r.drain_intent, 'active') AS drain_intent, r.drained_at, r.promoted_at,
       COALESCE(r.new_start_selected, false) AS new_start_selected
  FROM cohorts c
  FULL JOIN rollouts r ON r.build_id = c.build_id;

-- name: drain_build_id
-- Mark a cohort draining (creating its rollout row); a repeated drain keeps the first
-- drained_at. The cohort's rollout state back (new_start_selected as in list_build_id_cohorts).
INSERT INTO build_id_rollouts AS r (namespace, task_queue, build_id, drain_intent, drained_at)
VALUES (:namespace, :task_queue, :build_id, 'draining', now())
ON CONFLICT (namespace, task_queue, build_id) DO UPDATE SET
    drain_intent = 'draining',
    drained_at = CASE WHEN r.drain_intent = 'draining' THEN r.drained_at ELSE now() END,
    updated_at = now()
RETURNING r.drain_intent, r.drained_at, r.promoted_at,
          r.promoted_at IS NOT NULL AND NOT EXISTS (
              SELECT 1 FROM build_id_rollouts later
               WHERE later.namespace = r.namespace AND later.task_queue = r.task_queue
                 AND (later.promoted_at, later.build_id) > (r.promoted_at, r.build_id))
              AS new_start_selected;

-- name: resume_build_id
-- Clear a cohort's drain (drain_intent active, drained_at null). No row back: the cohort
-- has no rollout row, so there is nothing to resume (and none is created).
UPDATE build_id_rollouts r
   SET drain_intent = 'active', drained_at = NULL, updated_at = now()
 WHERE r.namespace = :namespace AND r.task_queue = :task_queue AND r.build_id = :build_id
RETURNING r.drain_intent, r.drained_at, r.promoted_at,
          r.promoted_at IS NOT NULL AND NOT EXISTS (
              SELECT 1 FROM build_id_rollouts later
               WHERE later.namespace = r.namespace AND later.task_queue = r.task_queue
                 AND (later.promoted_at, later.build_id) > (r.promoted_at, r.build_id))
              AS new_start_selected;

-- name: promote_build_id
-- Select a cohort for new starts on its queue: promoted_at = now() (creating its rollout
-- row). No row back: the cohort is draining, and a draining cohort is not promoted (its
-- workers claim nothing new, so the runs pinned to it would wait).
INSERT INTO build_id_rollouts AS r (namespace, task_queue, build_id, promoted_at)
VALUES (:namespace, :task_queue, :build_id, now())
ON CONFLICT (namespace, task_queue, build_id) DO UPDATE SET
    promoted_at = now(), updated_at = now()
    WHERE r.drain_intent = 'active'
RETURNING r.drain_intent, r.drained_at, r.promoted_at,
          r.promoted_at IS NOT NULL AND NOT EXISTS (
              SELECT 1 FROM build_id_rollouts later
               WHERE later.namespace = r.namespace AND later.task_queue = r.task_queue
                 AND (later.promoted_at, later.build_id) > (r.promoted_at, r.build_id))
              AS new_start_selected;

-- name: set_cohort_worker_status
-- Move a cohort's registrations from :from_status to :to_status (drain: active ->
-- draining; resume: draining -> active). Deregistered workers are left alone.
UPDATE worker_registrations
   SET status = :to_status, updated_at = now()
 WHERE namespace = :namespace AND task_queue = :task_queue AND build_id = :build_id
   AND status = :from_status;
