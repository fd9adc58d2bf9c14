-- name: run_status_counts
-- Runs of :namespace per status class ('open', or the closed status), from the counters the
-- workflow_runs triggers keep (migration 0007): the shard rows of each class added up, a few
-- dozen rows at most however many runs there are.
SELECT status, sum(count)::bigint AS count
  FROM run_status_counts
 WHERE namespace = :namespace
 GROUP BY status
 ORDER BY status;

-- name: namespace_worker_counts
-- The workers of :namespace that have not deregistered (one registration each), by state:
-- active or draining with a heartbeat inside the stale window (:stale_after_s), and stale past
-- it (as the worker roster says); the build ids and task queues of the draining ones.
SELECT count(*) FILTER (WHERE NOT w.is_stale AND w.status = 'active') AS active_count,
       count(*) FILTER (WHERE NOT w.is_stale AND w.status = 'draining') AS draining_count,
       count(*) FILTER (WHERE w.is_stale) AS stale_count,
       count(DISTINCT (w.task_queue, w.build_id)) FILTER (WHERE w.status = 'draining')
           AS draining_build_id_count,
       coalesce(array_agg(DISTINCT w.task_queue ORDER BY w.task_queue)
                    FILTER (WHERE w.status = 'draining'), '{}') AS draining_queues
  FROM (SELECT r.task_queue, r.build_id, r.status,
               (r.last_heartbeat_at IS NULL
                OR r.last_heartbeat_at <= now() - make_interval(secs => :stale_after_s))
                   AS is_stale
          FROM worker_registrations r
         WHERE r.namespace = :namespace AND r.status <> 'deregistered') w;

-- name: schedule_lag
-- Active schedules of :namespace that are due (next_fire_at <= now()) but not fired yet, those
-- late by :late_after_s or more, and the oldest such next_fire_at with its lag. Only the due
-- schedules are read (a range of schedules_due_idx).
SELECT count(*) AS due_count,
       count(*) FILTER (WHERE s.next_fire_at <= now() - make_interval(secs => :late_after_s))
           AS late_count,
       min(s.next_fire_at) AS oldest_next_fire_at,
       floor(extract(epoch FROM now() - min(s.next_fire_at)))::bigint AS max_lag_s
  FROM schedules s
 WHERE s.status = 'active' AND s.next_fire_at <= now() AND s.namespace = :namespace;

-- name: backend_facts
-- The database server (version, connection limit, this database's connections) and the
-- newest migration applied.
SELECT current_setting('server_version') AS server_version,
       current_setting('server_version_num')::int AS server_version_num,
       current_setting('max_connections')::int AS max_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database())
           AS database_connections,
       (SELECT max(version) FROM dwtrio_schema_migrations) AS schema_version;
