-- name: seed_namespace
-- Create a namespace if absent; returns true when it was created.
INSERT INTO namespaces (name, description, retention_days)
VALUES (:name, :description, :retention_days)
ON CONFLICT (name) DO NOTHING
RETURNING true;

-- name: create_namespace
-- Create a namespace; no row back means it already exists.
INSERT INTO namespaces (name, description, retention_days)
VALUES (:name, :description, :retention_days)
ON CONFLICT (name) DO NOTHING
RETURNING name, description, retention_days, status, external_payload_storage, created_at, updated_at;

-- name: get_namespace
-- One namespace by (lowercased) name.
SELECT name, description, retention_days, status, external_payload_storage, created_at, updated_at
  FROM namespaces WHERE name = :name;

-- name: namespace_exists
-- Whether a namespace exists (request gate).
SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = :name);

-- name: list_namespaces
-- Every namespace, by name.
SELECT name, description, retention_days, status, external_payload_storage, created_at, updated_at
  FROM namespaces ORDER BY name;

-- name: update_namespace
-- Change description and/or retention; NULL arguments leave a column unchanged.
UPDATE namespaces
   SET description    = COALESCE(:description, description),
       retention_days = COALESCE(:retention_days, retention_days),
       updated_at     = now()
 WHERE name = :name
RETURNING name, description, retention_days, status, external_payload_storage, created_at, updated_at;

-- name: set_namespace_external_storage
-- Replace the external payload storage policy of a namespace.
UPDATE namespaces
   SET external_payload_storage = :policy::jsonb, updated_at = now()
 WHERE name = :name
RETURNING name, description, retention_days, status, external_payload_storage, created_at, updated_at;
