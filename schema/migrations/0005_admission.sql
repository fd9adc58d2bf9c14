-- Dispatch counters of the task-queue admission caps (docs/task-queues.md).
--
-- A claim on a queue with a dispatches-per-minute cap adds one to the counter of
-- each capped scope (the queue, its namespace, its budget group) for the current
-- UTC minute, in the claim's own transaction and under the scope's advisory lock,
-- so every node reads and moves the same numbers. Active-lease caps need no
-- counter: they count leased task rows (workflow_tasks_leased_queue_idx).
-- A minute's rows are dead two minutes later; each increment deletes its scope's
-- old rows, so the table holds a few rows per capped scope.
CREATE TABLE task_dispatch_counts (
    scope   text        NOT NULL,  -- 'queue:<ns>:<kind>:<queue>', 'namespace:<ns>:<kind>', 'group:<ns>:<kind>:<group>'
    minute  timestamptz NOT NULL,  -- date_trunc('minute', now())
    count   integer     NOT NULL,
    PRIMARY KEY (scope, minute)
);
COMMENT ON TABLE task_dispatch_counts IS
    'Per-minute dispatch counts of the admission scopes that have a dispatch cap.';
