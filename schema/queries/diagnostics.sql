-- The debug snapshot of one run (GET /api/workflows/{wf}[/runs/{run}]/debug,
-- engine/workflow_debug.py, docs/workflow-maintenance.md). Every list is bounded by :limit.

-- name: run_debug_state
-- What the run waits on, in one row: its open wait, pending wake, and counts of what is
-- outstanding (timers, activities, children, updates) and of its tasks by state.
SELECT r.wake_pending, r.open_wait_id, r.wait_started_at, r.wait_deadline_at,
       r.last_history_sequence, r.archive_reason,
       (SELECT count(*) FROM timers WHERE run_id = r.id AND state = 'pending') AS pending_timers,
       (SELECT min(fire_at) FROM timers WHERE run_id = r.id AND state = 'pending')
           AS next_timer_at,
       (SELECT count(*) FROM activity_executions
         WHERE run_id = r.id AND status IN ('pending', 'running')) AS pending_activities,
       (SELECT count(*) FROM child_workflow_calls
         WHERE parent_run_id = r.id AND status IN ('scheduled', 'started')) AS open_children,
       (SELECT count(*) FROM workflow_updates WHERE run_id = r.id AND status = 'accepted')
           AS open_updates,
       t.ready_tasks, t.due_tasks, t.leased_tasks, t.expired_leases, t.oldest_due_at
  FROM workflow_runs r
 CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE state = 'ready') AS ready_tasks,
           count(*) FILTER (WHERE state = 'ready' AND available_at <= now()) AS due_tasks,
           count(*) FILTER (WHERE state = 'leased' AND lease_expires_at > now()) AS leased_tasks,
           count(*) FILTER (WHERE state = 'leased' AND lease_expires_at <= now())
               AS expired_leases,
           min(available_at) FILTER (WHERE state = 'ready' AND available_at <= now())
               AS oldest_due_at
      FROM workflow_tasks
     WHERE run_id = r.id AND state IN ('ready', 'leased')
 ) t
 WHERE r.id = :run_id;

-- name: list_run_open_workflow_tasks
-- The run's ready and leased workflow tasks (at most one, plus leftovers), oldest first.
SELECT id AS task_id, state, workflow_update_id, attempt, available_at, lease_owner, leased_at,
       lease_expires_at, COALESCE(lease_expires_at <= now(), false) AS lease_expired,
       failure_count, repair_count, failure, created_at
  FROM workflow_tasks
 WHERE run_id = :run_id AND kind = 'workflow' AND state IN ('ready', 'leased')
 ORDER BY created_at, id
 LIMIT :limit;

-- name: list_run_pending_activities
-- The run's scheduled or running activities with their task's dispatch state, by sequence.
SELECT a.id AS activity_execution_id, a.sequence, a.activity_type, a.task_queue, a.status,
       a.attempt_count, a.current_attempt_id, a.scheduled_at, a.started_at,
       a.last_heartbeat_at, a.next_deadline_at, t.id AS task_id, t.state AS task_state,
       t.available_at, t.lease_owner, t.lease_expires_at,
       COALESCE(t.state = 'leased' AND t.lease_expires_at <= now(), false) AS lease_expired
  FROM activity_executions a
  LEFT JOIN workflow_tasks t ON t.activity_execution_id = a.id
 WHERE a.run_id = :run_id AND a.status IN ('pending', 'running')
 ORDER BY a.sequence
 LIMIT :limit;

-- name: list_run_recent_failures
-- The run's latest failures, newest first: failed workflow-task attempts (the failure kept
-- on the task) and activity attempts that failed, timed out or lost their lease.
SELECT source, source_id, failure, failed_at FROM (
    SELECT 'workflow_task' AS source, id AS source_id, failure, updated_at AS failed_at
      FROM workflow_tasks
     WHERE run_id = :run_id AND kind = 'workflow' AND failure IS NOT NULL
    UNION ALL
    SELECT 'activity_attempt', at.id,
           COALESCE(at.failure, jsonb_build_object('status', at.status)), at.closed_at
      FROM activity_executions a
      JOIN activity_attempts at ON at.activity_execution_id = a.id
     WHERE a.run_id = :run_id AND at.status IN ('failed', 'timed_out', 'expired')
) f
 ORDER BY failed_at DESC NULLS LAST, source_id DESC
 LIMIT :limit;

-- name: get_last_history_event
-- The run's newest history event.
SELECT id, sequence, event_type, payload, workflow_task_id, workflow_command_id, recorded_at
  FROM history_events
 WHERE run_id = :run_id
 ORDER BY sequence DESC
 LIMIT 1;
