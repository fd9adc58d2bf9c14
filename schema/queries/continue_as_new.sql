-- name: lock_instance_for_continue
-- Lock the instance of a run that continues as new (after the run lock); its run count.
SELECT run_count, execution_timeout_seconds FROM workflow_instances WHERE workflow_id = $1 FOR UPDATE;

-- name: insert_continued_run
-- The next run of a continued instance (becomes current): memo, search attributes and run timeout carry over.
WITH prev AS (
    SELECT * FROM workflow_runs WHERE id = $2
), instance AS (
    UPDATE workflow_instances
       SET current_run_id = $1, run_count = $3, updated_at = now()
     WHERE workflow_id = (SELECT workflow_id FROM prev)
    RETURNING execution_deadline_at
)
INSERT INTO workflow_runs (id, workflow_id, namespace, run_number, workflow_type, business_key,
                           task_queue, compatibility, payload_codec, arguments, memo,
                           search_attributes, run_timeout_seconds, execution_deadline_at,
                           run_deadline_at, continued_from_run_id, last_progress_at)
SELECT $1, prev.workflow_id, prev.namespace, $3, COALESCE($4::text, prev.workflow_type),
       prev.business_key, $5, prev.compatibility, 'avro', $6, prev.memo, prev.search_attributes,
       prev.run_timeout_seconds, instance.execution_deadline_at,
       now() + make_interval(secs => prev.run_timeout_seconds), prev.id, now()
  FROM prev, instance
RETURNING workflow_type, business_key, memo, search_attributes, run_timeout_seconds,
          execution_deadline_at, run_deadline_at, compatibility;
