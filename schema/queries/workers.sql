-- name: upsert_worker_registration
-- Register (or re-register) a worker; a re-registration reactivates it: status draining
-- while its cohort (namespace, task queue, build id) is draining, else active. Its
-- registration_token is the new incarnation's (the upsert locks the row first, as a
-- fenced deregistration does).
INSERT INTO worker_registrations (
    namespace, worker_id, task_queue, runtime, sdk_version, build_id,
    supported_workflow_types, supported_activity_types, workflow_definition_fingerprints,
    workflow_command_contracts, capabilities, capability_manifest, task_slots, process_metrics,
    max_concurrent_workflow_tasks, max_concurrent_activity_tasks, max_concurrent_worker_sessions,
    heartbeat_interval_seconds, registration_token, status, last_heartbeat_at)
VALUES (:namespace, :worker_id, :task_queue, :runtime, :sdk_version, :build_id,
        :supported_workflow_types, :supported_activity_types, :workflow_definition_fingerprints,
        :workflow_command_contracts, :capabilities, :capability_manifest, :task_slots,
        :process_metrics, :max_concurrent_workflow_tasks, :max_concurrent_activity_tasks,
        :max_concurrent_worker_sessions, :heartbeat_interval_seconds, :registration_token,
        CASE WHEN EXISTS (SELECT 1 FROM build_id_rollouts b
                           WHERE b.namespace = :namespace AND b.task_queue = :task_queue
                             AND b.build_id = :build_id AND b.drain_intent = 'draining')
             THEN 'draining' ELSE 'active' END,
        now())
ON CONFLICT (namespace, worker_id) DO UPDATE SET
    task_queue = EXCLUDED.task_queue, runtime = EXCLUDED.runtime, sdk_version = EXCLUDED.sdk_version,
    build_id = EXCLUDED.build_id, supported_workflow_types = EXCLUDED.supported_workflow_types,
    supported_activity_types = EXCLUDED.supported_activity_types,
    workflow_definition_fingerprints = EXCLUDED.workflow_definition_fingerprints,
    workflow_command_contracts = EXCLUDED.workflow_command_contracts,
    capabilities = EXCLUDED.capabilities, capability_manifest = EXCLUDED.capability_manifest,
    task_slots = EXCLUDED.task_slots, process_metrics = EXCLUDED.process_metrics,
    max_concurrent_workflow_tasks = EXCLUDED.max_concurrent_workflow_tasks,
    max_concurrent_activity_tasks = EXCLUDED.max_concurrent_activity_tasks,
    max_concurrent_worker_sessions = EXCLUDED.max_concurrent_worker_sessions,
    heartbeat_interval_seconds = EXCLUDED.heartbeat_interval_seconds,
    registration_token = EXCLUDED.registration_token,
    status = EXCLUDED.status, deregistered_at = NULL, last_heartbeat_at = now(),
    updated_at = now();

-- name: ensure_worker_registration
-- Treat an unknown worker that polls a queue as registered for it (implicit registration,
-- unversioned). A known one keeps its queue and build id; either way its status is
-- draining while its cohort is draining, else active (a deregistered worker comes back).
INSERT INTO worker_registrations AS w (namespace, worker_id, task_queue, status,
                                       last_heartbeat_at)
VALUES (:namespace, :worker_id, :task_queue,
        CASE WHEN EXISTS (SELECT 1 FROM build_id_rollouts b
                           WHERE b.namespace = :namespace AND b.task_queue = :task_queue
                             AND b.build_id = '' AND b.drain_intent = 'draining')
             THEN 'draining' ELSE 'active' END,
        now())
ON CONFLICT (namespace, worker_id) DO UPDATE SET
    last_heartbeat_at = now(),
    status = CASE WHEN EXISTS (SELECT 1 FROM build_id_rollouts b
                                WHERE b.namespace = w.namespace AND b.task_queue = w.task_queue
                                  AND b.build_id = w.build_id AND b.drain_intent = 'draining')
                  THEN 'draining' ELSE 'active' END,
    updated_at = now()
RETURNING supported_workflow_types, supported_activity_types;

-- name: heartbeat_worker
-- Record a worker heartbeat; no row back means the worker is unknown. Its status: draining
-- while its cohort is draining, else active (a deregistered worker comes back).
UPDATE worker_registrations w
   SET last_heartbeat_at = now(), task_slots = COALESCE(:task_slots, w.task_slots),
       process_metrics = COALESCE(:process_metrics, w.process_metrics), updated_at = now(),
       status = CASE WHEN EXISTS (SELECT 1 FROM build_id_rollouts b
                                   WHERE b.namespace = w.namespace
                                     AND b.task_queue = w.task_queue
                                     AND b.build_id = w.build_id
                                     AND b.drain_intent = 'draining')
                     THEN 'draining' ELSE 'active' END
 WHERE w.namespace = :namespace AND w.worker_id = :worker_id
RETURNING w.heartbeat_interval_seconds;

-- name: deregister_worker
-- Mark a worker deregistered; no row back means it is unknown.
UPDATE worker_registrations
   SET status = 'deregistered', deregistered_at = now(), updated_at = now()
 WHERE namespace = :namespace AND worker_id = :worker_id
RETURNING worker_id;

-- name: release_worker_workflow_tasks
-- Put every workflow task leased to a worker back to ready (attempt kept).
UPDATE workflow_tasks
   SET state = 'ready', lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL,
       poll_request_id = NULL, available_at = now(), updated_at = now()
 WHERE namespace = :namespace AND lease_owner = :worker_id AND state = 'leased'
   AND kind = 'workflow'
RETURNING task_queue;

-- name: list_workers
-- The worker roster of a namespace (control-plane.md §10), newest heartbeat first. A
-- NULL :task_queue or :status filters nothing; without :status, deregistered workers
-- are left out. :status matches the stored status, or 'stale' the ones whose last
-- heartbeat is older than :stale_after_s (is_stale; the stored status stays).
SELECT worker_id, namespace, task_queue, runtime, sdk_version, build_id,
       supported_workflow_types, workflow_definition_fingerprints, supported_activity_types,
       max_concurrent_workflow_tasks, max_concurrent_activity_tasks, task_slots,
       process_metrics, heartbeat_interval_seconds, status, is_stale, last_heartbeat_at,
       heartbeat_expires_at, created_at, updated_at
  FROM (SELECT w.*,
               w.last_heartbeat_at + make_interval(secs => :stale_after_s) AS heartbeat_expires_at,
               (w.last_heartbeat_at IS NULL
                OR w.last_heartbeat_at <= now() - make_interval(secs => :stale_after_s))
                   AS is_stale
          FROM worker_registrations w
         WHERE w.namespace = :namespace
           AND (:task_queue::text IS NULL OR w.task_queue = :task_queue)) r
 WHERE CASE WHEN :status::text IS NULL THEN status <> 'deregistered'
            WHEN :status = 'stale' THEN is_stale AND status <> 'deregistered'
            ELSE status = :status END
 ORDER BY last_heartbeat_at DESC NULLS LAST, worker_id;

-- name: get_worker
-- One worker registration, as the roster shows it (list_workers' columns).
SELECT worker_id, namespace, task_queue, runtime, sdk_version, build_id,
       supported_workflow_types, workflow_definition_fingerprints, supported_activity_types,
       max_concurrent_workflow_tasks, max_concurrent_activity_tasks, task_slots,
       process_metrics, heartbeat_interval_seconds, status,
       (last_heartbeat_at IS NULL
        OR last_heartbeat_at <= now() - make_interval(secs => :stale_after_s)) AS is_stale,
       last_heartbeat_at,
       last_heartbeat_at + make_interval(secs => :stale_after_s) AS heartbeat_expires_at,
       created_at, updated_at
  FROM worker_registrations
 WHERE namespace = :namespace AND worker_id = :worker_id;

-- name: retire_worker_incarnations
-- The worker id's active incarnations other than :keep_token (NULL: all of them) are
-- superseded: a newer registration, or an unfenced deregistration, replaced them.
UPDATE worker_registration_incarnations
   SET status = 'superseded', finished_at = now(), updated_at = now()
 WHERE namespace = :namespace AND worker_id = :worker_id AND status = 'active'
   AND (:keep_token::text IS NULL OR token <> :keep_token);

-- name: insert_worker_incarnation
-- A registration's new incarnation, active and bound to the registration row.
INSERT INTO worker_registration_incarnations (token, namespace, worker_id)
VALUES (:token, :namespace, :worker_id);

-- name: lock_worker_registration_token
-- Lock a worker's registration row (before its incarnation, the order registration
-- takes too); its current token and stored status. No row: not registered.
SELECT registration_token, status
  FROM worker_registrations
 WHERE namespace = :namespace AND worker_id = :worker_id
   FOR UPDATE;

-- name: lock_worker_incarnation
-- Lock one incarnation of a worker id by its token; expired says its receipt window
-- (:retention_s after it finished) has passed.
SELECT token, status, recovered_workflow_task_count, recovered_activity_task_count,
       (finished_at IS NOT NULL
        AND finished_at <= now() - make_interval(secs => :retention_s)) AS expired
  FROM worker_registration_incarnations
 WHERE token = :token AND namespace = :namespace AND worker_id = :worker_id
   FOR UPDATE;

-- name: finish_worker_incarnation
-- The fenced deregistration of this incarnation committed: its receipt.
UPDATE worker_registration_incarnations
   SET status = 'deregistered', recovered_workflow_task_count = :recovered_workflow_task_count,
       recovered_activity_task_count = 0, finished_at = now(), updated_at = now()
 WHERE token = :token;

-- name: count_incarnation_activity_recoveries
-- Add the activity leases a fenced deregistration gave back after its commit.
UPDATE worker_registration_incarnations
   SET recovered_activity_task_count = recovered_activity_task_count + :recovered,
       updated_at = now()
 WHERE token = :token AND status = 'deregistered';

-- name: prune_worker_incarnations
-- Delete up to :limit receipts whose window (:retention_s after they finished) passed.
DELETE FROM worker_registration_incarnations
 WHERE token IN (SELECT token FROM worker_registration_incarnations
                  WHERE finished_at <= now() - make_interval(secs => :retention_s)
                  ORDER BY finished_at
                  LIMIT :limit
                    FOR UPDATE SKIP LOCKED)
RETURNING token;
