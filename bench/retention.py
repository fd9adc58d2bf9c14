"""retention: how fast expired runs are pruned, and what pruning costs parked polls.

Bulk-loads ``--run-count`` closed runs (default 100k) into the default namespace with
SQL, each closed 400 days ago and carrying ``--events`` history events (default
20) plus one of every row that hangs off a run (a workflow and an activity task,
an activity execution and attempt, a timer, start/signal/update commands with
their signal and update rows, a failure, a child call, a search-attribute
row and a closed stream with one item), VACUUM ANALYZEs, then starts one dwtrio with the retention loop idle.

In that one server run it measures:

* **wake latency**, alternating: a batch of poll-latency wakes
  (``bench.poll_latency.measure``) with the pruner paused (the reference), then a
  batch while ``POST /api/system/retention/pass`` requests (``--pass-limit`` runs
  each, in transactions of ``--batch``) go back to back from another thread, and
  so on until the backlog is gone; alternating keeps both sides in the same
  stretch of the machine's load;
* **prune rate**: runs (and history events) deleted per second of pass time
  (the time the pass requests were in flight).

Every loop here is bounded in count and in time, and everything is on loopback.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import asyncpg

from bench.harness import (
    RawConnection,
    bench_database,
    dwtrio_server,
    percentiles,
    progress,
    table,
    write_result,
)
from bench.poll_latency import measure

#: One statement per batch of ``$3`` runs numbered from ``$2``: instances, runs and
#: everything that hangs off a run; ``$1`` is the namespace, ``$4`` the events per run,
#: ``$5`` how many days ago the runs closed, ``$6`` the id prefix.
LOAD_SQL = """
WITH g AS (
    SELECT i, $6::text || lpad(i::text, 9, '0') AS k
      FROM generate_series($2::int, $2::int + $3::int - 1) AS i
), inst AS (
    INSERT INTO workflow_instances (workflow_id, namespace, workflow_type, current_run_id,
                                    run_count)
    SELECT 'wf-' || k, $1, 'bench', 'run-' || k, 1 FROM g
), runs AS (
    INSERT INTO workflow_runs (id, workflow_id, namespace, run_number, workflow_type, status,
                               closed_reason, started_at, closed_at, last_history_sequence)
    SELECT 'run-' || k, 'wf-' || k, $1, 1, 'bench', 'completed', 'completed',
           now() - make_interval(days => $5::int, secs => 60),
           now() - make_interval(days => $5::int), $4::int
      FROM g
), events AS (
    INSERT INTO history_events (id, run_id, sequence, event_type)
    SELECT 'ev-' || k || '-' || s, 'run-' || k, s, 'Bench' FROM g, generate_series(1, $4::int) s
), acts AS (
    INSERT INTO activity_executions (id, run_id, workflow_id, namespace, sequence,
                                     activity_type, task_queue, status)
    SELECT 'ae-' || k, 'run-' || k, 'wf-' || k, $1, 2, 'act', 'q', 'completed' FROM g
), tasks AS (
    INSERT INTO workflow_tasks (id, namespace, task_queue, kind, run_id, workflow_id,
                                workflow_type, state, activity_execution_id, activity_type)
    SELECT 'wt-' || k, $1, 'q', 'workflow', 'run-' || k, 'wf-' || k, 'bench', 'completed',
           NULL, NULL FROM g
    UNION ALL
    SELECT 'at-' || k, $1, 'q', 'activity', 'run-' || k, 'wf-' || k, 'bench', 'completed',
           'ae-' || k, 'act' FROM g
), attempts AS (
    INSERT INTO activity_attempts (id, activity_execution_id, run_id, task_id, attempt_number,
                                   lease_owner, status)
    SELECT 'aa-' || k, 'ae-' || k, 'run-' || k, 'at-' || k, 1, 'w', 'completed' FROM g
), timers_ AS (
    INSERT INTO timers (id, run_id, sequence, delay_seconds, fire_at, state)
    SELECT 'tm-' || k, 'run-' || k, 3, 1, now() - make_interval(days => $5::int), 'fired'
      FROM g
), commands AS (
    INSERT INTO workflow_commands (id, namespace, workflow_id, run_id, command_type, status)
    SELECT c || '-' || k, $1, 'wf-' || k, 'run-' || k, t, 'accepted'
      FROM g, (VALUES ('cs', 'start'), ('cg', 'signal'), ('cu', 'update')) AS v (c, t)
), signals AS (
    INSERT INTO workflow_signals (id, command_id, workflow_id, run_id, signal_name)
    SELECT 'sg-' || k, 'cg-' || k, 'wf-' || k, 'run-' || k, 'poke' FROM g
), updates AS (
    INSERT INTO workflow_updates (id, command_id, workflow_id, run_id, update_name)
    SELECT 'up-' || k, 'cu-' || k, 'wf-' || k, 'run-' || k, 'set' FROM g
), failures AS (
    INSERT INTO workflow_failures (id, run_id, source_kind, failure_category)
    SELECT 'fl-' || k, 'run-' || k, 'activity', 'activity' FROM g
), children AS (
    INSERT INTO child_workflow_calls (id, parent_run_id, parent_workflow_id, sequence,
                                      child_workflow_id, child_workflow_type, task_queue,
                                      status)
    SELECT 'cc-' || k, 'run-' || k, 'wf-' || k, 4, 'child-' || k, 'bench', 'q', 'completed'
      FROM g
), streams AS (
    INSERT INTO workflow_streams (run_id, stream_name, namespace, workflow_id, status,
                                  last_offset, total_items)
    SELECT 'run-' || k, 'out', $1, 'wf-' || k, 'closed', 0, 1 FROM g
), stream_items AS (
    INSERT INTO workflow_stream_items (run_id, stream_name, item_offset, origin)
    SELECT 'run-' || k, 'out', 0, 'bench' FROM g
)
INSERT INTO workflow_search_attributes (run_id, key, namespace, value_double)
SELECT 'run-' || k, 'Score', $1, i FROM g
"""

#: Every table with rows of a run, and the column naming the run.
RUN_TABLES: tuple[tuple[str, str], ...] = (
    ("workflow_runs", "id"),
    ("history_events", "run_id"),
    ("workflow_tasks", "run_id"),
    ("activity_executions", "run_id"),
    ("activity_attempts", "run_id"),
    ("timers", "run_id"),
    ("workflow_commands", "run_id"),
    ("workflow_signals", "run_id"),
    ("workflow_updates", "run_id"),
    ("workflow_failures", "run_id"),
    ("child_workflow_calls", "parent_run_id"),
    ("workflow_search_attributes", "run_id"),
    ("workflow_streams", "run_id"),
    ("workflow_stream_items", "run_id"),
)


async def load_expired_runs(
    conn: Any,
    *,
    namespace: str,
    runs: int,
    events_per_run: int = 20,
    closed_days_ago: int = 400,
    prefix: str = "x",
    batch: int = 5000,
    start: int = 0,
    on_batch: Any = None,
) -> None:
    """Insert ``runs`` closed runs (ids ``run-<prefix><n>``) with everything a run has."""
    for first in range(start, start + runs, batch):
        n = min(batch, start + runs - first)
        async with conn.transaction():
            await conn.execute(
                LOAD_SQL, namespace, first, n, events_per_run, closed_days_ago, prefix
            )
        if on_batch is not None:
            on_batch(n)


async def rows_of_runs(conn: Any, like: str) -> dict[str, int]:
    """How many rows of runs whose id matches ``like`` each run table holds."""
    counts: dict[str, int] = {}
    for name, column in RUN_TABLES:
        counts[name] = await conn.fetchval(
            f"SELECT count(*) FROM {name} WHERE {column} LIKE $1",
            like,
        )
    counts["workflow_instances"] = await conn.fetchval(
        "SELECT count(*) FROM workflow_instances WHERE current_run_id LIKE $1 "
        "OR workflow_id LIKE $2",
        like,
        "wf-" + like.removeprefix("run-"),
    )
    return counts


def _load(dsn: str, runs: int, events: int) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "INSERT INTO namespaces (name) VALUES ('default') ON CONFLICT DO NOTHING"
            )
            bar = progress(runs, "retention load", "run")
            await load_expired_runs(
                conn, namespace="default", runs=runs, events_per_run=events, on_batch=bar.update
            )
            bar.close()
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()

    asyncio.run(go())


class _Pruner(threading.Thread):
    """Sends retention passes back to back while ``go`` is set, until one prunes
    nothing or the deadline passes; ``idle`` is set whenever no pass is in flight."""

    def __init__(self, url: str, deadline: float, limit: int) -> None:
        super().__init__(daemon=True)
        self.url, self.deadline, self.limit = url, deadline, limit
        self.go, self.idle, self.done = threading.Event(), threading.Event(), threading.Event()
        self.idle.set()
        self.pruned = self.events = self.passes = self.failed = 0
        self.busy_s = 0.0

    def run(self) -> None:
        conn = RawConnection(self.url)
        try:
            while time.monotonic() < self.deadline:
                if not self.go.wait(0.2):
                    continue
                self.idle.clear()
                started = time.monotonic()
                status, body = conn.request(
                    "POST", "/api/system/retention/pass", _CP, {"limit": self.limit}
                )
                self.busy_s += time.monotonic() - started
                self.idle.set()
                assert status in (200, 207), body
                self.passes += 1
                self.pruned += body["pruned"]
                self.events += body["pruned_history_events"]
                self.failed += body["failed"]
                if body["processed"] == 0:
                    break
        finally:
            self.idle.set()
            self.done.set()
            conn.close()


_CP = {"X-Durable-Workflow-Control-Plane-Version": "2"}


def run(args: Any) -> dict[str, Any]:
    runs, events, samples = args.run_count, args.events, args.samples
    idle: list[float] = []
    during: list[float] = []
    with bench_database(args.dsn) as dsn:
        assert dsn, "the retention bench needs --dsn (a Postgres it may create a database in)"
        extra = {"DW_RETENTION_ENABLED": "0", "DW_RETENTION_BATCH_SIZE": str(args.batch)}
        with dwtrio_server(dsn=dsn, extra_env=extra) as url:
            t0 = time.monotonic()
            _load(dsn, runs, events)
            load_s = time.monotonic() - t0
            pruner = _Pruner(url, time.monotonic() + args.max_seconds, args.pass_limit)
            pruner.start()
            # Alternate: a batch of wakes with the pruner paused (the reference), then one
            # while it prunes, so both see the same machine; bounded by count and time.
            for _ in range(args.max_batches):
                if pruner.done.is_set():
                    break
                pruner.go.clear()
                pruner.idle.wait(60)
                idle += measure(url, args.pollers, samples)
                pruner.go.set()
                during += measure(url, args.pollers, samples)
            pruner.go.set()
            pruner.join(args.max_seconds + 30)
    rows = [
        {"case": "pruner paused (reference)", **percentiles(idle), "n": len(idle)},
        {"case": "while pruning", **percentiles(during), "n": len(during)},
    ]
    busy = max(pruner.busy_s, 1e-9)
    rate = {
        "runs": pruner.pruned,
        "history_events": pruner.events,
        "pruning_seconds": round(pruner.busy_s, 2),
        "runs_per_s": round(pruner.pruned / busy),
        "events_per_s": round(pruner.events / busy),
        "passes": pruner.passes,
        "failed": pruner.failed,
        "batch": args.batch,
        "pass_limit": args.pass_limit,
        "load_s": round(load_s, 1),
    }
    print(table(rows, ["case", "p50", "p90", "p99", "max", "n"]))
    print(rate)
    result = {"wake_latency_ms": rows, "prune": rate, "runs_loaded": runs, "events": events}
    write_result("retention", result)
    return result
