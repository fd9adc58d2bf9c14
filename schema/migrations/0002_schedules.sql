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
