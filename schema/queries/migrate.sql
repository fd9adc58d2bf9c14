-- name: lock_migrations
-- Serialise bootstraps across processes (session-level advisory lock).
SELECT pg_advisory_lock(:key);

-- name: unlock_migrations
-- Release the bootstrap lock.
SELECT pg_advisory_unlock(:key);

-- name: create_migrations_table
-- The bookkeeping table of applied migrations.
CREATE TABLE IF NOT EXISTS dwtrio_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migrations_table_exists
-- Whether any migration bookkeeping exists yet.
SELECT to_regclass('dwtrio_schema_migrations') IS NOT NULL;

-- name: list_applied_migrations
-- Versions, names and checksums of applied migrations.
SELECT version, name, checksum FROM dwtrio_schema_migrations ORDER BY version;

-- name: record_migration
-- Remember that a migration was applied.
INSERT INTO dwtrio_schema_migrations (version, name, checksum)
VALUES (:version, :name, :checksum);
