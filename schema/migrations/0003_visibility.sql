-- Visibility filters that scale (GET /api/workflows, docs/visibility.md).
--
-- * Equality and membership on search attributes (keyword, text, bool,
--   keyword_list) use the existing GIN index workflow_runs_search_attributes_idx
--   through one containment test: search_attributes @> '{"Key": "v", "Tags": ["a"]}'.
-- * Ranges (and equality) on number and datetime attributes use typed rows in
--   workflow_search_attributes (data-model.md §2.11, the part a GIN index cannot
--   serve): one row per (run, key) whose value is a JSON number or an ISO-8601
--   date-time string, indexed (namespace, key, value_<type>).
-- * The rows are kept by a trigger on workflow_runs, the one exception to "no
--   triggers": search_attributes is written by several paths (start in one
--   statement, transactional start, continue-as-new, children, schedules, upsert)
--   and the typed rows must follow every one of them in the same transaction.
--   The trigger never fails a write: numbers out of double range and strings
--   that are not date-times are skipped.
-- * System attributes are columns; TaskQueue, a WorkflowId prefix and CloseTime
--   ranges get their own list indexes.

CREATE TABLE workflow_search_attributes (
    run_id          text             NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    key             text             NOT NULL,
    namespace       text             NOT NULL,
    value_double    double precision,
    value_datetime  timestamptz,
    -- The probe from a run (run_id, key) answers from the index alone.
    PRIMARY KEY (run_id, key) INCLUDE (namespace, value_double, value_datetime),
    CHECK (value_double IS NOT NULL OR value_datetime IS NOT NULL)
);
CREATE INDEX workflow_search_attributes_double_idx
    ON workflow_search_attributes (namespace, key, value_double)
    WHERE value_double IS NOT NULL;
CREATE INDEX workflow_search_attributes_datetime_idx
    ON workflow_search_attributes (namespace, key, value_datetime)
    WHERE value_datetime IS NOT NULL;
COMMENT ON TABLE workflow_search_attributes IS
    'Typed copies of the number and date-time search attributes of each run (range filters); kept by trigger.';

-- A date-time string as timestamptz, NULL when it is not one (never raises). A date
-- alone is midnight and a time without offset is UTC, as the server reads them.
CREATE FUNCTION dwtrio_search_attribute_datetime(value text) RETURNS timestamptz
    LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    IF value !~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$' THEN
        RETURN NULL;
    END IF;
    IF value ~ '[T ]\d{2}:\d{2}.*(Z|[+-]\d{2}(:?\d{2})?)$' THEN
        RETURN value::timestamptz;
    END IF;
    RETURN value::timestamp AT TIME ZONE 'UTC';
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

CREATE FUNCTION dwtrio_sync_search_attributes() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM workflow_search_attributes WHERE run_id = NEW.id;
    END IF;
    INSERT INTO workflow_search_attributes (run_id, key, namespace, value_double, value_datetime)
    SELECT NEW.id, t.key, NEW.namespace, t.d, t.ts
      FROM (SELECT e.key,
                   CASE WHEN jsonb_typeof(e.value) = 'number'
                             AND (abs(e.value::numeric) BETWEEN 1e-300 AND 1e300
                                  OR e.value::numeric = 0)
                        THEN e.value::numeric::double precision END AS d,
                   CASE WHEN jsonb_typeof(e.value) = 'string'
                             AND e.value #>> '{}' ~ '^\d{4}-\d\d-\d\d'  -- skip the call for most strings
                        THEN dwtrio_search_attribute_datetime(e.value #>> '{}') END AS ts
              FROM jsonb_each(CASE WHEN jsonb_typeof(NEW.search_attributes) = 'object'
                                   THEN NEW.search_attributes ELSE '{}'::jsonb END) e) t
     WHERE t.d IS NOT NULL OR t.ts IS NOT NULL;
    RETURN NULL;
END $$;

CREATE TRIGGER workflow_runs_search_attributes_insert
    AFTER INSERT ON workflow_runs
    FOR EACH ROW WHEN (NEW.search_attributes <> '{}'::jsonb)
    EXECUTE FUNCTION dwtrio_sync_search_attributes();
CREATE TRIGGER workflow_runs_search_attributes_update
    AFTER UPDATE OF search_attributes ON workflow_runs
    FOR EACH ROW WHEN (OLD.search_attributes IS DISTINCT FROM NEW.search_attributes)
    EXECUTE FUNCTION dwtrio_sync_search_attributes();

-- Rows for runs that existed before this migration.
INSERT INTO workflow_search_attributes (run_id, key, namespace, value_double, value_datetime)
SELECT t.id, t.key, t.namespace, t.d, t.ts
  FROM (SELECT r.id, r.namespace, e.key,
               CASE WHEN jsonb_typeof(e.value) = 'number'
                         AND (abs(e.value::numeric) BETWEEN 1e-300 AND 1e300
                              OR e.value::numeric = 0)
                    THEN e.value::numeric::double precision END AS d,
               CASE WHEN jsonb_typeof(e.value) = 'string'
                    THEN dwtrio_search_attribute_datetime(e.value #>> '{}') END AS ts
          FROM workflow_runs r, jsonb_each(r.search_attributes) e
         WHERE r.search_attributes <> '{}'::jsonb
           AND jsonb_typeof(r.search_attributes) = 'object') t
 WHERE t.d IS NOT NULL OR t.ts IS NOT NULL;

-- GET /workflows?task_queue=...  (TaskQueue = "...")
CREATE INDEX workflow_runs_list_queue_idx
    ON workflow_runs (namespace, task_queue, started_at DESC, id DESC);
-- WorkflowId STARTS_WITH "..." / workflow_id_prefix: a range in byte order.
CREATE INDEX workflow_runs_workflow_id_prefix_idx
    ON workflow_runs (namespace, workflow_id text_pattern_ops);
-- CloseTime ranges: closed runs only.
CREATE INDEX workflow_runs_closed_idx
    ON workflow_runs (namespace, closed_at DESC)
    WHERE closed_at IS NOT NULL;
-- GIN fast update keeps new entries in a pending list that every search scans;
-- under a steady start rate the default 4 MB list cost ms per filtered list.
-- A small list keeps searches quick; inserts still batch into it.
ALTER INDEX workflow_runs_search_attributes_idx SET (gin_pending_list_limit = 256);
