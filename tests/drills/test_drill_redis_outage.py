"""Drill 2: Redis killed under load and started again.

Two nodes behind nginx on a PostgreSQL of the drill's own, a Redis of its own too
(``services.redis_server``) carrying their wakes, two SDK workers and the SDK load
(``workload.py``). Seven seconds into the load Redis gets SIGKILL; it stays down
:data:`DOWN_S` and starts again on the same port, empty.

Redis only speeds wakes up, so: both nodes stay ready (``/api/ready`` 200 throughout,
read every 0.1 s) with the ``cache`` check saying ``degraded`` while Redis is gone; the
books stay clean. Wakes between nodes fall back to each parked poll's recheck
(``DW_WORKER_POLL_INTERVAL_MS``, 1 s by default): a probe parks a raw poll on node A
every :data:`PROBE_EVERY_S` and starts a workflow for it through node B, and its
latency (the start's send to the poll's answer) is reported before, while and after
Redis is down. When Redis is back each node's bus subscribes again by itself: the
``degraded`` flag clears on both nodes and node A receives wakes from Redis again
(``dwtrio_wake_bus_received_total``). Figures: ``drill_redis_outage``.
"""

from __future__ import annotations

import re
import statistics
import time
import uuid
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from books import check
from cluster.processes import NodeProcess, ProcessCluster, process_cluster
from figures import drill_figures, p99, publish, rounded
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

from conftest import CP, WP

pytestmark = [pytest.mark.drill, pytest.mark.sdk, pytest.mark.slow]

SETTINGS = SHORT_LEASES
RECHECK_S = 1.0  # DW_WORKER_POLL_INTERVAL_MS's default, which the nodes keep
LOAD = DrillLoad(seconds=26, rate=6, fault_at_s=7)
DOWN_S = 8.0
PROBE_EVERY_S = 0.5
PROBE_POLL_S = 10  # a probe poll's own timeout

_RECEIVED = re.compile(r"^dwtrio_wake_bus_received_total(?:\{[^}]*\})? ([\d.e+]+)$", re.M)


async def wakes_received(node: NodeProcess, token: str) -> float:
    """How many wakes ``node``'s bus has received from the other node."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=node.url, headers=headers, timeout=5) as c:
        r = await c.get("/metrics")
    r.raise_for_status()
    return sum(float(v) for v in _RECEIVED.findall(r.text))


@attrs.define
class WakeProbe:
    """Cross-node wake latency: a raw workflow-task poll parked on node A for a queue of
    its own, then a workflow started on that queue through node B; the sample is from
    the start's send to the poll's answer (wall clock of the send, seconds)."""

    cluster: ProcessCluster
    samples: list[tuple[float, float]] = attrs.field(factory=list)
    failures: list[str] = attrs.field(factory=list)

    async def sample(self, a: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
        queue = f"probe-{uuid.uuid4().hex[:8]}"
        answered: dict[str, float] = {}

        async def poll() -> None:
            r = await a.post(
                "/api/worker/workflow-tasks/poll",
                headers=WP,
                json={
                    "worker_id": "wake-probe",
                    "task_queue": queue,
                    "timeout_seconds": PROBE_POLL_S,
                },
            )
            answered["at"] = time.time()
            if r.status_code != 200 or r.json().get("task") is None:
                self.failures.append(f"poll {r.status_code} {r.text[:200]}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.sleep(0.3)  # the poll is parked on node A
            sent = time.time()
            body = {
                "workflow_id": queue,
                "workflow_type": "probe",
                "task_queue": queue,
                "input": [],
            }
            r = await b.post("/api/workflows", headers=CP, json=body)
            if r.status_code != 201:
                self.failures.append(f"start {r.status_code} {r.text[:200]}")
                nursery.cancel_scope.cancel()
                return
        if "at" in answered:
            self.samples.append((sent, answered["at"] - sent))

    async def run(self) -> None:
        a, b = self.cluster.nodes
        async with self.cluster.client(a.url) as ca, self.cluster.client(b.url) as cb:
            while True:
                began = time.time()
                await self.sample(ca, cb)
                await trio.sleep(max(0.0, began + PROBE_EVERY_S - time.time()))

    def between(self, start: float, end: float) -> list[float]:
        return [lat for t, lat in self.samples if start <= t < end]


def summary(latencies: list[float]) -> dict[str, float | int | None]:
    return {
        "samples": len(latencies),
        "p50_s": rounded(statistics.median(latencies)) if latencies else None,
        "p99_s": rounded(p99(latencies)),
        "max_s": rounded(max(latencies)) if latencies else None,
    }


async def test_drill_redis_outage(aio_loop: None, tmp_path: Path) -> None:
    ready = ReadyTimeline()
    marks: dict[str, float] = {}

    async with (
        drill_database(tmp_path / "postgres") as (_, dsn),
        redis_server(tmp_path / "redis") as redis,
    ):

        async def kill_redis(w: Workload) -> None:
            w.mark("fault")
            await redis.kill()
            await trio.sleep(DOWN_S)
            w.mark("redis_restart")
            await redis.start()
            w.mark("fault_end")
            marks["received_at_restart"] = await wakes_received(w.cluster.nodes[0], w.cluster.token)

        async with process_cluster(
            tmp_path / "cluster", dsn=dsn, redis_url=redis.url, settings=SETTINGS
        ) as cluster:
            probe = WakeProbe(cluster)
            async with trio.open_nursery() as nursery:
                for node in cluster.nodes:
                    nursery.start_soon(ready.watch, node)
                nursery.start_soon(probe.run)
                run = await run_drill(cluster, dsn, tmp_path / "drill", fault=kill_redis, load=LOAD)
                nursery.cancel_scope.cancel()
            received_at_end = await wakes_received(cluster.nodes[0], cluster.token)
            requests = logged_requests(cluster)
            node_ids = [node.server_id for node in cluster.nodes]

    books = check(run.lines, run.books, run.activity_runs)
    fault, back = run.marks["fault"], run.marks["fault_end"]
    # Each node's bus: when it first said degraded after the kill, and when it stopped
    # saying so after Redis came back.
    degraded_at, resubscribed_after = {}, {}
    for node in node_ids:
        answers = ready.answers[node]
        degraded_at[node] = next((a.at for a in answers if a.at >= fault and a.degraded), None)
        healed = next((a.at for a in answers if a.at >= back and not a.degraded), None)
        resubscribed_after[node] = rounded(healed - back, 2) if healed is not None else None
    healed_all = max((v for v in resubscribed_after.values() if v is not None), default=0.0)
    wake = {
        "before": summary(probe.between(run.first_sent - 5, fault)),
        "degraded": summary(probe.between(fault + 1.5, back)),
        "after": summary(probe.between(back + healed_all + 0.5, run.drained)),
    }
    figures = {
        "fault": f"redis-server SIGKILLed, started again {DOWN_S:g} s later",
        **drill_figures(run, books),
        "ready_503_s": {
            node: round(ready.seconds(node, fault, run.drained, status=503), 2) for node in node_ids
        },
        "ready_unanswered_s": {
            node: round(ready.seconds(node, fault, run.drained, status=0), 2) for node in node_ids
        },
        "degraded_after_kill_s": {
            node: rounded(t - fault, 2) if t is not None else None
            for node, t in degraded_at.items()
        },
        "resubscribed_after_restart_s": resubscribed_after,
        "wake_latency": wake,
        "wake_probe_failures": len(probe.failures),
        "wakes_received_after_restart": received_at_end - marks["received_at_restart"],
        "longest_poll_s": longest_poll(requests),
        "node_requests_logged": len(requests),
    }
    publish("drill_redis_outage", figures)

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
    for node in node_ids:
        # Ready throughout: never a 503 (no answer within 2 s on a busy machine is counted).
        assert [a for a in ready.answers[node] if a.status == 503] == [], node
        assert degraded_at[node] is not None, f"{node} never said its wake bus was degraded"
        assert resubscribed_after[node] is not None, f"{node}'s wake bus never came back"
    assert probe.failures == [], probe.failures[:5]
    assert wake["degraded"]["samples"], "no wake sample while Redis was down"
    # Without Redis a wake waits for the recheck, never much longer (a busy machine adds a little).
    assert wake["degraded"]["max_s"] <= RECHECK_S + 1.5, wake
    assert figures["wakes_received_after_restart"] > 0, "node A's bus received nothing after"
    assert figures["disruption_s"] is not None, f"completions never recovered: {figures}"
