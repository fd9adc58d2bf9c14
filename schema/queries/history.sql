-- name: append_history_events
-- Append a batch of events (parallel arrays) with the run's next contiguous sequences, in one
-- statement. The caller holds the run lock; returns the sequences given.
WITH seq AS (
    UPDATE workflow_runs
       SET last_history_sequence = last_history_sequence + cardinality($2::text[]),
           last_progress_at = now(), updated_at = now()
     WHERE id = $1
    RETURNING last_history_sequence - cardinality($2::text[]) AS base
)
INSERT INTO history_events (id, run_id, sequence, event_type, payload, workflow_task_id,
                            workflow_command_id)
SELECT e.id, $1, seq.base + e.ord, e.event_type, e.payload, e.task_id, e.command_id
  FROM seq,
       unnest($2::text[], $3::text[], $4::jsonb[], $5::text[], $6::text[])
           WITH ORDINALITY AS e(id, event_type, payload, task_id, command_id, ord)
RETURNING sequence;

-- name: list_history_page
-- Events of a run after a sequence, oldest first.
SELECT id, sequence, event_type, payload, workflow_task_id, workflow_command_id, recorded_at
  FROM history_events
 WHERE run_id = $1 AND sequence > $2
 ORDER BY sequence
 LIMIT $3;
