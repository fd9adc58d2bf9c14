-- Runs per namespace and status, kept as counters (GET /api/system/operator-metrics,
-- docs/operations.md).
--
-- Counting workflow_runs by status on every call would read every run of a
-- namespace (a million rows is a second or more). Instead each change of a run's
-- status class adds to or takes from a counter row in the same transaction, so the
-- counts are exact at every commit and reading them sums a handful of rows.
--
-- The class is 'open' for pending, running and waiting (those move on every
-- workflow task, and counting them apart would put a counter write on the hottest
-- path), else the closed status itself. So a start writes one counter, a close
-- writes two, and the updates in between write none: the UPDATE trigger's WHEN
-- clause, evaluated without calling any function body, lets only class changes
-- through.
--
-- Every counter is split over 16 shard rows, picked by the writing backend's pid:
-- two transactions on different connections that start or close runs of the same
-- namespace at the same time usually touch different rows, so they do not queue on
-- one row lock. A reader adds the shards up.
--
-- Inserts and deletes count per statement (transition tables), so a bulk load or a
-- namespace deletion writes one counter change per (namespace, class), not one per
-- run; an update counts per row, but only the rows whose class changes.
CREATE TABLE run_status_counts (
    namespace  text     NOT NULL,
    status     text     NOT NULL,  -- 'open', 'completed', 'failed', 'cancelled', 'terminated'
    shard      smallint NOT NULL,
    count      bigint   NOT NULL,
    PRIMARY KEY (namespace, status, shard)
);
COMMENT ON TABLE run_status_counts IS
    'Runs per namespace and status class, split over shard rows; maintained by triggers on workflow_runs.';

CREATE FUNCTION dwtrio_run_status_class(status text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN status IN ('pending', 'running', 'waiting') THEN 'open' ELSE status END
$$;

CREATE FUNCTION dwtrio_count_runs_inserted() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_status_counts AS c (namespace, status, shard, count)
    SELECT n.namespace, dwtrio_run_status_class(n.status), pg_backend_pid() % 16, count(*)
      FROM inserted_runs n
     GROUP BY 1, 2
     ORDER BY 1, 2
    ON CONFLICT (namespace, status, shard) DO UPDATE SET count = c.count + EXCLUDED.count;
    RETURN NULL;
END $$;

CREATE FUNCTION dwtrio_count_runs_deleted() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_status_counts AS c (namespace, status, shard, count)
    SELECT o.namespace, dwtrio_run_status_class(o.status), pg_backend_pid() % 16, -count(*)
      FROM deleted_runs o
     GROUP BY 1, 2
     ORDER BY 1, 2
    ON CONFLICT (namespace, status, shard) DO UPDATE SET count = c.count + EXCLUDED.count;
    RETURN NULL;
END $$;

CREATE FUNCTION dwtrio_count_run_transition() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    -- Both rows in key order, so two transitions never lock the same pair of rows in
    -- opposite orders.
    INSERT INTO run_status_counts AS c (namespace, status, shard, count)
    SELECT t.namespace, t.status, pg_backend_pid() % 16, t.delta
      FROM (VALUES (OLD.namespace, dwtrio_run_status_class(OLD.status), -1),
                   (NEW.namespace, dwtrio_run_status_class(NEW.status), 1))
               AS t(namespace, status, delta)
     ORDER BY 1, 2
    ON CONFLICT (namespace, status, shard) DO UPDATE SET count = c.count + EXCLUDED.count;
    RETURN NULL;
END $$;

CREATE TRIGGER workflow_runs_count_insert
    AFTER INSERT ON workflow_runs
    REFERENCING NEW TABLE AS inserted_runs
    FOR EACH STATEMENT EXECUTE FUNCTION dwtrio_count_runs_inserted();
CREATE TRIGGER workflow_runs_count_delete
    AFTER DELETE ON workflow_runs
    REFERENCING OLD TABLE AS deleted_runs
    FOR EACH STATEMENT EXECUTE FUNCTION dwtrio_count_runs_deleted();
CREATE TRIGGER workflow_runs_count_transition
    AFTER UPDATE OF status, namespace ON workflow_runs
    FOR EACH ROW
    WHEN (OLD.namespace IS DISTINCT FROM NEW.namespace
          OR (CASE WHEN OLD.status IN ('pending', 'running', 'waiting') THEN 'open'
                   ELSE OLD.status END)
             IS DISTINCT FROM
             (CASE WHEN NEW.status IN ('pending', 'running', 'waiting') THEN 'open'
                   ELSE NEW.status END))
    EXECUTE FUNCTION dwtrio_count_run_transition();

-- The runs that exist now (a server upgraded in place), in shard 0.
INSERT INTO run_status_counts (namespace, status, shard, count)
SELECT namespace, dwtrio_run_status_class(status), 0, count(*)
  FROM workflow_runs
 GROUP BY 1, 2;
