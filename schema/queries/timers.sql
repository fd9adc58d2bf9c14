-- name: insert_timer
-- Arm a timer: fire_at is the transaction clock plus the delay, the same clock that fires it.
INSERT INTO timers (id, run_id, sequence, timer_kind, condition_wait_id, delay_seconds, fire_at,
                    parallel)
VALUES (:id, :run_id, :sequence, :timer_kind, :condition_wait_id, :delay_seconds::bigint,
        now() + make_interval(secs => :delay_seconds::bigint), :parallel)
RETURNING fire_at;

-- name: claim_due_timers
-- Settle up to :limit due timers whose runs this transaction could lock: fired for an open run,
-- cancelled for a closed one. Both locks skip rows held elsewhere, so several timer loops
-- never wait on each other or settle a timer twice; a skipped timer is retried next tick.
WITH due AS (
    SELECT id, run_id FROM timers
     WHERE state = 'pending' AND fire_at <= now()
     ORDER BY fire_at, id
     LIMIT :limit
       FOR UPDATE SKIP LOCKED
), locked AS (
    SELECT r.id, r.status IN ('pending', 'running', 'waiting') AS is_open
      FROM workflow_runs r
     WHERE r.id IN (SELECT run_id FROM due)
     ORDER BY r.id
       FOR UPDATE SKIP LOCKED
)
UPDATE timers t
   SET state = CASE WHEN locked.is_open THEN 'fired' ELSE 'cancelled' END,
       fired_at = CASE WHEN locked.is_open THEN now() END,
       cancelled_at = CASE WHEN locked.is_open THEN NULL ELSE now() END
  FROM due JOIN locked ON locked.id = due.run_id
 WHERE t.id = due.id AND t.state = 'pending'
RETURNING t.id, t.run_id, t.sequence, t.timer_kind, t.condition_wait_id, t.delay_seconds,
          t.fire_at, t.fired_at, t.parallel, t.state;

-- name: next_timer_due_seconds
-- Seconds until the earliest pending timer is due (negative when overdue), or null.
SELECT EXTRACT(EPOCH FROM min(fire_at) - clock_timestamp())::double precision
  FROM timers
 WHERE state = 'pending';

-- name: open_condition_wait
-- Make a condition wait the run's open wait (what describe shows as its current wait).
UPDATE workflow_runs
   SET open_wait_id = :wait_id, open_wait_sequence = :sequence, open_wait_timer_id = :timer_id,
       open_wait = :details, wait_kind = 'condition', wait_reason = :reason,
       wait_started_at = now(), wait_deadline_at = :deadline_at, updated_at = now()
 WHERE id = :run_id;

-- name: close_open_wait
-- The next ordinary completion closes the run's open wait: clear it, cancel its pending
-- timeout timer, and return what ConditionWaitSatisfied / TimerCancelled record.
WITH w AS (
    SELECT open_wait_id, open_wait_sequence, open_wait_timer_id, open_wait
      FROM workflow_runs
     WHERE id = :run_id AND open_wait_id IS NOT NULL
), cleared AS (
    UPDATE workflow_runs
       SET open_wait_id = NULL, open_wait_sequence = NULL, open_wait_timer_id = NULL,
           open_wait = NULL, wait_kind = NULL, wait_reason = NULL, wait_started_at = NULL,
           wait_deadline_at = NULL, updated_at = now()
     WHERE id = :run_id AND open_wait_id IS NOT NULL
), cancelled AS (
    UPDATE timers SET state = 'cancelled', cancelled_at = now()
     WHERE id = (SELECT open_wait_timer_id FROM w) AND state = 'pending'
    RETURNING id, delay_seconds, fire_at, cancelled_at
)
SELECT w.open_wait_id, w.open_wait_sequence, w.open_wait,
       c.id AS timer_id, c.delay_seconds, c.fire_at, c.cancelled_at
  FROM w LEFT JOIN cancelled c ON true;

-- name: clear_open_wait
-- A condition wait's timeout fired: it is no longer the run's open wait.
UPDATE workflow_runs
   SET open_wait_id = NULL, open_wait_sequence = NULL, open_wait_timer_id = NULL,
       open_wait = NULL, wait_kind = NULL, wait_reason = NULL, wait_started_at = NULL,
       wait_deadline_at = NULL, updated_at = now()
 WHERE id = :run_id AND open_wait_id = :wait_id;
