-- Schedules and their history (dwtrio/store/schedules.py). A schedule is read from the
-- schedule_rows view (ScheduleRow: the columns and the transaction's now()).

-- name: insert_schedule
-- Create a schedule; returns its internal id, or nothing when a live schedule has this id.
INSERT INTO schedules (id, namespace, schedule_id, spec, action, status, overlap_policy, note,
                       memo, search_attributes, jitter_seconds, max_runs, remaining_actions,
                       next_fire_at, next_occurrence_at, paused_at)
VALUES (:id, :namespace, :schedule_id, :spec, :action, :status, :overlap_policy, :note,
        :memo, :search_attributes, :jitter_seconds, :max_runs, :remaining_actions,
        :next_fire_at, :next_occurrence_at,
        CASE WHEN :status::text = 'paused' THEN now() END)
ON CONFLICT (namespace, schedule_id) WHERE status <> 'deleted' DO NOTHING
RETURNING id;

-- name: lock_schedule
-- A live schedule, locked for a change or a fire.
SELECT *
  FROM schedule_rows
 WHERE namespace = :namespace AND schedule_id = :schedule_id AND status <> 'deleted'
   FOR UPDATE;

-- name: get_schedule
-- A live schedule, read only.
SELECT *
  FROM schedule_rows
 WHERE namespace = :namespace AND schedule_id = :schedule_id AND status <> 'deleted';

-- name: newest_schedule_key
-- The newest row with this id, deleted or not (a schedule's history outlives it).
SELECT id
  FROM schedules
 WHERE namespace = :namespace AND schedule_id = :schedule_id
 ORDER BY created_at DESC, id DESC
 LIMIT 1;

-- name: list_schedules
-- One page of live schedules, newest first, after the keyset cursor (created_at, id).
SELECT *
  FROM schedule_rows
 WHERE namespace = :namespace AND status <> 'deleted'
   AND (:status::text IS NULL OR status = :status::text)
   AND (:workflow_type::text IS NULL OR action ->> 'workflow_type' = :workflow_type::text)
   AND (:after_created_at::timestamptz IS NULL
        OR (created_at, id) < (:after_created_at::timestamptz, :after_id::text))
 ORDER BY created_at DESC, id DESC
 LIMIT :limit;

-- name: save_schedule
-- Write back every column a change or a fire may alter.
UPDATE schedules
   SET spec = :spec, action = :action, status = :status, overlap_policy = :overlap_policy,
       note = :note, memo = :memo, search_attributes = :search_attributes,
       jitter_seconds = :jitter_seconds, max_runs = :max_runs,
       remaining_actions = :remaining_actions, fires_count = :fires_count,
       failures_count = :failures_count, skipped_trigger_count = :skipped_trigger_count,
       missed_fires_count = :missed_fires_count, recent_actions = :recent_actions,
       buffered_actions = :buffered_actions, last_fired_at = :last_fired_at,
       next_fire_at = :next_fire_at, next_occurrence_at = :next_occurrence_at,
       latest_workflow_id = :latest_workflow_id, latest_run_id = :latest_run_id,
       last_skip_reason = :last_skip_reason, last_skipped_at = :last_skipped_at,
       paused_at = :paused_at, deleted_at = :deleted_at, updated_at = now()
 WHERE id = :id;

-- name: append_schedule_event
-- Append one event to a schedule's history; the sequence comes from the schedule row.
WITH seq AS (
    UPDATE schedules
       SET last_history_sequence = last_history_sequence + 1
     WHERE id = :schedule_pk
 RETURNING last_history_sequence, namespace, schedule_id
)
INSERT INTO schedule_history_events (id, schedule_pk, namespace, schedule_id, sequence,
                                     event_type, payload, workflow_id, run_id)
SELECT :id, :schedule_pk, seq.namespace, seq.schedule_id, seq.last_history_sequence,
       :event_type, :payload, :workflow_id, :run_id
  FROM seq
RETURNING sequence;

-- name: list_schedule_events
-- One page of a schedule's history after a sequence, oldest first.
SELECT id, sequence, event_type, payload, workflow_id, run_id, recorded_at
  FROM schedule_history_events
 WHERE schedule_pk = :schedule_pk AND sequence > :after_sequence
 ORDER BY sequence
 LIMIT :limit;

-- name: claim_due_schedules
-- Up to :limit active schedules whose next fire is due, locked; rows another scheduler holds
-- are skipped, so schedulers on every node share the work and no occurrence fires twice.
SELECT *
  FROM schedule_rows
 WHERE status = 'active' AND next_fire_at <= now()
 ORDER BY next_fire_at, id
 LIMIT :limit
   FOR UPDATE SKIP LOCKED;

-- name: claim_buffered_schedules
-- Up to :limit active schedules holding buffered fires, locked (others' skipped).
SELECT *
  FROM schedule_rows
 WHERE status = 'active' AND buffered_actions <> '[]'::jsonb
 ORDER BY id
 LIMIT :limit
   FOR UPDATE SKIP LOCKED;

-- name: scheduler_outlook
-- Seconds until the earliest active schedule is due (negative when overdue, null when
-- none), and whether any active schedule holds buffered fires.
SELECT (SELECT EXTRACT(EPOCH FROM min(next_fire_at) - clock_timestamp())::double precision
          FROM schedules WHERE status = 'active') AS next_due_seconds,
       EXISTS (SELECT 1 FROM schedules
                WHERE status = 'active' AND buffered_actions <> '[]'::jsonb) AS has_buffered;

-- name: instance_is_running
-- Whether the instance's current run (after any continue-as-new) is still open; null when
-- the instance does not exist.
SELECT r.status IN ('pending', 'running', 'waiting')
  FROM workflow_instances i
  JOIN workflow_runs r ON r.id = i.current_run_id
 WHERE i.workflow_id = :workflow_id;

-- name: lock_schedule_by_key
-- A schedule by its internal id, locked (the scheduler's failure path).
SELECT *
  FROM schedule_rows
 WHERE id = :id
   FOR UPDATE;

-- name: schedule_clock
-- The transaction's clock, which schedule times are computed against.
SELECT now();
