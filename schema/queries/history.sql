-- name: allocate_history_sequences
-- Reserve n history positions on a run (caller holds the run lock); returns the last one.
UPDATE workflow_runs
   SET last_history_sequence = last_history_sequence + $2,
       last_progress_at = now(),
       updated_at = now()
 WHERE id = $1
RETURNING last_history_sequence;

-- name: insert_history_events
-- Append a batch of events (parallel arrays, one element per event).
INSERT INTO history_events (id, run_id, sequence, event_type, payload, workflow_task_id, workflow_command_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::jsonb[], $6::text[], $7::text[]);

-- name: list_history_page
-- Events of a run after a sequence, oldest first.
SELECT id, sequence, event_type, payload, workflow_task_id, workflow_command_id, recorded_at
  FROM history_events
 WHERE run_id = $1 AND sequence > $2
 ORDER BY sequence
 LIMIT $3;
