-- name: seed_namespace
-- Create a namespace if absent (or deleted); returns true when it was created.
INSERT INTO namespaces (name, description, retention_days)
VALUES (:name, :description, :retention_days)
ON CONFLICT (name) DO UPDATE SET
    description = EXCLUDED.description, retention_days = EXCLUDED.retention_days,
    status = 'active', external_payload_storage = NULL, deleted_at = NULL,
    created_at = now(), updated_at = now()
  WHERE namespaces.status = 'deleted'
RETURNING true;

-- name: create_namespace
-- Create a namespace, or bring a deleted one back as new (it kept nothing); no row
-- back means a live one has the name.
INSERT INTO namespaces (name, description, retention_days)
VALUES (:name, :description, :retention_days)
ON CONFLICT (name) DO UPDATE SET
    description = EXCLUDED.description, retention_days = EXCLUDED.retention_days,
    status = 'active', external_payload_storage = NULL, deleted_at = NULL,
    created_at = now(), updated_at = now()
  WHERE namespaces.status = 'deleted'
RETURNING name, description, retention_days, status, external_payload_storage, created_at, updated_at;

-- name: get_namespace
-- One live namespace by (lowercased) name.
SELECT name, description, retention_days, status, external_payload_storage, created_at, updated_at
  FROM namespaces WHERE name = :name AND status = 'active';

-- name: namespace_exists
-- Whether a live namespace has this name (request gate); a deleted one does not exist.
SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = :name AND status = 'active');

-- name: list_namespaces
-- Every live namespace, by name.
SELECT name, description, retention_days, status, external_payload_storage, created_at, updated_at
  FROM namespaces WHERE status = 'active' ORDER BY name;

-- name: update_namespace
-- Change description and/or retention; NULL arguments leave a column unchanged.
UPDATE namespaces
   SET description    = COALESCE(:description, description),
       retention_days = COALESCE(:retention_days, retention_days),
       updated_at     = now()
 WHERE name = :name AND status = 'active'
RETURNING name, description, retention_days, status, external_payload_storage, created_at, updated_at;

-- name: set_namespace_external_storage
-- Replace the external payload storage policy of a namespace.
UPDATE namespaces
   SET external_payload_storage = :policy::jsonb, updated_at = now()
 WHERE name = :name AND status = 'active'
RETURNING name, description, retention_days, status, external_payload_storage, created_at, updated_at;

-- name: lock_namespace_for_delete
-- Lock a live namespace for its deletion (FOR UPDATE: a start in it, whose foreign
-- key check key-shares the row, waits until the deletion is over).
SELECT name, description, retention_days, status, external_payload_storage, created_at, updated_at
  FROM namespaces WHERE name = :name AND status = 'active'
   FOR UPDATE;

-- name: count_namespace_open_runs
-- How many runs of a namespace are still open (pending, running or waiting).
SELECT count(*) FROM workflow_runs WHERE namespace = :namespace AND status_bucket = 'running';

-- name: namespace_live_schedule_ids
-- The ids of a namespace's schedules that are not deleted.
SELECT schedule_id FROM schedules WHERE namespace = :namespace AND status <> 'deleted'
 ORDER BY schedule_id;

-- name: purge_namespace
-- Delete what a deleted namespace owned: its workflow instances (every run and
-- everything under them cascades), registered search attributes, worker
-- registrations (and their incarnations) and build-id rollouts; say how many runs, attributes and
-- registrations went. Schedules are soft-deleted beforehand, by the schedule rules.
-- (Every data-modifying CTE runs to completion whether or not the SELECT reads it.)
WITH runs AS (
    SELECT count(*) AS n FROM workflow_runs WHERE namespace = :namespace
), instances AS (
    DELETE FROM workflow_instances WHERE namespace = :namespace
), attributes AS (
    DELETE FROM search_attribute_definitions WHERE namespace = :namespace RETURNING 1
), registrations AS (
    DELETE FROM worker_registrations WHERE namespace = :namespace RETURNING 1
), incarnations AS (
    DELETE FROM worker_registration_incarnations WHERE namespace = :namespace
), rollouts AS (
    DELETE FROM build_id_rollouts WHERE namespace = :namespace
)
SELECT (SELECT n FROM runs) AS workflow_runs,
       (SELECT count(*) FROM attributes) AS search_attribute_definitions,
       (SELECT count(*) FROM registrations) AS workflow_worker_registrations;

-- name: mark_namespace_deleted
-- Soft-delete a namespace: the row stays (status deleted) so its name stays stored.
UPDATE namespaces
   SET status = 'deleted', deleted_at = now(), updated_at = now()
 WHERE name = :name
RETURNING name, description, retention_days, status, external_payload_storage, created_at, updated_at;
