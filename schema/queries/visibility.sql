-- Visibility (GET /api/workflows, docs/visibility.md). Every filter parameter is off
-- when NULL. The store plans these with custom plans (set_custom_plans first, in the
-- same transaction), so the NULL tests fold away and what remains meets the indexes.
-- Three variants differ only in how many number/date-time range attributes they join
-- (a semi-join is only planned as one when it is not under an OR). :archived is false
-- by default (archived runs hidden), true for archived runs only, NULL for both.

-- name: set_custom_plans
-- Plan this transaction's statements for their parameter values (never a generic plan),
-- without parallel workers (a page of 50 rows never gains from them; they cost ms to start).
SELECT set_config('plan_cache_mode', 'force_custom_plan', true),
       set_config('max_parallel_workers_per_gather', '0', true);

-- name: list_visibility_page_0
-- Visibility list page, newest first, keyset paged after (after_started_at, after_run_id); no range attribute.
SELECT r.id AS run_id, r.workflow_id, r.namespace, r.workflow_type, r.business_key, r.status,
       r.status_bucket, r.task_queue, r.payload_codec, r.memo, r.search_attributes,
       r.started_at, r.closed_at
  FROM workflow_runs r
 WHERE r.namespace = :namespace
   AND (:status_bucket::text IS NULL OR r.status_bucket = :status_bucket::text)
   AND (:status::text IS NULL OR r.status = :status::text)
   AND (:workflow_type::text IS NULL OR r.workflow_type = :workflow_type::text)
   AND (:task_queue::text IS NULL OR r.task_queue = :task_queue::text)
   AND (:workflow_id::text IS NULL OR r.workflow_id = :workflow_id::text)
   AND (:run_id::text IS NULL OR r.id = :run_id::text)
   AND (:build_id::text IS NULL OR r.compatibility = :build_id::text)
   AND (:archived::boolean IS NOT FALSE OR r.archived_at IS NULL)
   AND (:archived::boolean IS NOT TRUE OR r.archived_at IS NOT NULL)
   AND (:id_prefix::text IS NULL OR (r.workflow_id ~>=~ :id_prefix::text
                                     AND r.workflow_id ~<~ :id_prefix_end::text))
   AND (:started_gt::timestamptz IS NULL OR r.started_at > :started_gt::timestamptz)
   AND (:started_ge::timestamptz IS NULL OR r.started_at >= :started_ge::timestamptz)
   AND (:started_lt::timestamptz IS NULL OR r.started_at < :started_lt::timestamptz)
   AND (:started_le::timestamptz IS NULL OR r.started_at <= :started_le::timestamptz)
   AND (:closed_gt::timestamptz IS NULL OR r.closed_at > :closed_gt::timestamptz)
   AND (:closed_ge::timestamptz IS NULL OR r.closed_at >= :closed_ge::timestamptz)
   AND (:closed_lt::timestamptz IS NULL OR r.closed_at < :closed_lt::timestamptz)
   AND (:closed_le::timestamptz IS NULL OR r.closed_at <= :closed_le::timestamptz)
   AND (:contains::jsonb IS NULL OR r.search_attributes @> :contains::jsonb)
   AND (:substring::text IS NULL OR strpos(r.workflow_id, :substring::text) > 0
                                 OR strpos(COALESCE(r.business_key, ''), :substring::text) > 0)
   AND (:after_run_id::text IS NULL
        OR (r.started_at, r.id) < (:after_started_at::timestamptz, :after_run_id::text))
 ORDER BY r.started_at DESC, r.id DESC
 LIMIT :limit;

-- name: list_visibility_page_1
-- Visibility list page, newest first, keyset paged after (after_started_at, after_run_id); one number/date-time range attribute (r1_*).
SELECT r.id AS run_id, r.workflow_id, r.namespace, r.workflow_type, r.business_key, r.status,
       r.status_bucket, r.task_queue, r.payload_codec, r.memo, r.search_attributes,
       r.started_at, r.closed_at
  FROM workflow_runs r
 WHERE r.namespace = :namespace
   AND (:status_bucket::text IS NULL OR r.status_bucket = :status_bucket::text)
   AND (:status::text IS NULL OR r.status = :status::text)
   AND (:workflow_type::text IS NULL OR r.workflow_type = :workflow_type::text)
   AND (:task_queue::text IS NULL OR r.task_queue = :task_queue::text)
   AND (:workflow_id::text IS NULL OR r.workflow_id = :workflow_id::text)
   AND (:run_id::text IS NULL OR r.id = :run_id::text)
   AND (:build_id::text IS NULL OR r.compatibility = :build_id::text)
   AND (:archived::boolean IS NOT FALSE OR r.archived_at IS NULL)
   AND (:archived::boolean IS NOT TRUE OR r.archived_at IS NOT NULL)
   AND (:id_prefix::text IS NULL OR (r.workflow_id ~>=~ :id_prefix::text
                                     AND r.workflow_id ~<~ :id_prefix_end::text))
   AND (:started_gt::timestamptz IS NULL OR r.started_at > :started_gt::timestamptz)
   AND (:started_ge::timestamptz IS NULL OR r.started_at >= :started_ge::timestamptz)
   AND (:started_lt::timestamptz IS NULL OR r.started_at < :started_lt::timestamptz)
   AND (:started_le::timestamptz IS NULL OR r.started_at <= :started_le::timestamptz)
   AND (:closed_gt::timestamptz IS NULL OR r.closed_at > :closed_gt::timestamptz)
   AND (:closed_ge::timestamptz IS NULL OR r.closed_at >= :closed_ge::timestamptz)
   AND (:closed_lt::timestamptz IS NULL OR r.closed_at < :closed_lt::timestamptz)
   AND (:closed_le::timestamptz IS NULL OR r.closed_at <= :closed_le::timestamptz)
   AND (:contains::jsonb IS NULL OR r.search_attributes @> :contains::jsonb)
   AND (:substring::text IS NULL OR strpos(r.workflow_id, :substring::text) > 0
                                 OR strpos(COALESCE(r.business_key, ''), :substring::text) > 0)
   AND r.id IN (SELECT a.run_id FROM workflow_search_attributes a
                 WHERE a.namespace = :namespace AND a.key = :r1_key::text
                   AND (:r1_double_gt::float8 IS NULL OR a.value_double > :r1_double_gt::float8)
                   AND (:r1_double_ge::float8 IS NULL OR a.value_double >= :r1_double_ge::float8)
                   AND (:r1_double_lt::float8 IS NULL OR a.value_double < :r1_double_lt::float8)
                   AND (:r1_double_le::float8 IS NULL OR a.value_double <= :r1_double_le::float8)
                   AND (:r1_time_gt::timestamptz IS NULL OR a.value_datetime > :r1_time_gt::timestamptz)
                   AND (:r1_time_ge::timestamptz IS NULL OR a.value_datetime >= :r1_time_ge::timestamptz)
                   AND (:r1_time_lt::timestamptz IS NULL OR a.value_datetime < :r1_time_lt::timestamptz)
                   AND (:r1_time_le::timestamptz IS NULL OR a.value_datetime <= :r1_time_le::timestamptz))
   AND (:after_run_id::text IS NULL
        OR (r.started_at, r.id) < (:after_started_at::timestamptz, :after_run_id::text))
 ORDER BY r.started_at DESC, r.id DESC
 LIMIT :limit;

-- name: list_visibility_page_2
-- Visibility list page, newest first, keyset paged after (after_started_at, after_run_id); two range attributes (r1_*, r2_*).
SELECT r.id AS run_id, r.workflow_id, r.namespace, r.workflow_type, r.business_key, r.status,
       r.status_bucket, r.task_queue, r.payload_codec, r.memo, r.search_attributes,
       r.started_at, r.closed_at
  FROM workflow_runs r
 WHERE r.namespace = :namespace
   AND (:status_bucket::text IS NULL OR r.status_bucket = :status_bucket::text)
   AND (:status::text IS NULL OR r.status = :status::text)
   AND (:workflow_type::text IS NULL OR r.workflow_type = :workflow_type::text)
   AND (:task_queue::text IS NULL OR r.task_queue = :task_queue::text)
   AND (:workflow_id::text IS NULL OR r.workflow_id = :workflow_id::text)
   AND (:run_id::text IS NULL OR r.id = :run_id::text)
   AND (:build_id::text IS NULL OR r.compatibility = :build_id::text)
   AND (:archived::boolean IS NOT FALSE OR r.archived_at IS NULL)
   AND (:archived::boolean IS NOT TRUE OR r.archived_at IS NOT NULL)
   AND (:id_prefix::text IS NULL OR (r.workflow_id ~>=~ :id_prefix::text
                                     AND r.workflow_id ~<~ :id_prefix_end::text))
   AND (:started_gt::timestamptz IS NULL OR r.started_at > :started_gt::timestamptz)
   AND (:started_ge::timestamptz IS NULL OR r.started_at >= :started_ge::timestamptz)
   AND (:started_lt::timestamptz IS NULL OR r.started_at < :started_lt::timestamptz)
   AND (:started_le::timestamptz IS NULL OR r.started_at <= :started_le::timestamptz)
   AND (:closed_gt::timestamptz IS NULL OR r.closed_at > :closed_gt::timestamptz)
   AND (:closed_ge::timestamptz IS NULL OR r.closed_at >= :closed_ge::timestamptz)
   AND (:closed_lt::timestamptz IS NULL OR r.closed_at < :closed_lt::timestamptz)
   AND (:closed_le::timestamptz IS NULL OR r.closed_at <= :closed_le::timestamptz)
   AND (:contains::jsonb IS NULL OR r.search_attributes @> :contains::jsonb)
   AND (:substring::text IS NULL OR strpos(r.workflow_id, :substring::text) > 0
                                 OR strpos(COALESCE(r.business_key, ''), :substring::text) > 0)
   AND r.id IN (SELECT a.run_id FROM workflow_search_attributes a
                 WHERE a.namespace = :namespace AND a.key = :r1_key::text
                   AND (:r1_double_gt::float8 IS NULL OR a.value_double > :r1_double_gt::float8)
                   AND (:r1_double_ge::float8 IS NULL OR a.value_double >= :r1_double_ge::float8)
                   AND (:r1_double_lt::float8 IS NULL OR a.value_double < :r1_double_lt::float8)
                   AND (:r1_double_le::float8 IS NULL OR a.value_double <= :r1_double_le::float8)
                   AND (:r1_time_gt::timestamptz IS NULL OR a.value_datetime > :r1_time_gt::timestamptz)
                   AND (:r1_time_ge::timestamptz IS NULL OR a.value_datetime >= :r1_time_ge::timestamptz)
                   AND (:r1_time_lt::timestamptz IS NULL OR a.value_datetime < :r1_time_lt::timestamptz)
                   AND (:r1_time_le::timestamptz IS NULL OR a.value_datetime <= :r1_time_le::timestamptz))
   AND r.id IN (SELECT a.run_id FROM workflow_search_attributes a
                 WHERE a.namespace = :namespace AND a.key = :r2_key::text
                   AND (:r2_double_gt::float8 IS NULL OR a.value_double > :r2_double_gt::float8)
                   AND (:r2_double_ge::float8 IS NULL OR a.value_double >= :r2_double_ge::float8)
                   AND (:r2_double_lt::float8 IS NULL OR a.value_double < :r2_double_lt::float8)
                   AND (:r2_double_le::float8 IS NULL OR a.value_double <= :r2_double_le::float8)
                   AND (:r2_time_gt::timestamptz IS NULL OR a.value_datetime > :r2_time_gt::timestamptz)
                   AND (:r2_time_ge::timestamptz IS NULL OR a.value_datetime >= :r2_time_ge::timestamptz)
                   AND (:r2_time_lt::timestamptz IS NULL OR a.value_datetime < :r2_time_lt::timestamptz)
                   AND (:r2_time_le::timestamptz IS NULL OR a.value_datetime <= :r2_time_le::timestamptz))
   AND (:after_run_id::text IS NULL
        OR (r.started_at, r.id) < (:after_started_at::timestamptz, :after_run_id::text))
 ORDER BY r.started_at DESC, r.id DESC
 LIMIT :limit;
