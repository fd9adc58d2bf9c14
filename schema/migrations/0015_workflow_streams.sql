-- Durable workflow streams (docs/workflow-streams.md): ordered, offset-keyed output of
-- one run, appended and read through GET/POST /api/workflows/{wf}/runs/{run}/streams.
--
-- A stream belongs to its run: deleting the run (retention, namespace deletion through
-- its instance) deletes its streams, and deleting a stream deletes its items. Offsets
-- start at 0; last_offset -1 means no item yet. Two new tables, nothing else touched.
CREATE TABLE workflow_streams (
    run_id             text        NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    stream_name        text        NOT NULL,
    namespace          text        NOT NULL,
    workflow_id        text        NOT NULL,
    status             text        NOT NULL DEFAULT 'open'
                                   CHECK (status IN ('open', 'closed', 'errored')),
    last_offset        bigint      NOT NULL DEFAULT -1,
    total_items        bigint      NOT NULL DEFAULT 0,
    -- Items appended since a reader last caught up with the head (the append cap).
    pending_items      bigint      NOT NULL DEFAULT 0,
    opened_at          timestamptz NOT NULL DEFAULT now(),
    last_appended_at   timestamptz,
    closed_at          timestamptz,
    error_reason       text,
    retention_seconds  integer,
    PRIMARY KEY (run_id, stream_name)
);

CREATE TABLE workflow_stream_items (
    run_id             text        NOT NULL,
    stream_name        text        NOT NULL,
    item_offset        bigint      NOT NULL,
    idempotency_key    text,
    origin             text        NOT NULL,
    origin_reference   text,
    item_type          text,
    content_type       text,
    -- The Avro blob of the item's payload envelope, stored as received (NULL: none).
    payload_blob       text,
    payload_reference  text,
    payload_codec      text,
    emitted_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, stream_name, item_offset),
    FOREIGN KEY (run_id, stream_name)
        REFERENCES workflow_streams (run_id, stream_name) ON DELETE CASCADE
);

CREATE UNIQUE INDEX workflow_stream_items_idempotency_idx
    ON workflow_stream_items (run_id, stream_name, idempotency_key)
 WHERE idempotency_key IS NOT NULL;
