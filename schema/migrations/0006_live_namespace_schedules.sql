-- Schedules only in live namespaces, as 0004 did for workflow instances.
--
-- A schedule created through a node whose namespace cache still lists a namespace
-- deleted on another node (the cache keeps a positive answer for 10 s) would
-- otherwise be stored in the deleted namespace and fire there. Schedules, unlike
-- instances, stay after their namespace is deleted (soft-deleted, their history
-- kept), so their key follows the namespace's status (ON UPDATE CASCADE) instead
-- of being pinned to 'active': a schedule written now defaults to 'active' and so
-- needs a live namespace; deleting the namespace turns its (already deleted)
-- schedules' copy to 'deleted'. The deletion locks the namespace row FOR UPDATE, so
-- a create waiting on it re-checks after the commit and fails
-- (foreign_key_violation on schedules_live_namespace_fkey: 404 namespace_not_found).

ALTER TABLE schedules
    ADD COLUMN namespace_status text NOT NULL DEFAULT 'active';

UPDATE schedules s
   SET namespace_status = n.status
  FROM namespaces n
 WHERE n.name = s.namespace AND n.status <> 'active';

ALTER TABLE schedules
    ADD CONSTRAINT schedules_live_namespace_fkey
        FOREIGN KEY (namespace, namespace_status) REFERENCES namespaces (name, status)
        ON UPDATE CASCADE;

COMMENT ON COLUMN schedules.namespace_status IS
    'Its namespace''s status (schedules_live_namespace_fkey): new schedules need an active one.';
