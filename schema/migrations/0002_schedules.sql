-- Schedules, as the scheduler runs them (docs/schedules.md).
--
-- * next_occurrence_at: the occurrence next_fire_at belongs to, before jitter. The
--   following occurrence is computed from it, not from the clock, so a scheduler
--   that runs late never skips an occurrence silently: it fires it, or (older than
--   the catch-up window) counts it as missed.
-- * missed_fires_count: occurrences that came due while no scheduler ran and were
--   older than the catch-up window when one ran again (each batch is also a
--   ScheduleFiresMissed event in the schedule's history).

ALTER TABLE schedules
    ADD COLUMN next_occurrence_at timestamptz,
    ADD COLUMN missed_fires_count bigint NOT NULL DEFAULT 0;

ALTER TABLE schedule_history_events
    DROP CONSTRAINT schedule_history_events_event_type_check,
    ADD CONSTRAINT schedule_history_events_event_type_check
        CHECK (event_type IN ('ScheduleCreated', 'ScheduleUpdated', 'SchedulePaused',
                              'ScheduleResumed', 'ScheduleTriggered', 'ScheduleTriggerSkipped',
                              'ScheduleFiresMissed', 'ScheduleDeleted'));

-- Buffer drain: active schedules holding buffered fires.
CREATE INDEX schedules_buffered_idx ON schedules (id)
    WHERE status = 'active' AND buffered_actions <> '[]'::jsonb;

-- A schedule as the application reads it (dwtrio/store/schedules.py ScheduleRow), with the
-- transaction's clock, which every due time is compared against. Plain enough for
-- FOR UPDATE [SKIP LOCKED] to lock the underlying rows.
CREATE VIEW schedule_rows AS
SELECT id, namespace, schedule_id, spec, action, status, overlap_policy, note, memo,
       search_attributes, jitter_seconds, max_runs, remaining_actions, fires_count,
       failures_count, skipped_trigger_count, missed_fires_count, recent_actions,
       buffered_actions, last_fired_at, next_fire_at, next_occurrence_at, latest_workflow_id,
       latest_run_id, last_skip_reason, last_skipped_at, paused_at, deleted_at, created_at,
       updated_at, now() AS db_now
  FROM schedules;
