-- Standalone activities (docs/standalone-activities.md): a completion in one round trip
-- leaves a standalone activity's host run to the transaction path.
--
-- dwtrio_complete_activity_call (migration 0010) ends by waking the run: a new workflow
-- task when it has none open. A host run (workflow type 'dw.standalone_activity') has no
-- workflow code: the activity's outcome closes the run instead
-- (engine.activity_tasks.complete). So the function now answers such a step as it
-- answers a step of a parallel group: grouped, nothing written, and the caller runs
-- engine.activity_tasks.complete in a transaction. The function is otherwise unchanged.
--
-- compatible: the signature and the columns returned are unchanged and every run the
-- previous release can create behaves exactly as before; only host runs, which only a
-- release with standalone activities creates, take the caller's transaction path.
CREATE OR REPLACE FUNCTION dwtrio_complete_activity_call(
    p_task_id text, p_attempt_id text, p_namespace text, p_lease_owner text,
    p_result text, p_event_id text, p_wake_task_id text)
RETURNS TABLE (
    id text, state text, activity_attempt_id text, attempt_id text, attempt_task_id text,
    attempt_number integer, attempt_status text, attempt_lease_owner text,
    run_id text, run_namespace text, run_task_queue text, run_status text,
    grouped boolean, completed boolean, woken_task_id text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    c record;
    seq bigint;
    open_state text;
    created text;
BEGIN
    SELECT t.id, t.state, t.activity_attempt_id,
           a.id AS attempt_id, a.task_id AS attempt_task_id, a.attempt_number,
           a.status AS attempt_status, a.lease_owner AS attempt_lease_owner,
           r.id AS run_id, r.namespace AS run_namespace, r.task_queue AS run_task_queue,
           r.status AS run_status, r.workflow_id AS run_workflow_id,
           r.workflow_type AS run_workflow_type, r.compatibility AS run_compatibility,
           e.id AS exec_id, e.sequence AS exec_sequence,
           e.activity_type AS exec_activity_type,
           COALESCE(e.parallel, '{}'::jsonb) <> '{}'::jsonb
               OR r.workflow_type = 'dw.standalone_activity' AS grouped
      INTO c
      FROM workflow_tasks t
      JOIN workflow_runs r ON r.id = t.run_id
      JOIN activity_executions e ON e.id = t.activity_execution_id
      LEFT JOIN activity_attempts a ON a.id = p_attempt_id
     WHERE t.id = p_task_id AND t.namespace = p_namespace AND t.kind = 'activity'
       FOR UPDATE OF t, r, e;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF c.grouped OR c.attempt_id IS NULL OR c.attempt_task_id IS DISTINCT FROM p_task_id
       OR c.attempt_lease_owner IS DISTINCT FROM p_lease_owner
       OR c.attempt_status IS DISTINCT FROM 'running' OR c.state IS DISTINCT FROM 'leased'
       OR c.activity_attempt_id IS DISTINCT FROM p_attempt_id
       OR c.run_status NOT IN ('pending', 'running', 'waiting') THEN
        RETURN QUERY SELECT c.id, c.state, c.activity_attempt_id, c.attempt_id,
            c.attempt_task_id, c.attempt_number, c.attempt_status, c.attempt_lease_owner,
            c.run_id, c.run_namespace, c.run_task_queue, c.run_status, c.grouped,
            false, NULL::text;
        RETURN;
    END IF;

    -- complete_activity
    UPDATE activity_attempts SET status = 'completed', closed_at = now()
     WHERE id = p_attempt_id;
    UPDATE activity_executions
       SET status = 'completed', result = p_result, closed_at = now(), updated_at = now()
     WHERE id = c.exec_id;
    UPDATE workflow_runs
       SET last_history_sequence = last_history_sequence + 1, last_progress_at = now(),
           updated_at = now()
     WHERE id = c.run_id
    RETURNING last_history_sequence INTO seq;
    -- The payload of engine.activity_tasks.complete (step_fields, no parallel keys here).
    INSERT INTO history_events (id, run_id, sequence, event_type, payload)
    VALUES (p_event_id, c.run_id, seq, 'ActivityCompleted',
            jsonb_build_object('sequence', c.exec_sequence,
                               'activity_type', c.exec_activity_type,
                               'activity_class', c.exec_activity_type,
                               'activity_execution_id', c.exec_id,
                               'activity_attempt_id', p_attempt_id,
                               'attempt_number', c.attempt_number,
                               'result', p_result,
                               'payload_codec', 'avro'));
    UPDATE workflow_tasks
       SET state = 'completed', completed_at = now(), lease_expires_at = NULL,
           updated_at = now()
     WHERE id = p_task_id;

    -- wake_run (engine/wakes.py): nothing when the run's workflow task is ready,
    -- wake_pending when it is leased, otherwise a new ready task.
    SELECT wt.state INTO open_state FROM workflow_tasks wt
     WHERE wt.run_id = c.run_id AND wt.kind = 'workflow' AND wt.state IN ('ready', 'leased')
     LIMIT 1;
    IF open_state = 'leased' THEN
        UPDATE workflow_runs SET wake_pending = true, updated_at = now()
         WHERE id = c.run_id AND NOT wake_pending;
    ELSIF open_state IS NULL THEN
        INSERT INTO workflow_tasks (id, namespace, task_queue, kind, run_id, workflow_id,
                                    workflow_type, compatibility, available_at)
        VALUES (p_wake_task_id, c.run_namespace, c.run_task_queue, 'workflow', c.run_id,
                c.run_workflow_id, c.run_workflow_type, c.run_compatibility, now())
        RETURNING workflow_tasks.id INTO created;
    END IF;

    RETURN QUERY SELECT c.id, c.state, c.activity_attempt_id, c.attempt_id, c.attempt_task_id,
        c.attempt_number, c.attempt_status, c.attempt_lease_owner, c.run_id, c.run_namespace,
        c.run_task_queue, c.run_status, c.grouped, true, created;
END $$;
