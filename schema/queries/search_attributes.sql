-- name: list_search_attributes
-- The custom search attributes of a namespace, by name.
SELECT name, type
  FROM search_attribute_definitions
 WHERE namespace = :namespace
 ORDER BY name;

-- name: search_attribute_types
-- The registered types of some names in a namespace (names nobody registered are absent).
SELECT name, type
  FROM search_attribute_definitions
 WHERE namespace = :namespace AND name = ANY (:names::text[]);

-- name: lock_search_attribute_namespace
-- Serialize registrations in a namespace (NO KEY UPDATE: foreign-key checks of
-- workflow starts only key-share the row, so they are not blocked); no row back
-- means the namespace is gone.
SELECT true FROM namespaces WHERE name = :namespace AND status = 'active' FOR NO KEY UPDATE;

-- name: create_search_attribute
-- Register a name unless it exists or the namespace already has :max_count; say
-- what happened: the created type, else the existing one's type, and the count before.
WITH taken AS (
    SELECT count(*) AS n FROM search_attribute_definitions WHERE namespace = :namespace
), created AS (
    INSERT INTO search_attribute_definitions (namespace, name, type)
    SELECT :namespace, :name, :type FROM taken WHERE taken.n < :max_count
    ON CONFLICT (namespace, name) DO NOTHING
    RETURNING type
)
SELECT (SELECT type FROM created) AS created_type,
       (SELECT type FROM search_attribute_definitions
         WHERE namespace = :namespace AND name = :name) AS existing_type,
       (SELECT n FROM taken) AS taken;

-- name: delete_search_attribute
-- Remove a custom search attribute; no row back means it was not registered.
DELETE FROM search_attribute_definitions
 WHERE namespace = :namespace AND name = :name
RETURNING name;
