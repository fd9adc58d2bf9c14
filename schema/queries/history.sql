-- name: append_history_events
-- Append a batch of events (parallel arrays) with the run's next contiguous sequences, in one
-- statement. The caller holds the run lock; returns the sequences given.
WITH seq AS (
    UPDATE workflow_runs
       SET last_history_sequence = last_history_sequence + cardinality(:ids::text[]),
           last_progress_at = now(), updated_at = now()
     WHERE id = :run_id
    RETURNING last_history_sequence - cardinality(:ids::text[]) AS base
)
INSERT INTO history_events (id, run_id, sequence, event_type, payload, workflow_task_id,
                            workflow_command_id)
SELECT e.id, :run_id, seq.base + e.ord, e.event_type, e.payload, e.task_id, e.command_id
  FROM seq,
       unnest(:ids::text[], :event_types::text[], :payloads::jsonb[], :task_ids::text[],
              :command_ids::text[])
           WITH ORDINALITY AS e(id, event_type, payload, task_id, command_id, ord)
RETURNING sequence;

-- name: list_history_page
-- Events of a run after a sequence, oldest first.
SELECT id, sequence, event_type, payload, workflow_task_id, workflow_command_id, recorded_at
  FROM history_events
 WHERE run_id = :run_id AND sequence > :after_sequence
 ORDER BY sequence
 LIMIT :limit;

-- name: last_closing_event
-- The payload of a run's newest closing event (to tell a parent why its child closed).
SELECT payload FROM history_events
 WHERE run_id = :run_id
   AND event_type IN ('WorkflowFailed', 'WorkflowTimedOut', 'WorkflowCancelled',
                      'WorkflowTerminated')
 ORDER BY sequence DESC
 LIMIT 1;
