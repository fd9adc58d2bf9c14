-- Workflow instances only in live namespaces (DELETE /api/namespaces/{ns}).
--
-- A namespace is soft-deleted (status = 'deleted', data-model.md §1.1), so the
-- row its instances reference stays, and the plain foreign key from
-- workflow_instances would still accept a start that reached the store after the
-- deletion: one that passed the namespace gate just before it, or on a node whose
-- namespace cache has not expired yet. This composite key makes the database
-- refuse it: an instance also references (name, 'active'), which a deleted
-- namespace no longer has. The deletion itself locks the namespace row FOR UPDATE,
-- so a start waiting on that row re-checks it after the commit and fails
-- (foreign_key_violation on workflow_instances_live_namespace_fkey, answered as
-- 404 namespace_not_found). It also means a namespace cannot be marked deleted
-- while it still has instances: the deletion removes them first.
--
-- namespace_status is a constant column: adding it with a default does not
-- rewrite the table; the CHECK and the key are validated once, here.

ALTER TABLE namespaces
    ADD CONSTRAINT namespaces_name_status_key UNIQUE (name, status);

ALTER TABLE workflow_instances
    ADD COLUMN namespace_status text NOT NULL DEFAULT 'active'
        CONSTRAINT workflow_instances_namespace_status_check CHECK (namespace_status = 'active');

ALTER TABLE workflow_instances
    ADD CONSTRAINT workflow_instances_live_namespace_fkey
        FOREIGN KEY (namespace, namespace_status) REFERENCES namespaces (name, status);

COMMENT ON COLUMN workflow_instances.namespace_status IS
    'Always active: with workflow_instances_live_namespace_fkey, instances exist only in live namespaces.';
