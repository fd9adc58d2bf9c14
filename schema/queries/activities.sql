-- name: schedule_activity
-- A scheduled activity: its execution (one row across all attempts) and its ready task.
WITH execution AS (
    INSERT INTO activity_executions (
        id, run_id, workflow_id, namespace, sequence, activity_type, task_queue, payload_codec,
        arguments, retry_policy, options, parallel,
        schedule_to_start_deadline_at, schedule_to_close_deadline_at)
    VALUES (:execution_id, :run_id, :workflow_id, :namespace, :sequence, :activity_type,
            :task_queue, 'avro', :arguments, :retry_policy, :options, :parallel,
            now() + make_interval(secs => :schedule_to_start_s),
            now() + make_interval(secs => :schedule_to_close_s))
    RETURNING id
)
INSERT INTO workflow_tasks (id, namespace, task_queue, kind, run_id, workflow_id, workflow_type,
                            activity_type, activity_execution_id)
SELECT :task_id, :namespace, :task_queue, 'activity', :run_id, :workflow_id, :workflow_type,
       :activity_type, execution.id
  FROM execution;

-- name: claim_activity_task
-- Lease the oldest ready activity task on a queue (none while the worker's build-id
-- cohort drains), start its next attempt (:attempt_id)
-- and record ActivityStarted (:event_id) on its run, in one statement that commits on its
-- own (one round trip); the lease follows start_to_close if set. The run's row is locked by
-- the event's sequence update, after the task, as when the claim was a transaction that
-- locked the run next (a close locking the run first can deadlock with it: Postgres aborts
-- one whole statement, which is retried). A run no longer open gets no event: run_open is
-- false and the caller retires what was claimed. With :replay (a poll's first claim), a
-- lease this poll_request_id already holds (find_polled_activity_task) is returned again
-- instead (replayed), and nothing is claimed: the worker retried a poll whose answer it lost.
WITH held AS (
    SELECT t.id AS task_id, t.run_id, t.activity_attempt_id, t.lease_owner, t.lease_expires_at,
           a.attempt_number, e.id AS execution_id, e.workflow_id, e.activity_type, e.arguments,
           e.retry_policy, e.schedule_to_close_deadline_at, e.start_to_close_deadline_at,
           e.heartbeat_deadline_at, true AS run_open, true AS replayed
      FROM workflow_tasks t
      JOIN workflow_runs r ON r.id = t.run_id
      JOIN activity_attempts a ON a.id = t.activity_attempt_id
      JOIN activity_executions e ON e.id = t.activity_execution_id
     WHERE :replay::boolean AND t.lease_owner = :worker_id
       AND t.poll_request_id = :poll_request_id
       AND t.state = 'leased' AND t.kind = 'activity'
       AND t.namespace = :namespace AND t.task_queue = :task_queue
       AND t.lease_expires_at > now() AND r.status IN ('pending', 'running', 'waiting')
), next AS (
    SELECT id FROM workflow_tasks
     WHERE namespace = :namespace AND task_queue = :task_queue AND kind = 'activity'
       AND state = 'ready' AND available_at <= now()
       AND NOT EXISTS (SELECT 1 FROM held)
       AND (cardinality(:activity_types::text[]) = 0
            OR activity_type = ANY(:activity_types::text[]))
       AND NOT EXISTS (  -- the worker's build-id cohort is not draining (an InitPlan: once)
           SELECT 1 FROM worker_registrations w
             JOIN build_id_rollouts b ON b.namespace = w.namespace
                                     AND b.task_queue = :task_queue AND b.build_id = w.build_id
            WHERE w.namespace = :namespace AND w.worker_id = :worker_id
              AND b.drain_intent = 'draining')
     ORDER BY available_at, id
     LIMIT 1
       FOR UPDATE SKIP LOCKED
), task AS (
    UPDATE workflow_tasks t
       SET state = 'leased', lease_owner = :worker_id, poll_request_id = :poll_request_id,
           leased_at = now(),
           lease_expires_at = now() + make_interval(
               secs => COALESCE((e.options ->> 'start_to_close_timeout')::int, :default_lease_s)),
           activity_attempt_id = :attempt_id, attempt = e.attempt_count + 1, updated_at = now()
      FROM next, activity_executions e
     WHERE t.id = next.id AND e.id = t.activity_execution_id
    RETURNING t.id, t.run_id, t.activity_execution_id, t.lease_owner, t.lease_expires_at, t.attempt
), execution AS (
    UPDATE activity_executions e
       SET attempt_count = task.attempt, current_attempt_id = :attempt_id, status = 'running',
           started_at = COALESCE(e.started_at, now()), updated_at = now(),
           schedule_to_start_deadline_at = NULL,
           start_to_close_deadline_at = now() + make_interval(
               secs => (e.options ->> 'start_to_close_timeout')::int),
           heartbeat_deadline_at = now() + make_interval(
               secs => (e.options ->> 'heartbeat_timeout')::int)
      FROM task
     WHERE e.id = task.activity_execution_id
    RETURNING e.id, e.workflow_id, e.sequence, e.activity_type, e.arguments, e.retry_policy,
              e.parallel, e.schedule_to_close_deadline_at, e.start_to_close_deadline_at,
              e.heartbeat_deadline_at
), attempt AS (
    INSERT INTO activity_attempts (id, activity_execution_id, run_id, task_id, attempt_number,
                                   lease_owner)
    SELECT :attempt_id, task.activity_execution_id, task.run_id, task.id, task.attempt,
           :worker_id
      FROM task
), run AS (
    UPDATE workflow_runs r
       SET last_history_sequence = r.last_history_sequence + 1, last_progress_at = now(),
           updated_at = now()
      FROM task
     WHERE r.id = task.run_id AND r.status IN ('pending', 'running', 'waiting')
    RETURNING r.id, r.last_history_sequence AS sequence
), started AS (
    -- The payload of engine.activity_tasks.step_fields + the attempt (parallel keys over
    -- the step's own, as there).
    INSERT INTO history_events (id, run_id, sequence, event_type, payload)
    SELECT :event_id, run.id, run.sequence, 'ActivityStarted',
           jsonb_build_object('sequence', execution.sequence,
                              'activity_type', execution.activity_type,
                              'activity_class', execution.activity_type,
                              'activity_execution_id', execution.id)
           || COALESCE(execution.parallel, '{}'::jsonb)
           || jsonb_build_object('activity_attempt_id', :attempt_id::text,
                                 'attempt_number', task.attempt)
      FROM run, task, execution
)
SELECT task.id AS task_id, task.run_id, :attempt_id::text AS activity_attempt_id,
       task.lease_owner, task.lease_expires_at, task.attempt AS attempt_number,
       execution.id AS execution_id, execution.workflow_id, execution.activity_type,
       execution.arguments, execution.retry_policy, execution.schedule_to_close_deadline_at,
       execution.start_to_close_deadline_at, execution.heartbeat_deadline_at,
       run.id IS NOT NULL AS run_open, false AS replayed
  FROM task JOIN execution ON execution.id = task.activity_execution_id
  LEFT JOIN run ON true
UNION ALL
SELECT * FROM held;

-- name: claim_activity_tasks
-- claim_activity_task for several polls of one queue and type filter at once (group
-- commit, matching/batches.py): the arrays give each poll's worker, poll_request_id,
-- attempt id and event id, in the polls' order. Up to one ready task per poll whose
-- worker's build-id cohort is not draining is leased, oldest task to the first poll, each
-- with its attempt and ActivityStarted. One row per poll, in order: its task's columns
-- (NULL when it got none) and whether its cohort drains. Two tasks of one run record
-- their events with consecutive sequences; the runs are locked by that update, after
-- the tasks, in no set order between them (a deadlock with another statement aborts
-- one of the two, which is retried).
WITH polls AS (
    SELECT p.n, p.worker_id, p.poll_request_id, p.attempt_id, p.event_id,
           EXISTS (
               SELECT 1 FROM worker_registrations w
                 JOIN build_id_rollouts b ON b.namespace = w.namespace
                                         AND b.task_queue = :task_queue
                                         AND b.build_id = w.build_id
                WHERE w.namespace = :namespace AND w.worker_id = p.worker_id
                  AND b.drain_intent = 'draining') AS draining
      FROM unnest(:worker_ids::text[], :poll_request_ids::text[], :attempt_ids::text[],
                  :event_ids::text[])
           WITH ORDINALITY AS p (worker_id, poll_request_id, attempt_id, event_id, n)
), takers AS (
    SELECT polls.*, row_number() OVER (ORDER BY n) AS k FROM polls WHERE NOT draining
), next AS (
    SELECT ready.id, row_number() OVER (ORDER BY ready.available_at, ready.id) AS k
      FROM (SELECT id, available_at FROM workflow_tasks
             WHERE namespace = :namespace AND task_queue = :task_queue AND kind = 'activity'
               AND state = 'ready' AND available_at <= now()
               AND (cardinality(:activity_types::text[]) = 0
                    OR activity_type = ANY(:activity_types::text[]))
             ORDER BY available_at, id
             LIMIT (SELECT count(*) FROM takers)
               FOR UPDATE SKIP LOCKED) ready
), task AS (
    UPDATE workflow_tasks t
       SET state = 'leased', lease_owner = takers.worker_id,
           poll_request_id = takers.poll_request_id, leased_at = now(),
           lease_expires_at = now() + make_interval(
               secs => COALESCE((e.options ->> 'start_to_close_timeout')::int, :default_lease_s)),
           activity_attempt_id = takers.attempt_id, attempt = e.attempt_count + 1,
           updated_at = now()
      FROM next JOIN takers ON takers.k = next.k, activity_executions e
     WHERE t.id = next.id AND e.id = t.activity_execution_id
    RETURNING t.id, t.run_id, t.activity_execution_id, t.lease_owner, t.lease_expires_at,
              t.attempt, takers.attempt_id, takers.event_id, takers.n
), execution AS (
    UPDATE activity_executions e
       SET attempt_count = task.attempt, current_attempt_id = task.attempt_id,
           status = 'running', started_at = COALESCE(e.started_at, now()), updated_at = now(),
           schedule_to_start_deadline_at = NULL,
           start_to_close_deadline_at = now() + make_interval(
               secs => (e.options ->> 'start_to_close_timeout')::int),
           heartbeat_deadline_at = now() + make_interval(
               secs => (e.options ->> 'heartbeat_timeout')::int)
      FROM task
     WHERE e.id = task.activity_execution_id
    RETURNING e.id, e.workflow_id, e.sequence, e.activity_type, e.arguments, e.retry_policy,
              e.parallel, e.schedule_to_close_deadline_at, e.start_to_close_deadline_at,
              e.heartbeat_deadline_at
), attempt AS (
    INSERT INTO activity_attempts (id, activity_execution_id, run_id, task_id, attempt_number,
                                   lease_owner)
    SELECT task.attempt_id, task.activity_execution_id, task.run_id, task.id, task.attempt,
           task.lease_owner
      FROM task
), per_run AS (
    SELECT run_id, count(*) AS started FROM task GROUP BY run_id
), run AS (
    UPDATE workflow_runs r
       SET last_history_sequence = r.last_history_sequence + per_run.started,
           last_progress_at = now(), updated_at = now()
      FROM per_run
     WHERE r.id = per_run.run_id AND r.status IN ('pending', 'running', 'waiting')
    RETURNING r.id, r.last_history_sequence - per_run.started AS sequence_before
), started AS (
    -- claim_activity_task's ActivityStarted payload.
    INSERT INTO history_events (id, run_id, sequence, event_type, payload)
    SELECT task.event_id, run.id,
           run.sequence_before + row_number() OVER (PARTITION BY task.run_id ORDER BY task.n),
           'ActivityStarted',
           jsonb_build_object('sequence', execution.sequence,
                              'activity_type', execution.activity_type,
                              'activity_class', execution.activity_type,
                              'activity_execution_id', execution.id)
           || COALESCE(execution.parallel, '{}'::jsonb)
           || jsonb_build_object('activity_attempt_id', task.attempt_id,
                                 'attempt_number', task.attempt)
      FROM task JOIN run ON run.id = task.run_id
      JOIN execution ON execution.id = task.activity_execution_id
)
SELECT polls.draining, task.id AS task_id, task.run_id, task.attempt_id AS activity_attempt_id,
       task.lease_owner, task.lease_expires_at, task.attempt AS attempt_number,
       execution.id AS execution_id, execution.workflow_id, execution.activity_type,
       execution.arguments, execution.retry_policy, execution.schedule_to_close_deadline_at,
       execution.start_to_close_deadline_at, execution.heartbeat_deadline_at,
       run.id IS NOT NULL AS run_open, false AS replayed
  FROM polls
  LEFT JOIN task ON task.n = polls.n
  LEFT JOIN execution ON execution.id = task.activity_execution_id
  LEFT JOIN run ON run.id = task.run_id
 ORDER BY polls.n;

-- name: find_polled_activity_task
-- The activity task a poll with this poll_request_id already leased (poll retries), while
-- its run is open (a lease on a closed run is being retired, not worth running), with its
-- attempt and execution: claim_activity_task's columns.
SELECT t.id AS task_id, t.run_id, t.activity_attempt_id, t.lease_owner, t.lease_expires_at,
       a.attempt_number, e.id AS execution_id, e.workflow_id, e.activity_type, e.arguments,
       e.retry_policy, e.schedule_to_close_deadline_at, e.start_to_close_deadline_at,
       e.heartbeat_deadline_at, true AS run_open, true AS replayed
  FROM workflow_tasks t
  JOIN workflow_runs r ON r.id = t.run_id
  JOIN activity_attempts a ON a.id = t.activity_attempt_id
  JOIN activity_executions e ON e.id = t.activity_execution_id
 WHERE t.lease_owner = :worker_id AND t.poll_request_id = :poll_request_id
   AND t.state = 'leased' AND t.kind = 'activity'
   AND t.namespace = :namespace AND t.task_queue = :task_queue AND t.lease_expires_at > now()
   AND r.status IN ('pending', 'running', 'waiting');

-- name: lock_activity_execution
-- Lock an activity execution with what attempts and events need.
SELECT id, sequence, activity_type, task_queue, status, retry_policy, options, parallel,
       attempt_count, schedule_to_start_deadline_at, start_to_close_deadline_at,
       schedule_to_close_deadline_at, heartbeat_deadline_at
  FROM activity_executions
 WHERE id = :id
   FOR UPDATE;

-- name: set_task_attempt
-- Point an activity task at its current attempt.
UPDATE workflow_tasks
   SET activity_attempt_id = :activity_attempt_id, attempt = :attempt, updated_at = now()
 WHERE id = :id;

-- name: close_activity_attempt
-- Close an attempt with its outcome.
UPDATE activity_attempts SET status = :status, failure = :failure, closed_at = now()
 WHERE id = :id;

-- name: close_activity_execution
-- Close an execution with its terminal outcome.
UPDATE activity_executions
   SET status = :status, result = :result, failure = :failure, closed_at = now(),
       updated_at = now()
 WHERE id = :id;

-- name: cancel_claimed_activity
-- Work leased on a run that has closed can never be used: its attempt, execution and task
-- are retired together, in one statement (an attempt or execution already closed keeps its
-- outcome).
WITH attempt AS (
    UPDATE activity_attempts SET status = 'cancelled', closed_at = now()
     WHERE id = :attempt_id AND status = 'running'
), execution AS (
    UPDATE activity_executions SET status = 'cancelled', closed_at = now(), updated_at = now()
     WHERE id = :execution_id AND status IN ('pending', 'running')
)
UPDATE workflow_tasks
   SET state = 'completed', completed_at = now(), lease_expires_at = NULL, updated_at = now()
 WHERE id = :task_id;

-- name: schedule_activity_retry
-- The attempt failed and will be retried: the task becomes ready after the backoff. The
-- attempt's deadlines end with it; schedule_to_start counts again from the retry's availability.
WITH exec AS (
    UPDATE activity_executions
       SET status = 'pending', start_to_close_deadline_at = NULL, heartbeat_deadline_at = NULL,
           schedule_to_start_deadline_at = now() + make_interval(secs => :backoff_s)
               + make_interval(secs => (options ->> 'schedule_to_start_timeout')::int),
           updated_at = now()
     WHERE id = :execution_id
)
UPDATE workflow_tasks
   SET state = 'ready', lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL,
       poll_request_id = NULL, activity_attempt_id = NULL,
       available_at = now() + make_interval(secs => :backoff_s), updated_at = now()
 WHERE id = :task_id
RETURNING available_at;

-- name: record_activity_heartbeat
-- A heartbeat: keep the details and the time.
WITH attempt AS (
    UPDATE activity_attempts SET last_heartbeat_at = now() WHERE id = :attempt_id
)
UPDATE activity_executions
   SET heartbeat_details = :details, last_heartbeat_at = now(), updated_at = now(),
       heartbeat_deadline_at = now() + make_interval(secs => (options ->> 'heartbeat_timeout')::int)
 WHERE id = :execution_id
RETURNING cancel_requested, last_heartbeat_at;

-- name: cancel_run_activities
-- A run closed: open activity executions are cancelled.
UPDATE activity_executions SET status = 'cancelled', closed_at = now(), updated_at = now()
 WHERE run_id = :run_id AND status IN ('pending', 'running');

-- name: expire_activity_attempt
-- A lease expired or could not be delivered: that attempt is over.
UPDATE activity_attempts SET status = 'expired', closed_at = now()
 WHERE id = :id AND status = 'running';

-- name: lock_activity_call
-- Fencing of an activity call in one round trip: the task, the attempt the caller names
-- (NULL attempt_* columns when there is none), the task's run (lock_run's columns, prefixed
-- run_, its id as run_id_) and its execution (lock_activity_execution's, prefixed exec_).
-- Locked in the order FOR UPDATE OF names them (PostgreSQL's executor takes row marks in
-- that order; it is not documented), task first, as when these were three statements.
-- No row: no activity task of this id in the namespace; nothing is locked then.
SELECT t.id, t.state, t.activity_attempt_id,
       a.id AS attempt_id, a.task_id AS attempt_task_id, a.attempt_number,
       a.status AS attempt_status, a.lease_owner AS attempt_lease_owner,
       r.id AS run_id_, r.workflow_id AS run_workflow_id, r.namespace AS run_namespace,
       r.workflow_type AS run_workflow_type, r.task_queue AS run_task_queue,
       r.status AS run_status, r.wake_pending AS run_wake_pending,
       r.last_step_sequence AS run_last_step_sequence, r.payload_codec AS run_payload_codec,
       r.arguments AS run_arguments, r.compatibility AS run_compatibility,
       r.open_wait_id AS run_open_wait_id,
       e.id AS exec_id, e.sequence AS exec_sequence, e.activity_type AS exec_activity_type,
       e.task_queue AS exec_task_queue, e.status AS exec_status,
       e.retry_policy AS exec_retry_policy, e.options AS exec_options,
       e.parallel AS exec_parallel, e.attempt_count AS exec_attempt_count,
       e.schedule_to_start_deadline_at AS exec_schedule_to_start_deadline_at,
       e.start_to_close_deadline_at AS exec_start_to_close_deadline_at,
       e.schedule_to_close_deadline_at AS exec_schedule_to_close_deadline_at,
       e.heartbeat_deadline_at AS exec_heartbeat_deadline_at
  FROM workflow_tasks t
  JOIN workflow_runs r ON r.id = t.run_id
  JOIN activity_executions e ON e.id = t.activity_execution_id
  LEFT JOIN activity_attempts a ON a.id = :attempt_id
 WHERE t.id = :task_id AND t.namespace = :namespace AND t.kind = 'activity'
   FOR UPDATE OF t, r, e;

-- name: complete_activity
-- A completed attempt: the attempt, its execution and its task close together, and the run
-- (locked by the caller) records ActivityCompleted (:event_id, :payload) with its next
-- sequence, as append_history_events would (one round trip fewer).
WITH attempt AS (
    UPDATE activity_attempts SET status = 'completed', closed_at = now() WHERE id = :attempt_id
), execution AS (
    UPDATE activity_executions
       SET status = 'completed', result = :result, closed_at = now(), updated_at = now()
     WHERE id = :execution_id
), run AS (
    UPDATE workflow_runs
       SET last_history_sequence = last_history_sequence + 1, last_progress_at = now(),
           updated_at = now()
     WHERE id = :run_id
    RETURNING last_history_sequence AS sequence
), completed AS (
    INSERT INTO history_events (id, run_id, sequence, event_type, payload)
    SELECT :event_id, :run_id, run.sequence, 'ActivityCompleted', :payload::jsonb FROM run
)
UPDATE workflow_tasks
   SET state = 'completed', completed_at = now(), lease_expires_at = NULL, updated_at = now()
 WHERE id = :task_id;

-- name: complete_activity_call
-- A completion in one round trip, fence, ActivityCompleted and wake: see migrations 0010
-- and 0012 (dwtrio_complete_activity_call; a standalone activity's host run is answered
-- grouped, as a parallel step). No row: no activity task of this id in the namespace.
SELECT id, state, activity_attempt_id, attempt_id, attempt_task_id, attempt_number,
       attempt_status, attempt_lease_owner, run_id, run_namespace, run_task_queue, run_status,
       grouped, completed, woken_task_id
  FROM dwtrio_complete_activity_call(:task_id, :attempt_id, :namespace, :lease_owner, :result,
                                     :event_id, :wake_task_id);
