-- Archived runs (POST /api/workflows/{wf}/archive, docs/workflow-maintenance.md).
--
-- The archive stamps (archived_at, archive_command_id, archive_reason) are columns of
-- workflow_runs since 0001. The default list hides archived runs with a plain filter
-- (archived_at IS NULL) on the list indexes it already uses: archived runs are few
-- beside the rest, so the filter discards almost nothing. Listing the archived runs
-- only (?archived=true) walks this small partial index instead of every run.
CREATE INDEX workflow_runs_archived_list_idx
    ON workflow_runs (namespace, started_at DESC, id DESC)
    WHERE archived_at IS NOT NULL;
