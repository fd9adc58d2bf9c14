-- Durable workflow streams (docs/workflow-streams.md): a run's ordered output.

-- name: find_stream_run
-- The run :run_id of workflow :workflow_id in :namespace (its id), or no row.
SELECT id AS run_id FROM workflow_runs
 WHERE id = :run_id AND namespace = :namespace AND workflow_id = :workflow_id;

-- name: open_stream_for_append
-- Lock the stream :stream_name of the run (the run must be :workflow_id's, in :namespace),
-- opening it first when it does not exist; no row when the run does not match. Concurrent
-- appends to one stream queue up here, so their offsets never collide.
INSERT INTO workflow_streams AS s (run_id, stream_name, namespace, workflow_id)
SELECT r.id, :stream_name, r.namespace, r.workflow_id
  FROM workflow_runs r
 WHERE r.id = :run_id AND r.namespace = :namespace AND r.workflow_id = :workflow_id
    ON CONFLICT (run_id, stream_name) DO UPDATE SET status = s.status
RETURNING s.stream_name, s.status, s.last_offset, s.total_items, s.pending_items, s.opened_at,
          s.last_appended_at, s.closed_at, s.error_reason, s.retention_seconds;

-- name: lock_stream
-- Lock an existing stream of the run :run_id (:namespace, :workflow_id checked), or no row.
SELECT s.stream_name, s.status, s.last_offset, s.total_items, s.pending_items, s.opened_at,
       s.last_appended_at, s.closed_at, s.error_reason, s.retention_seconds
  FROM workflow_streams s
 WHERE s.run_id = :run_id AND s.stream_name = :stream_name
   AND s.namespace = :namespace AND s.workflow_id = :workflow_id
   FOR UPDATE;

-- name: get_stream
-- The run (run_found) and its stream :stream_name, if any (stream columns null when none).
SELECT r.id IS NOT NULL AS run_found, s.stream_name, s.status, s.last_offset, s.total_items,
       s.pending_items, s.opened_at, s.last_appended_at, s.closed_at, s.error_reason,
       s.retention_seconds
  FROM (SELECT 1) AS one
  LEFT JOIN workflow_runs r
         ON r.id = :run_id AND r.namespace = :namespace AND r.workflow_id = :workflow_id
  LEFT JOIN workflow_streams s ON s.run_id = r.id AND s.stream_name = :stream_name;

-- name: list_streams
-- Every stream of the run :run_id, by name.
SELECT stream_name, status, last_offset, total_items, pending_items, opened_at,
       last_appended_at, closed_at, error_reason, retention_seconds
  FROM workflow_streams
 WHERE run_id = :run_id
 ORDER BY stream_name;

-- name: find_idempotent_items
-- Items of the stream already appended under one of :keys: each key's offset.
SELECT idempotency_key, item_offset
  FROM workflow_stream_items
 WHERE run_id = :run_id AND stream_name = :stream_name
   AND idempotency_key = ANY(:keys::text[]);

-- name: insert_stream_items
-- Append items at the offsets given (the caller holds the stream locked).
INSERT INTO workflow_stream_items (run_id, stream_name, item_offset, idempotency_key, origin,
                                   origin_reference, item_type, content_type, payload_blob,
                                   payload_reference, payload_codec, emitted_at)
SELECT :run_id, :stream_name, i.item_offset, i.idempotency_key, i.origin, i.origin_reference,
       i.item_type, i.content_type, i.payload_blob, i.payload_reference, i.payload_codec, now()
  FROM unnest(:offsets::bigint[], :idempotency_keys::text[], :origins::text[],
              :origin_references::text[], :item_types::text[], :content_types::text[],
              :payload_blobs::text[], :payload_references::text[], :payload_codecs::text[])
       AS i (item_offset, idempotency_key, origin, origin_reference, item_type, content_type,
             payload_blob, payload_reference, payload_codec);

-- name: record_stream_appends
-- After an append of :added items up to :last_offset: the stream's counters.
UPDATE workflow_streams
   SET last_offset = :last_offset, total_items = total_items + :added,
       pending_items = pending_items + :added, last_appended_at = now()
 WHERE run_id = :run_id AND stream_name = :stream_name
RETURNING stream_name, status, last_offset, total_items, pending_items, opened_at,
          last_appended_at, closed_at, error_reason, retention_seconds;

-- name: read_stream_items
-- Up to :limit items of the stream from offset :from_offset on, in offset order.
SELECT item_offset, idempotency_key, origin, origin_reference, item_type, content_type,
       payload_blob, payload_reference, payload_codec, emitted_at
  FROM workflow_stream_items
 WHERE run_id = :run_id AND stream_name = :stream_name AND item_offset >= :from_offset
 ORDER BY item_offset
 LIMIT :limit;

-- name: drain_stream_pending
-- A reader reached the head at :head_offset: nothing is pending any more, unless an
-- append moved the head meanwhile. Returns the stream when it changed.
UPDATE workflow_streams
   SET pending_items = 0
 WHERE run_id = :run_id AND stream_name = :stream_name
   AND last_offset = :head_offset AND pending_items > 0
RETURNING stream_name, status, last_offset, total_items, pending_items, opened_at,
          last_appended_at, closed_at, error_reason, retention_seconds;

-- name: close_stream
-- Close (or, with :error_reason, fail) an open locked stream; keep or set its retention.
UPDATE workflow_streams
   SET status = CASE WHEN CAST(:error_reason AS text) IS NULL THEN 'closed' ELSE 'errored' END,
       error_reason = :error_reason, closed_at = now(),
       retention_seconds = COALESCE(:retention_seconds, retention_seconds, :default_retention)
 WHERE run_id = :run_id AND stream_name = :stream_name
RETURNING stream_name, status, last_offset, total_items, pending_items, opened_at,
          last_appended_at, closed_at, error_reason, retention_seconds;
