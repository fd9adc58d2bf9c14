-- dwtrio initial schema.
--
-- Forward-only. The migration runner wraps this file in its own transaction and
-- records it in dwtrio_schema_migrations, so there is no BEGIN/COMMIT here and no
-- bookkeeping table. The default namespace row is seeded by bootstrap, not here.
-- Needs no extensions; applies on PostgreSQL 15 and 18.
--
-- Conventions
--   * Ids are text. Run, task, event, command, attempt, timer, update and failure
--     ids are lowercase ULIDs made by the application. workflow_id is chosen by the
--     caller (or is a ULID) and is global across namespaces.
--   * Times are timestamptz (microseconds, UTC on the wire). The application sets
--     updated_at explicitly; there are no triggers.
--   * Structured data (envelopes, metadata, policies) is jsonb. Encoded payload
--     blobs (base64 Avro: arguments, output, result) stay text, exactly as received.
--   * Lists of plain names that queries filter on (supported workflow/activity
--     types, capabilities) are text[] so `x = ANY(col)` works without jsonb casts.
--   * Work items that are claimed (workflow_tasks, timers, query_tasks) have a
--     `state` column; entities whose lifecycle is reported on the wire have `status`.
--   * Namespace foreign keys: configuration rows (registrations, search attribute
--     definitions, build-id rollouts) cascade with the namespace; workflow data and
--     schedules restrict, so a namespace cannot be hard-deleted while it still owns
--     workflows (the wire only ever soft-deletes: status = 'deleted').
--   * Everything under a run cascades from workflow_runs, so retention pruning is a
--     single DELETE FROM workflow_runs WHERE id = ... .
--   * High-volume tables (workflow_runs, workflow_tasks, history_events) carry a
--     copy of the namespace where they need it but no foreign key to namespaces,
--     so hot inserts never share-lock the one namespace row.


-- ---------------------------------------------------------------------------
-- Namespaces
-- ---------------------------------------------------------------------------

CREATE TABLE namespaces (
    name                      text        PRIMARY KEY
                                          CHECK (name ~ '^[a-z0-9._-]{1,128}$'),
    description               text        CHECK (char_length(description) <= 1000),
    retention_days            integer     NOT NULL DEFAULT 30
                                          CHECK (retention_days BETWEEN 1 AND 365),
    status                    text        NOT NULL DEFAULT 'active'
                                          CHECK (status IN ('active', 'deleted')),
    external_payload_storage  jsonb,
    deleted_at                timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE namespaces IS
    'Tenancy unit. name is stored lowercased; soft-deleted by status = deleted.';


-- ---------------------------------------------------------------------------
-- Worker fleet
-- ---------------------------------------------------------------------------

CREATE TABLE worker_registrations (
    namespace                        text        NOT NULL
                                                 REFERENCES namespaces (name) ON DELETE CASCADE,
    worker_id                        text        NOT NULL,
    task_queue                       text        NOT NULL,
    runtime                          text        NOT NULL DEFAULT 'external',
    sdk_version                      text,
    -- '' is the unversioned cohort (null on the wire), the same encoding as
    -- build_id_rollouts.build_id so the two join directly.
    build_id                         text        NOT NULL DEFAULT '',
    supported_workflow_types         text[]      NOT NULL DEFAULT '{}',  -- empty = any
    supported_activity_types         text[]      NOT NULL DEFAULT '{}',
    workflow_definition_fingerprints jsonb       NOT NULL DEFAULT '{}',  -- type -> fingerprint
    workflow_command_contracts       jsonb,
    capabilities                     text[]      NOT NULL DEFAULT '{}',
    capability_manifest              jsonb,
    task_slots                       jsonb,
    process_metrics                  jsonb,
    max_concurrent_workflow_tasks    integer     NOT NULL DEFAULT 100,
    max_concurrent_activity_tasks    integer     NOT NULL DEFAULT 100,
    max_concurrent_worker_sessions   integer,
    heartbeat_interval_seconds       integer,
    -- 'stale' is never stored: it is derived from last_heartbeat_at at read time.
    status                           text        NOT NULL DEFAULT 'active'
                                                 CHECK (status IN ('active', 'draining', 'deregistered')),
    last_heartbeat_at                timestamptz,
    deregistered_at                  timestamptz,
    created_at                       timestamptz NOT NULL DEFAULT now(),  -- registered_at on the wire
    updated_at                       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, worker_id)
);
CREATE INDEX worker_registrations_queue_idx
    ON worker_registrations (namespace, task_queue, status);
COMMENT ON TABLE worker_registrations IS
    'One row per (namespace, worker_id): what a worker polls, supports and last reported.';


CREATE TABLE search_attribute_definitions (
    namespace   text        NOT NULL REFERENCES namespaces (name) ON DELETE CASCADE,
    name        text        NOT NULL
                            CHECK (name ~ '^[A-Za-z][A-Za-z0-9_]*$' AND char_length(name) <= 128),
    type        text        NOT NULL
                            CHECK (type IN ('keyword', 'text', 'int', 'double', 'bool',
                                            'datetime', 'keyword_list')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, name)
);
COMMENT ON TABLE search_attribute_definitions IS
    'Custom (registered) search attributes per namespace. System attributes are code constants.';


CREATE TABLE build_id_rollouts (
    namespace       text        NOT NULL REFERENCES namespaces (name) ON DELETE CASCADE,
    task_queue      text        NOT NULL,
    build_id        text        NOT NULL DEFAULT '',  -- '' = unversioned cohort
    drain_intent    text        NOT NULL DEFAULT 'active'
                                CHECK (drain_intent IN ('active', 'draining')),
    drained_at      timestamptz,
    promoted_at     timestamptz,
    rolled_back_at  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, task_queue, build_id)
);
COMMENT ON TABLE build_id_rollouts IS
    'Operator drain/resume (and later promote) intent per (namespace, task queue, build id).';


-- ---------------------------------------------------------------------------
-- Workflow instances and runs
-- ---------------------------------------------------------------------------

CREATE TABLE workflow_instances (
    workflow_id                text        PRIMARY KEY
                                           CHECK (workflow_id ~ '^[A-Za-z0-9._:-]{1,191}$'),
    namespace                  text        NOT NULL
                                           REFERENCES namespaces (name) ON DELETE RESTRICT,
    -- Type of the first run. A start with another type is refused; a
    -- continue-as-new may change the type of later runs (see workflow_runs).
    workflow_type              text        NOT NULL,
    business_key               text,
    execution_timeout_seconds  integer     CHECK (execution_timeout_seconds >= 1),
    execution_deadline_at      timestamptz,  -- spans every run of the instance
    -- Points at the newest run. Deferred so the instance and its first run can be
    -- inserted in either order inside the start transaction.
    current_run_id             text,
    run_count                  integer     NOT NULL DEFAULT 0,  -- = highest run_number
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    -- Target of the composite foreign key from workflow_runs, which keeps a run's
    -- namespace equal to its instance's.
    UNIQUE (workflow_id, namespace)
);
CREATE INDEX workflow_instances_namespace_idx ON workflow_instances (namespace);
CREATE INDEX workflow_instances_current_run_idx ON workflow_instances (current_run_id);
COMMENT ON TABLE workflow_instances IS
    'One row per workflow_id (globally unique across namespaces); lock it for start and continue-as-new.';


-- workflow_runs also serves as the list/visibility projection that the reference
-- keeps in a separate run-summaries table: status_bucket, the list ordering key
-- (started_at, id), search attributes, memo, wait info and archive stamps all
-- live here. The remaining summary fields (next-task hints, liveness, history
-- counts) are derived at read time from workflow_tasks / history, and
-- is_current_run is workflow_instances.current_run_id = workflow_runs.id.
-- Columns that change on every workflow task (status, counters, wait info) are
-- deliberately kept out of every index and index predicate, so those updates
-- can be HOT; status_bucket only changes when the run closes.
CREATE TABLE workflow_runs (
    id                     text        PRIMARY KEY,  -- run_id
    workflow_id            text        NOT NULL,
    namespace              text        NOT NULL,
    run_number             integer     NOT NULL CHECK (run_number >= 1),
    workflow_type          text        NOT NULL,
    business_key           text,
    task_queue             text        NOT NULL DEFAULT 'default',
    compatibility          text,       -- build marker that pins routing
    status                 text        NOT NULL DEFAULT 'pending'
                                       CHECK (status IN ('pending', 'running', 'waiting', 'completed',
                                                         'failed', 'cancelled', 'terminated')),
    status_bucket          text        NOT NULL GENERATED ALWAYS AS (
                               CASE
                                   WHEN status IN ('pending', 'running', 'waiting') THEN 'running'
                                   WHEN status = 'completed' THEN 'completed'
                                   ELSE 'failed'
                               END) STORED,
    closed_reason          text        CHECK (closed_reason IN ('completed', 'failed', 'cancelled',
                                                                'terminated', 'timed_out', 'continued')),
    payload_codec          text,       -- codec of arguments and output ('avro')
    arguments              text,       -- encoded start input blob
    output                 text,       -- encoded result blob
    memo                   jsonb       NOT NULL DEFAULT '{}',
    search_attributes      jsonb       NOT NULL DEFAULT '{}',
    visibility_labels      jsonb,
    run_timeout_seconds    integer     CHECK (run_timeout_seconds >= 1),
    execution_deadline_at  timestamptz,  -- copied from the instance
    run_deadline_at        timestamptz,
    -- Earliest deadline, for the run-timeout loop.
    deadline_at            timestamptz GENERATED ALWAYS AS (
                               LEAST(execution_deadline_at, run_deadline_at)) STORED,
    -- Counters, all allocated under the run row lock.
    last_history_sequence  bigint      NOT NULL DEFAULT 0,  -- history_events.sequence
    last_step_sequence     integer     NOT NULL DEFAULT 0,  -- payload.sequence of workflow steps
    last_command_sequence  integer     NOT NULL DEFAULT 0,  -- workflow_commands.command_sequence
    history_size_bytes     bigint      NOT NULL DEFAULT 0,
    -- A wake arrived while a workflow task was leased; create the next task when
    -- that one completes.
    wake_pending           boolean     NOT NULL DEFAULT false,
    -- The open condition wait (at most one per run). open_wait holds the details
    -- needed to write ConditionWaitSatisfied: condition_key, fingerprint,
    -- timeout_seconds, ...
    open_wait_id           text,
    open_wait_sequence     integer,
    open_wait_timer_id     text,
    open_wait              jsonb,
    -- What describe shows as the current wait.
    wait_kind              text,
    wait_reason            text,
    wait_started_at        timestamptz,
    wait_deadline_at       timestamptz,
    continued_from_run_id  text        REFERENCES workflow_runs (id) ON DELETE SET NULL,
    started_at             timestamptz NOT NULL DEFAULT now(),  -- also the list sort key
    closed_at              timestamptz,
    last_progress_at       timestamptz,
    archived_at            timestamptz,
    archive_command_id     text,
    archive_reason         text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workflow_id, run_number),
    FOREIGN KEY (workflow_id, namespace)
        REFERENCES workflow_instances (workflow_id, namespace) ON DELETE CASCADE,
    CONSTRAINT workflow_runs_closed_at_matches_status
        CHECK ((closed_at IS NULL) = (status IN ('pending', 'running', 'waiting')))
) WITH (fillfactor = 85);

-- GET /workflows: newest first, optionally by status bucket or type.
CREATE INDEX workflow_runs_list_idx
    ON workflow_runs (namespace, started_at DESC, id DESC);
CREATE INDEX workflow_runs_list_bucket_idx
    ON workflow_runs (namespace, status_bucket, started_at DESC, id DESC);
CREATE INDEX workflow_runs_list_type_idx
    ON workflow_runs (namespace, workflow_type, started_at DESC, id DESC);
-- Equality predicates on search attributes: search_attributes @> '{"Key": "v"}'.
CREATE INDEX workflow_runs_search_attributes_idx
    ON workflow_runs USING gin (search_attributes jsonb_path_ops);
-- Run/execution timeout loop: WHERE status_bucket = 'running' AND deadline_at <= now().
CREATE INDEX workflow_runs_deadline_idx
    ON workflow_runs (deadline_at)
    WHERE status_bucket = 'running' AND deadline_at IS NOT NULL;
-- Retention scan: closed, not archived, closed_at older than the namespace window.
CREATE INDEX workflow_runs_retention_idx
    ON workflow_runs (namespace, closed_at)
    WHERE closed_at IS NOT NULL AND archived_at IS NULL;
CREATE INDEX workflow_runs_continued_from_idx
    ON workflow_runs (continued_from_run_id)
    WHERE continued_from_run_id IS NOT NULL;
COMMENT ON TABLE workflow_runs IS
    'One row per run (continue-as-new adds a row); also the list/visibility projection.';

ALTER TABLE workflow_instances
    ADD CONSTRAINT workflow_instances_current_run_fk
    FOREIGN KEY (current_run_id) REFERENCES workflow_runs (id)
    ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED;


-- ---------------------------------------------------------------------------
-- History
-- ---------------------------------------------------------------------------

CREATE TABLE history_events (
    id                   text        PRIMARY KEY,
    run_id               text        NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    sequence             bigint      NOT NULL CHECK (sequence >= 1),  -- 1-based, gap-free per run
    event_type           text        NOT NULL,
    payload              jsonb       NOT NULL DEFAULT '{}',
    workflow_task_id     text,       -- task whose completion produced the event
    workflow_command_id  text,       -- control-plane command that produced it
    recorded_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, sequence)
);
COMMENT ON TABLE history_events IS
    'Append-only event log per run; sequence comes from workflow_runs.last_history_sequence.';


-- ---------------------------------------------------------------------------
-- Control-plane commands, signals, updates
-- ---------------------------------------------------------------------------

CREATE TABLE workflow_commands (
    id                    text        PRIMARY KEY,  -- command_id
    namespace             text        NOT NULL,
    workflow_id           text        NOT NULL
                                      REFERENCES workflow_instances (workflow_id) ON DELETE CASCADE,
    run_id                text        REFERENCES workflow_runs (id) ON DELETE CASCADE,
    requested_run_id      text,       -- run named in the path, for run-targeted routes
    resolved_run_id       text,       -- run the command actually acted on
    command_type          text        NOT NULL
                                      CHECK (command_type IN ('start', 'signal', 'update', 'repair',
                                                              'cancel', 'terminate', 'archive')),
    target_scope          text        NOT NULL DEFAULT 'instance'
                                      CHECK (target_scope IN ('instance', 'run')),
    source                text        NOT NULL DEFAULT 'control_plane',  -- command_source
    context               jsonb       NOT NULL DEFAULT '{}',             -- caller attribution
    status                text        NOT NULL
                                      CHECK (status IN ('accepted', 'rejected')),  -- command_status
    outcome               text,       -- CommandOutcome value
    rejection_reason      text,
    workflow_type         text,
    payload_codec         text,
    payload               text,       -- encoded input blob, if any
    command_sequence      integer,    -- per run, from workflow_runs.last_command_sequence
    request_id            text,
    response              jsonb,      -- receipt returned, replayed for a retained request_id
    created_at            timestamptz NOT NULL DEFAULT now(),
    accepted_at           timestamptz,
    applied_at            timestamptz,
    rejected_at           timestamptz
);
-- Idempotent receipts for signal/update/... retries carrying the same request_id
-- (null request ids never collide). Also serves lookups by workflow_id.
CREATE UNIQUE INDEX workflow_commands_request_id_key
    ON workflow_commands (workflow_id, command_type, request_id);
CREATE INDEX workflow_commands_run_idx ON workflow_commands (run_id, created_at);
COMMENT ON TABLE workflow_commands IS
    'Log of control-plane commands (start, signal, update, cancel, ...) and their outcome.';


CREATE TABLE workflow_signals (
    id                 text        PRIMARY KEY,  -- signal_id
    command_id         text        NOT NULL UNIQUE
                                   REFERENCES workflow_commands (id) ON DELETE CASCADE,
    workflow_id        text        NOT NULL,
    run_id             text        NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    signal_name        text        NOT NULL,
    status             text        NOT NULL DEFAULT 'received'
                                   CHECK (status IN ('received', 'applied', 'rejected')),
    outcome            text,
    payload_codec      text,
    arguments          text,       -- encoded argument list blob
    workflow_sequence  integer,    -- open condition wait at receipt, if any
    validation_errors  jsonb,
    rejection_reason   text,
    received_at        timestamptz NOT NULL DEFAULT now(),
    applied_at         timestamptz,
    rejected_at        timestamptz,
    closed_at          timestamptz
);
CREATE INDEX workflow_signals_run_idx ON workflow_signals (run_id, received_at);
COMMENT ON TABLE workflow_signals IS 'One row per signal command (history export "signals").';


CREATE TABLE workflow_updates (
    id                 text        PRIMARY KEY,  -- update_id
    command_id         text        NOT NULL UNIQUE
                                   REFERENCES workflow_commands (id) ON DELETE CASCADE,
    workflow_id        text        NOT NULL,
    run_id             text        NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    update_name        text        NOT NULL,
    -- Callers waiting with wait_for=completed wait until status leaves 'accepted'.
    status             text        NOT NULL DEFAULT 'accepted'
                                   CHECK (status IN ('accepted', 'completed', 'failed', 'rejected')),
    outcome            text,
    payload_codec      text,
    arguments          text,       -- encoded argument list blob
    result             text,       -- encoded result blob (complete_update)
    workflow_sequence  integer,    -- open condition wait when applied, if any
    validation_errors  jsonb,
    rejection_reason   text,
    failure_id         text,
    failure_message    text,
    failure            jsonb,      -- fail_update details (exception_type, class, non_retryable)
    accepted_at        timestamptz NOT NULL DEFAULT now(),
    applied_at         timestamptz,
    rejected_at        timestamptz,
    closed_at          timestamptz
);
CREATE INDEX workflow_updates_run_idx ON workflow_updates (run_id, accepted_at);
-- Accepted updates still waiting for (or being served by) an update task, in order.
CREATE INDEX workflow_updates_open_idx
    ON workflow_updates (run_id, accepted_at, id)
    WHERE status = 'accepted';
COMMENT ON TABLE workflow_updates IS
    'One row per update command; its update task is the workflow_tasks row with workflow_update_id = id.';


-- ---------------------------------------------------------------------------
-- Activities
-- ---------------------------------------------------------------------------

CREATE TABLE activity_executions (
    id                             text        PRIMARY KEY,  -- activity_execution_id
    run_id                         text        NOT NULL
                                               REFERENCES workflow_runs (id) ON DELETE CASCADE,
    workflow_id                    text        NOT NULL,
    namespace                      text        NOT NULL,
    sequence                       integer     NOT NULL,  -- step sequence of schedule_activity
    activity_type                  text        NOT NULL,
    task_queue                     text        NOT NULL,
    status                         text        NOT NULL DEFAULT 'pending'
                                               CHECK (status IN ('pending', 'running', 'completed',
                                                                 'failed', 'timed_out', 'cancelled')),
    payload_codec                  text,
    arguments                      text,       -- encoded argument list blob
    result                         text,       -- encoded result blob
    failure                        jsonb,      -- terminal failure / timeout details
    retry_policy                   jsonb,      -- snapshot as commanded (null = one attempt)
    options                        jsonb,      -- timeouts etc. as commanded
    parallel                       jsonb,      -- the six parallel_group_* fields, verbatim
    attempt_count                  integer     NOT NULL DEFAULT 0,
    current_attempt_id             text,
    -- Timeout enforcement. The application clears schedule_to_start once an
    -- attempt starts and resets start_to_close / heartbeat per attempt.
    schedule_to_start_deadline_at  timestamptz,
    start_to_close_deadline_at     timestamptz,
    schedule_to_close_deadline_at  timestamptz,
    heartbeat_deadline_at          timestamptz,
    next_deadline_at               timestamptz GENERATED ALWAYS AS (
                                       LEAST(schedule_to_start_deadline_at, start_to_close_deadline_at,
                                             schedule_to_close_deadline_at, heartbeat_deadline_at)) STORED,
    heartbeat_details              jsonb,      -- last progress reported by a heartbeat
    cancel_requested               boolean     NOT NULL DEFAULT false,
    scheduled_at                   timestamptz NOT NULL DEFAULT now(),
    started_at                     timestamptz,
    last_heartbeat_at              timestamptz,
    closed_at                      timestamptz,
    created_at                     timestamptz NOT NULL DEFAULT now(),
    updated_at                     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, sequence)
);
-- Activity-timeout loop: WHERE status IN ('pending','running') AND next_deadline_at <= now().
CREATE INDEX activity_executions_deadline_idx
    ON activity_executions (next_deadline_at)
    WHERE status IN ('pending', 'running') AND next_deadline_at IS NOT NULL;
COMMENT ON TABLE activity_executions IS
    'One row per scheduled activity (schedule_activity command); survives retries.';


CREATE TABLE activity_attempts (
    id                     text        PRIMARY KEY,  -- activity_attempt_id
    activity_execution_id  text        NOT NULL
                                       REFERENCES activity_executions (id) ON DELETE CASCADE,
    run_id                 text        NOT NULL,
    task_id                text        NOT NULL,  -- the workflow_tasks row that was claimed
    attempt_number         integer     NOT NULL CHECK (attempt_number >= 1),
    status                 text        NOT NULL DEFAULT 'running'
                                       CHECK (status IN ('running', 'completed', 'failed',
                                                         'timed_out', 'cancelled', 'expired')),
    lease_owner            text        NOT NULL,  -- worker that claimed this attempt
    failure                jsonb,
    started_at             timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at      timestamptz,
    closed_at              timestamptz,
    UNIQUE (activity_execution_id, attempt_number)
);
COMMENT ON TABLE activity_attempts IS
    'One row per claimed activity attempt; the live lease is on its workflow_tasks row.';


-- ---------------------------------------------------------------------------
-- Dispatch: workflow and activity tasks
-- ---------------------------------------------------------------------------

-- One dispatch table for both kinds, long-polled per (namespace, task_queue, kind).
-- The lease lives on the row. A workflow task is replayed by a worker; an
-- activity task carries one activity execution through all of its attempts (the
-- row goes back to 'ready' with a later available_at for a retry, and each claim
-- creates an activity_attempts row). Timers are not tasks: they fire from the
-- timers table.
CREATE TABLE workflow_tasks (
    id                     text        PRIMARY KEY,  -- task_id on the wire
    namespace              text        NOT NULL,
    task_queue             text        NOT NULL,
    kind                   text        NOT NULL CHECK (kind IN ('workflow', 'activity')),
    run_id                 text        NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    workflow_id            text        NOT NULL,
    workflow_type          text        NOT NULL,  -- routing for workflow tasks
    activity_type          text,                  -- routing for activity tasks
    activity_execution_id  text        REFERENCES activity_executions (id) ON DELETE CASCADE,
    activity_attempt_id    text,       -- current attempt of an activity task
    -- Set on update tasks, and kept on every re-offer of that task.
    workflow_update_id     text        REFERENCES workflow_updates (id) ON DELETE CASCADE,
    compatibility          text,       -- claimant must be compatible with this build marker
    state                  text        NOT NULL DEFAULT 'ready'
                                       CHECK (state IN ('ready', 'leased', 'completed', 'failed',
                                                        'cancelled')),
    available_at           timestamptz NOT NULL DEFAULT now(),  -- not claimable before
    lease_owner            text,       -- worker_id
    leased_at              timestamptz,
    lease_expires_at       timestamptz,
    -- Workflow tasks: workflow_task_attempt (first lease = 1). Activity tasks:
    -- attempt_number of the current attempt.
    attempt                integer     NOT NULL DEFAULT 0,
    poll_request_id        text,       -- poll that leased it, for poll retries
    payload                jsonb       NOT NULL DEFAULT '{}',
    -- Receipt of the accepted completion, for idempotent re-sends.
    receipt                jsonb,
    failure                jsonb,      -- last fail / dispatch error, for diagnostics
    failure_count          integer     NOT NULL DEFAULT 0,
    repair_count           integer     NOT NULL DEFAULT 0,
    completed_at           timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_tasks_activity_fields
        CHECK (CASE WHEN kind = 'activity'
                    THEN activity_execution_id IS NOT NULL AND activity_type IS NOT NULL
                         AND workflow_update_id IS NULL
                    ELSE activity_execution_id IS NULL AND activity_type IS NULL
                         AND activity_attempt_id IS NULL END),
    CONSTRAINT workflow_tasks_lease_set
        CHECK (state <> 'leased' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);
-- Claim: WHERE namespace = $1 AND task_queue = $2 AND kind = $3 AND state = 'ready'
--        AND available_at <= now() ORDER BY available_at, id LIMIT n FOR UPDATE SKIP LOCKED.
CREATE INDEX workflow_tasks_claim_idx
    ON workflow_tasks (namespace, task_queue, kind, available_at, id)
    WHERE state = 'ready';
-- Lease-expiry repair: WHERE state = 'leased' AND lease_expires_at <= now().
CREATE INDEX workflow_tasks_lease_expiry_idx
    ON workflow_tasks (lease_expires_at)
    WHERE state = 'leased';
-- Active-lease counts for admission and the task-queue current_leases view.
CREATE INDEX workflow_tasks_leased_queue_idx
    ON workflow_tasks (namespace, task_queue, kind, lease_expires_at)
    WHERE state = 'leased';
-- Worker deregistration (release its leases) and poll_request_id retries.
CREATE INDEX workflow_tasks_lease_owner_idx
    ON workflow_tasks (lease_owner, poll_request_id)
    WHERE state = 'leased';
-- At most one open workflow task per run.
CREATE UNIQUE INDEX workflow_tasks_one_open_per_run_key
    ON workflow_tasks (run_id)
    WHERE kind = 'workflow' AND state IN ('ready', 'leased');
CREATE INDEX workflow_tasks_run_idx ON workflow_tasks (run_id, created_at);
-- One task row per activity execution.
CREATE UNIQUE INDEX workflow_tasks_activity_execution_key
    ON workflow_tasks (activity_execution_id)
    WHERE activity_execution_id IS NOT NULL;
CREATE INDEX workflow_tasks_update_idx
    ON workflow_tasks (workflow_update_id)
    WHERE workflow_update_id IS NOT NULL;
COMMENT ON TABLE workflow_tasks IS
    'Dispatch queue for workflow tasks and activity tasks; the lease lives on the row.';


-- ---------------------------------------------------------------------------
-- Timers
-- ---------------------------------------------------------------------------

CREATE TABLE timers (
    id                 text        PRIMARY KEY,  -- timer_id
    run_id             text        NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    -- Step sequence: a start_timer's own step, or the step of the condition wait
    -- whose timeout this is.
    sequence           integer     NOT NULL,
    timer_kind         text        NOT NULL DEFAULT 'timer'
                                   CHECK (timer_kind IN ('timer', 'condition_timeout')),
    condition_wait_id  text,
    delay_seconds      bigint      NOT NULL CHECK (delay_seconds >= 0),
    fire_at            timestamptz NOT NULL,
    state              text        NOT NULL DEFAULT 'pending'
                                   CHECK (state IN ('pending', 'fired', 'cancelled')),
    parallel           jsonb,      -- the six parallel_group_* fields, verbatim
    fired_at           timestamptz,
    cancelled_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, sequence),
    CONSTRAINT timers_condition_wait_set
        CHECK (timer_kind = 'timer' OR condition_wait_id IS NOT NULL)
);
-- Timer loop: WHERE state = 'pending' AND fire_at <= now() ORDER BY fire_at.
CREATE INDEX timers_due_idx ON timers (fire_at) WHERE state = 'pending';
COMMENT ON TABLE timers IS
    'Durable timers (start_timer and condition-wait timeouts); fired by the server timer loop.';


-- ---------------------------------------------------------------------------
-- Children, failures
-- ---------------------------------------------------------------------------

-- Parent/child links, one row per start_child_workflow. Continue-as-new links are
-- not stored separately: they are workflow_runs.continued_from_run_id plus
-- run_number. Child ids are plain text (no foreign key) so a pruned child does
-- not take the parent's record with it.
CREATE TABLE child_workflow_calls (
    id                   text        PRIMARY KEY,  -- child_call_id
    parent_run_id        text        NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    parent_workflow_id   text        NOT NULL,
    sequence             integer     NOT NULL,  -- parent step sequence
    child_workflow_id    text        NOT NULL,
    child_run_id         text,       -- follows the child's continue-as-new / retry runs
    child_workflow_type  text        NOT NULL,
    task_queue           text        NOT NULL,
    parent_close_policy  text,       -- as sent; null means abandon
    cancellation_policy  text,       -- as sent
    retry_policy         jsonb,
    timeout_policy       jsonb,
    parallel             jsonb,
    status               text        NOT NULL DEFAULT 'scheduled'
                                     CHECK (status IN ('scheduled', 'started', 'completed', 'failed',
                                                       'cancelled', 'terminated', 'abandoned')),
    closed_reason        text,
    arguments            text,
    metadata             jsonb,
    scheduled_at         timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    closed_at            timestamptz,
    UNIQUE (parent_run_id, sequence)
);
-- A closing child finds its parent call.
CREATE INDEX child_workflow_calls_child_idx ON child_workflow_calls (child_workflow_id);
COMMENT ON TABLE child_workflow_calls IS
    'Parent->child links: one row per start_child_workflow, tracking the child run and outcome.';


CREATE TABLE workflow_failures (
    id                text        PRIMARY KEY,  -- failure_id
    run_id            text        NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    source_kind       text        NOT NULL,  -- workflow_run, activity, child, workflow_task, ...
    source_id         text,
    propagation_kind  text,
    failure_category  text        NOT NULL
                                  CHECK (failure_category IN ('application', 'cancelled', 'terminated',
                                                              'timeout', 'activity', 'child_workflow',
                                                              'task_failure', 'internal',
                                                              'structural_limit')),
    non_retryable     boolean     NOT NULL DEFAULT false,
    handled           boolean     NOT NULL DEFAULT false,
    exception_type    text,
    exception_class   text,
    message           text,
    file              text,
    line              integer,
    trace_preview     text,
    details           jsonb,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflow_failures_run_idx ON workflow_failures (run_id, created_at);
COMMENT ON TABLE workflow_failures IS
    'Recorded failures per run (debug recent_failures, history export failures).';


-- ---------------------------------------------------------------------------
-- Ephemeral coordination (UNLOGGED: nothing here must survive a crash)
-- ---------------------------------------------------------------------------

-- Worker-routed queries. Never history; rows live until expires_at (task TTL).
CREATE UNLOGGED TABLE query_tasks (
    id                  text        PRIMARY KEY,  -- query_task_id
    namespace           text        NOT NULL,
    task_queue          text        NOT NULL,
    workflow_id         text        NOT NULL,
    run_id              text        NOT NULL,
    workflow_type       text        NOT NULL,
    query_name          text        NOT NULL,
    query_arguments     jsonb,      -- envelope as received
    state               text        NOT NULL DEFAULT 'pending'
                                    CHECK (state IN ('pending', 'leased', 'completed', 'failed',
                                                     'timed_out')),
    lease_owner         text,
    attempt             integer     NOT NULL DEFAULT 0,  -- query_task_attempt
    leased_at           timestamptz,
    lease_expires_at    timestamptz,
    poll_request_id     text,
    result              jsonb,
    result_envelope     jsonb,
    failure             jsonb,      -- {reason, message, http_status, ...}
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    CONSTRAINT query_tasks_lease_set
        CHECK (state <> 'leased' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);
CREATE INDEX query_tasks_claim_idx
    ON query_tasks (namespace, task_queue, created_at, id)
    WHERE state = 'pending';
CREATE INDEX query_tasks_expiry_idx ON query_tasks (expires_at);
COMMENT ON TABLE query_tasks IS 'Ephemeral worker-routed query tasks (TTL via expires_at).';


-- Per-minute dispatch counters for task-queue admission caps. scope_key is e.g.
-- 'queue:<ns>:<tq>:<kind>', 'namespace:<ns>:<kind>' or 'group:<ns>:<group>:<kind>';
-- minute is truncated to the UTC minute. Rows older than two minutes are junk.
CREATE UNLOGGED TABLE admission_dispatch_counters (
    scope_key       text        NOT NULL,
    minute          timestamptz NOT NULL,
    dispatch_count  integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (scope_key, minute)
);
COMMENT ON TABLE admission_dispatch_counters IS
    'Short-lived per-minute claim counters for server-side admission caps.';


-- ---------------------------------------------------------------------------
-- Schedules
-- ---------------------------------------------------------------------------

CREATE TABLE schedules (
    id                     text        PRIMARY KEY,  -- internal ULID; history hangs off it
    namespace              text        NOT NULL
                                       REFERENCES namespaces (name) ON DELETE RESTRICT,
    schedule_id            text        NOT NULL CHECK (char_length(schedule_id) BETWEEN 1 AND 255),
    spec                   jsonb       NOT NULL,
    action                 jsonb       NOT NULL,
    status                 text        NOT NULL DEFAULT 'active'
                                       CHECK (status IN ('active', 'paused', 'deleted')),
    overlap_policy         text        NOT NULL DEFAULT 'skip'
                                       CHECK (overlap_policy IN ('skip', 'buffer_one', 'buffer_all',
                                                                 'cancel_other', 'terminate_other',
                                                                 'allow_all')),
    note                   text,
    memo                   jsonb,
    search_attributes      jsonb,
    visibility_labels      jsonb,
    jitter_seconds         integer     NOT NULL DEFAULT 0 CHECK (jitter_seconds BETWEEN 0 AND 3600),
    max_runs               bigint      CHECK (max_runs >= 1),
    remaining_actions      bigint      CHECK (remaining_actions >= 0),
    fires_count            bigint      NOT NULL DEFAULT 0,
    failures_count         bigint      NOT NULL DEFAULT 0,
    skipped_trigger_count  bigint      NOT NULL DEFAULT 0,
    recent_actions         jsonb       NOT NULL DEFAULT '[]',  -- last 10 fires
    buffered_actions       jsonb       NOT NULL DEFAULT '[]',  -- FIFO of {buffered_at}
    last_fired_at          timestamptz,
    next_fire_at           timestamptz,  -- jitter included
    latest_workflow_id     text,         -- latest_workflow_instance_id on the wire
    latest_run_id          text,
    last_skip_reason       text,
    last_skipped_at        timestamptz,
    -- Allocates schedule_history_events.sequence under this row's lock.
    last_history_sequence  integer     NOT NULL DEFAULT 0,
    paused_at              timestamptz,
    deleted_at             timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
-- A schedule_id may be reused after a (soft) delete.
CREATE UNIQUE INDEX schedules_live_id_key
    ON schedules (namespace, schedule_id)
    WHERE status <> 'deleted';
-- Any row, deleted or not, newest first (history route picks the newest).
CREATE INDEX schedules_id_idx ON schedules (namespace, schedule_id, created_at DESC);
CREATE INDEX schedules_list_idx
    ON schedules (namespace, created_at DESC)
    WHERE status <> 'deleted';
-- Scheduler tick: WHERE status = 'active' AND next_fire_at <= now().
CREATE INDEX schedules_due_idx ON schedules (next_fire_at) WHERE status = 'active';
COMMENT ON TABLE schedules IS
    'Schedules (spec + action + overlap policy + counters); soft-deleted with status = deleted.';


-- Restrict rather than cascade: schedules are only soft-deleted and their
-- history must outlive that.
CREATE TABLE schedule_history_events (
    id            text        PRIMARY KEY,
    schedule_pk   text        NOT NULL REFERENCES schedules (id) ON DELETE RESTRICT,
    namespace     text        NOT NULL,
    schedule_id   text        NOT NULL,
    sequence      integer     NOT NULL CHECK (sequence >= 1),
    event_type    text        NOT NULL
                              CHECK (event_type IN ('ScheduleCreated', 'ScheduleUpdated',
                                                    'SchedulePaused', 'ScheduleResumed',
                                                    'ScheduleTriggered', 'ScheduleTriggerSkipped',
                                                    'ScheduleDeleted')),
    payload       jsonb       NOT NULL DEFAULT '{}',
    workflow_id   text,       -- set on ScheduleTriggered
    run_id        text,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (schedule_pk, sequence)
);
CREATE INDEX schedule_history_events_id_idx
    ON schedule_history_events (namespace, schedule_id);
COMMENT ON TABLE schedule_history_events IS
    'Per-schedule audit log (GET /schedules/{id}/history); survives schedule deletion.';


-- ---------------------------------------------------------------------------
-- Derived views
-- ---------------------------------------------------------------------------

-- The reference stores a separate compatibility heartbeat per worker; dwtrio
-- derives it from the registration. expires_at is last_heartbeat_at plus the
-- configured stale-after window, which only the application knows, so it is
-- not part of the view.
CREATE VIEW worker_compatibility_heartbeats AS
SELECT
    wr.worker_id,
    wr.namespace,
    wr.task_queue                                AS scope_key,
    wr.task_queue                                AS queue,
    wr.process_metrics ->> 'host'                AS host,
    wr.process_metrics ->> 'process_id'          AS process_id,
    CASE WHEN wr.build_id = '' THEN ARRAY[]::text[] ELSE ARRAY[wr.build_id] END AS supported,
    wr.last_heartbeat_at                         AS recorded_at
FROM worker_registrations AS wr
WHERE wr.status <> 'deregistered';
COMMENT ON VIEW worker_compatibility_heartbeats IS
    'Fleet view (cluster/info worker_fleet) derived from worker_registrations.';
