"""Drill 3: an API node killed with SIGKILL under load.

Two ``dwtrio serve`` nodes behind nginx on a PostgreSQL and a Redis of the drill's
own, two SDK worker processes and the SDK load (``workload.py``), all through nginx. Seven seconds into the load, once node A holds parked polls, it is
SIGKILLed: its parked polls and the requests it was serving (workflow and activity
completions among them) die with it. nginx sends what it can to node B, the SDK
retries the rest there. A stays down 4 s, then starts again on its port.

The books (``books.py``) must be clean: every acknowledged start completed exactly once
with its result, activities within their retry policy, histories without a gap or a
duplicate. The leases the dead node's answers carried (a poll answered to a worker that
never got it) expire and are repaired (counted); no node logs a 5xx or a poll held past
its timeout; the SDK workers survive. Figures: ``drill_node_kill``.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import trio
from books import check
from cluster.processes import NodeProcess, process_cluster
from figures import drill_figures, publish
from harness import (
    SHORT_LEASES,
    DrillLoad,
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
LOAD = DrillLoad(seconds=20, rate=6, fault_at_s=7)
DOWN_S = 4.0

_POLLS_OPEN = re.compile(r"^dwtrio_polls_open(?:\{[^}]*\})? ([\d.e+]+)$", re.M)


async def parked_polls(node: NodeProcess, token: str) -> int:
    """How many long-polls ``node`` holds open now (its ``dwtrio_polls_open``)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=node.url, headers=headers, timeout=2) as c:
        r = await c.get("/metrics")
    r.raise_for_status()
    return int(sum(float(v) for v in _POLLS_OPEN.findall(r.text)))


#: nginx's error log line for a request a node dropped: the connection closed or was
#: reset under it (``upstream: "http://127.0.0.1:<port>/api/..."``).
_DROPPED = re.compile(
    r"(?:prematurely closed|reset by peer).*?request: \"(\S+) (\S+) .*?upstream: \"http://([^/\"]+)"
)


def dropped_by(nginx_log: Path, address: str) -> list[str]:
    """The requests nginx saw the node at ``address`` drop mid-answer (``METHOD path``)."""
    text = nginx_log.read_text(errors="replace") if nginx_log.exists() else ""
    return [f"{m[1]} {m[2]}" for m in _DROPPED.finditer(text) if m[3] == address]


async def test_drill_node_kill(aio_loop: None, tmp_path: Path) -> None:
    held: dict[str, object] = {}

    async def kill_node_a(w: Workload) -> None:
        a = w.cluster.nodes[0]
        with trio.move_on_after(3):  # until A holds parked polls (it nearly always does)
            while (polls := await parked_polls(a, w.cluster.token)) == 0:
                await trio.sleep(0.05)
        held["parked_polls_at_kill"] = polls
        w.mark("fault")
        await a.kill()
        await trio.sleep(DOWN_S)
        w.mark("restart")
        await a.start()
        w.mark("fault_end")

    async with (
        drill_database(tmp_path / "postgres") as (_, dsn),
        redis_server(tmp_path / "redis") as redis,
        process_cluster(
            tmp_path / "cluster", dsn=dsn, redis_url=redis.url, settings=SETTINGS
        ) as cluster,
    ):
        run = await run_drill(cluster, dsn, tmp_path / "drill", fault=kill_node_a, load=LOAD)
        requests = logged_requests(cluster)
        assert cluster.nginx is not None
        dropped = dropped_by(cluster.nginx.log, f"127.0.0.1:{cluster.nodes[0].port}")

    books = check(run.lines, run.books, run.activity_runs)
    figures = {
        "fault": f"node A SIGKILLed, restarted {DOWN_S:g} s later",
        **drill_figures(run, books),
        **held,
        "requests_dropped_by_node_a": len(dropped),
        "completions_dropped_by_node_a": sum(1 for r in dropped if r.endswith("/complete")),
        "polls_dropped_by_node_a": sum(1 for r in dropped if r.endswith("/poll")),
        "node_a_restart_s": round(run.marks["fault_end"] - run.marks["restart"], 2),
        "longest_poll_s": longest_poll(requests),
        "node_requests_logged": len(requests),
    }
    publish("drill_node_kill", figures)

    assert len(run.lines) == run.count
    assert books.acknowledged >= 0.9 * run.count, f"most starts failed: {run.unacked[:5]}"
    books.assert_clean()
    assert [x for x in run.lines if x.get("signal_failed")] == []
    for w in run.workers:
        assert w["survived"], f"an SDK worker's run loop died: {w}"
    errors = server_errors(requests)
    assert errors == [], "\n".join(errors[:20])
    late = [r.line for r in late_polls(requests, LOAD.poll_timeout_s)]
    assert late == [], "\n".join(late[:20])
    assert held["parked_polls_at_kill"], "node A held no parked poll when it was killed"
    assert figures["disruption_s"] is not None, f"completions never recovered: {figures}"
