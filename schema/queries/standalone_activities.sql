-- Standalone activities (GET /api/activities[/{id}], docs/standalone-activities.md): each is
-- a host run of workflow type 'dw.standalone_activity' whose only step is its activity.

-- name: get_standalone_activity
-- One standalone activity of a namespace: its host run (the instance's current run) and
-- that run's activity execution (step 1). No row: no host run of this id here.
SELECT r.workflow_id AS activity_id, r.id AS run_id, r.workflow_type, r.namespace,
       r.task_queue, r.business_key, r.status, r.status_bucket, r.closed_reason,
       r.started_at, r.closed_at, r.last_progress_at, r.compatibility, r.payload_codec,
       e.id AS execution_id, e.activity_type,
       COALESCE(e.options ->> 'activity_class', e.activity_type) AS activity_class,
       e.status AS activity_status, e.attempt_count, e.result,
       e.schedule_to_start_deadline_at, e.schedule_to_close_deadline_at, e.last_heartbeat_at
  FROM workflow_instances i
  JOIN workflow_runs r ON r.id = i.current_run_id
  LEFT JOIN LATERAL (
      SELECT * FROM activity_executions x WHERE x.run_id = r.id ORDER BY x.sequence LIMIT 1
  ) e ON true
 WHERE i.workflow_id = :activity_id AND i.namespace = :namespace
   AND r.workflow_type = 'dw.standalone_activity';

-- name: list_standalone_activities
-- A page of a namespace's standalone activities, newest first (workflow_runs_list_type_idx),
-- optionally of one status bucket, skipping :skip rows (the page token); :limit is one more
-- than the page, so a full answer says another page follows.
SELECT r.workflow_id AS activity_id, r.id AS run_id, e.activity_type,
       COALESCE(e.options ->> 'activity_class', e.activity_type) AS activity_class,
       r.task_queue, r.status, r.status_bucket, r.business_key, r.started_at, r.closed_at
  FROM workflow_runs r
  LEFT JOIN LATERAL (
      SELECT x.activity_type, x.options FROM activity_executions x
       WHERE x.run_id = r.id ORDER BY x.sequence LIMIT 1
  ) e ON true
 WHERE r.namespace = :namespace AND r.workflow_type = 'dw.standalone_activity'
   AND (:status::text IS NULL OR r.status_bucket = :status::text)
 ORDER BY r.started_at DESC, r.id DESC
OFFSET :skip
 LIMIT :limit;
