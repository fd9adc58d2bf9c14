"""retention: how fast expired runs are pruned, and what pruning costs parked polls.

Bulk-loads ``--runs`` closed runs (default 100k) into the default namespace with
SQL, each closed 400 days ago and carrying ``--events`` history events (default
20) plus one of every row that hangs off a run (a workflow and an activity task,
an activity execution and attempt, a timer, start/signal/update commands with
their signal and update rows, a failure, a child call and a search-attribute
row), VACUUM ANALYZEs, then starts one dwtrio with the retention loop idle.

In that one server run it measures:

* **idle**: poll-latency wakes (``bench.poll_latency.measure``) with nothing else
  going on, the reference;
* **pruning**: the same wakes while ``POST /api/system/retention/pass`` requests
  (limit 1000, batches of ``--batch`` runs) are sent back to back from another
  thread until the backlog is gone; the prune rate is runs (and history events)
  deleted per second of wall time over the whole backlog.

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


def _prune_until_empty(url: str, deadline: float, out: dict[str, Any]) -> None:
    """Send retention passes back to back until one prunes nothing (or the deadline)."""
    conn = RawConnection(url)
    pruned = events = passes = failed = 0
    started = time.monotonic()
    try:
        while time.monotonic() < deadline:
            status, body = conn.request("POST", "/api/system/retention/pass", _CP, {"limit": 1000})
            assert status in (200, 207), body
            passes += 1
            pruned += body["pruned"]
            events += body["pruned_history_events"]
            failed += body["failed"]
            if body["processed"] == 0:
                break
    finally:
        conn.close()
    out.update(
        seconds=time.monotonic() - started,
        pruned=pruned,
        events=events,
        passes=passes,
        failed=failed,
    )


_CP = {"X-Durable-Workflow-Control-Plane-Version": "2"}


def run(args: Any) -> dict[str, Any]:
    runs, events, samples = args.runs, args.events, args.samples
    with bench_database(args.dsn) as dsn:
        assert dsn, "the retention bench needs --dsn (a Postgres it may create a database in)"
        extra = {
            "DW_RETENTION_ENABLED": "0",
            "DW_RETENTION_BATCH_SIZE": str(args.batch),
            "DW_AUTH_DRIVER": "none",
        }
        with dwtrio_server(dsn=dsn, extra_env=extra) as url:
            t0 = time.monotonic()
            _load(dsn, runs, events)
            load_s = time.monotonic() - t0
            idle = measure(url, args.pollers, samples)
            out: dict[str, Any] = {}
            pruner = threading.Thread(
                target=_prune_until_empty, args=(url, time.monotonic() + args.max_seconds, out)
            )
            pruner.start()
            during: list[float] = []
            # Wakes while the pruner runs, a sample batch at a time (bounded by count).
            for _ in range(args.max_batches):
                if not pruner.is_alive():
                    break
                during += measure(url, args.pollers, samples)
            pruner.join(args.max_seconds + 30)
    rows = [
        {"case": "idle (reference)", **percentiles(idle), "n": len(idle)},
        {"case": "while pruning", **percentiles(during), "n": len(during)},
    ]
    rate = {
        "runs": out.get("pruned", 0),
        "history_events": out.get("events", 0),
        "seconds": round(out.get("seconds", 0.0), 2),
        "runs_per_s": round(out.get("pruned", 0) / max(out.get("seconds", 1e-9), 1e-9)),
        "events_per_s": round(out.get("events", 0) / max(out.get("seconds", 1e-9), 1e-9)),
        "passes": out.get("passes", 0),
        "failed": out.get("failed", 0),
        "batch": args.batch,
        "load_s": round(load_s, 1),
    }
    print(table(rows, ["case", "p50", "p90", "p99", "max", "n"]))
    print(rate)
    result = {"wake_latency_ms": rows, "prune": rate, "runs_loaded": runs, "events": events}
    write_result("retention", result)
    return result
