-- Fenced worker deregistration (POST /api/worker/registrations/{worker_id}/deregister,
-- docs/task-queues.md "Fenced deregistration").
--
-- Every successful POST /api/worker/register starts a new incarnation of the worker id:
-- a random 32-hex token, answered as registration_token and kept on the registration
-- row. A fenced deregistration names its token, so a process that registered before a
-- newer one of the same worker id cannot remove the newer registration. The
-- incarnation rows are the receipts: 'active' while bound to the registration,
-- 'superseded' once a later registration (or an unfenced deregistration) replaced it,
-- 'deregistered' once its fenced deregistration committed, which a repeated request
-- replays for the receipt window (600 s) after finished_at. Terminal receipts older
-- than that are pruned by the retention loop.
--
-- Additive only: a new nullable column (the previous release neither reads nor writes
-- it) and a new table.
ALTER TABLE worker_registrations ADD COLUMN registration_token text;

CREATE TABLE worker_registration_incarnations (
    token                          text        PRIMARY KEY,
    namespace                      text        NOT NULL
                                               REFERENCES namespaces (name) ON DELETE CASCADE,
    worker_id                      text        NOT NULL,
    status                         text        NOT NULL DEFAULT 'active'
                                               CHECK (status IN ('active', 'superseded',
                                                                 'deregistered')),
    recovered_workflow_task_count  integer,
    recovered_activity_task_count  integer,
    -- When the incarnation stopped being active (superseded or deregistered).
    finished_at                    timestamptz,
    created_at                     timestamptz NOT NULL DEFAULT now(),
    updated_at                     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX worker_registration_incarnations_active_idx
    ON worker_registration_incarnations (namespace, worker_id) WHERE status = 'active';
CREATE INDEX worker_registration_incarnations_finished_idx
    ON worker_registration_incarnations (finished_at) WHERE finished_at IS NOT NULL;
COMMENT ON TABLE worker_registration_incarnations IS
    'One row per successful worker registration: its fencing token and deregistration receipt.';
