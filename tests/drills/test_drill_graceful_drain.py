"""Drill 6, graceful drain: SIGTERM to one node under the steady SDK load.

Two ``dwtrio serve`` nodes behind nginx carry the drills' workload (``harness.py``).
Besides the SDK workers' own polls, a few probe polls are parked on node A directly
(an idle queue, 30 s each). Then node A gets SIGTERM: every poll parked on it must be
answered at once (``{"task": null}``), the requests it is serving finish, it stops
taking new connections (nginx sends them to node B), exits 0 within
DW_GRACEFUL_TIMEOUT_SECONDS, and is started again (a rolling restart). The books must
be clean, no client may have seen a 5xx (nginx's access log), and no node may have
answered one.

Figures (``drill_graceful_drain``), beside the common ones (``figures.py``): the polls
parked on node A at the SIGTERM and how long the last of them waited for its answer
(probes, and every poll in node A's log), the requests in flight there, how long node A
took to exit and to be ready again, and the 5xx count.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from access_log import TimedRequest, log_clients, read_access_log, timed_requests
from books import check
from cluster.processes import NodeProcess, ProcessCluster, process_cluster
from figures import drill_figures, publish, rounded
from harness import DrillLoad, Workload, run_drill
from services import redis_server

from conftest import CP, WP

pytestmark = [pytest.mark.drill, pytest.mark.sdk, pytest.mark.slow]

SETTINGS = {"DW_GRACEFUL_TIMEOUT_SECONDS": "10"}
LOAD = DrillLoad(seconds=20.0, rate=6.0, fault_at_s=7.0)
PROBES = 4
PROBE_TIMEOUT_S = 30
#: A parked poll must be answered this soon after the SIGTERM.
ANSWER_WITHIN_S = 1.0


@attrs.define
class Drain:
    """What happened to node A."""

    parked_before: int = 0  # polls parked on it just before the SIGTERM
    probe_answers: list[tuple[float, int, dict[str, Any]]] = attrs.field(factory=list)
    exit_code: int | None = None


async def metrics(node: NodeProcess, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.url, timeout=5) as c:
        r = await c.get("/api/system/metrics", headers={"Authorization": f"Bearer {token}", **CP})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()["metrics"]
        return body


async def drain_node_a(cluster: ProcessCluster, w: Workload, drain: Drain) -> None:
    a = cluster.nodes[0]
    headers = {"Authorization": f"Bearer {cluster.token}", **WP}
    async with (
        httpx.AsyncClient(base_url=a.url, headers=headers, timeout=PROBE_TIMEOUT_S + 10) as c,
        trio.open_nursery() as nursery,
    ):

        async def probe(i: int) -> None:
            r = await c.post(
                "/api/worker/workflow-tasks/poll",
                json={
                    "worker_id": f"drain-probe-{i}",
                    "task_queue": f"{w.queue}-probe",
                    "timeout_seconds": PROBE_TIMEOUT_S,
                    "poll_request_id": f"drain-probe-{i}",
                },
            )
            drain.probe_answers.append((time.time(), r.status_code, r.json()))

        for i in range(PROBES):
            nursery.start_soon(probe, i)
        with trio.fail_after(10):
            while (
                parked := (await metrics(a, cluster.token))["matching"]["parked_polls"]
            ) < PROBES:
                await trio.sleep(0.05)
        drain.parked_before = parked
        assert a.proc is not None
        w.mark("fault")  # the disruption is measured from here
        w.mark("sigterm")
        a.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            drain.exit_code = await a.proc.wait()
        w.mark("node_a_exited")
    await a.start()  # a rolling restart: back on the same port
    w.mark("fault_end")


def polls_parked_at(requests: list[TimedRequest], node: str, moment: float) -> list[TimedRequest]:
    return [
        r
        for r in requests
        if r.node == node and r.route.endswith("/poll") and r.began < moment <= r.ended
    ]


def in_flight_at(requests: list[TimedRequest], node: str, moment: float) -> list[TimedRequest]:
    return [
        r
        for r in requests
        if r.node == node and not r.route.endswith("/poll") and r.began < moment <= r.ended
    ]


async def test_drill_graceful_drain(db_dsn: str, tmp_path: Path) -> None:
    drain = Drain()
    async with (
        redis_server(tmp_path / "redis") as redis,
        process_cluster(
            tmp_path / "cluster", dsn=db_dsn, redis_url=redis.url, settings=SETTINGS
        ) as cluster,
    ):
        await log_clients(cluster)

        async def fault(w: Workload) -> None:
            await drain_node_a(cluster, w, drain)

        run = await run_drill(cluster, db_dsn, tmp_path / "load", fault=fault, load=LOAD)
        requests = timed_requests(cluster)
        served = read_access_log(cluster)

    books = check(run.lines, run.books, run.activity_runs)
    sigterm, exited = run.marks["sigterm"], run.marks["node_a_exited"]
    parked = polls_parked_at(requests, "node-a", sigterm)
    in_flight = in_flight_at(requests, "node-a", sigterm)
    probe_waits = [at - sigterm for at, _, _ in drain.probe_answers]
    node_5xx = [r for r in requests if r.status is not None and r.status >= 500]
    client_5xx = [s for s in served if s.status >= 500]
    restarted = [r for r in requests if r.node == "node-a" and r.began > run.marks["fault_end"]]
    figures = {
        "fault": "node A SIGTERMed (drained) with polls parked on it, then started again",
        **drill_figures(run, books),
        "polls_parked_on_node_a": drain.parked_before,
        "polls_answered_after_sigterm": len(parked),
        "poll_answer_max_s": rounded(max((r.ended - sigterm for r in parked), default=None)),
        "probe_answer_max_s": rounded(max(probe_waits, default=None)),
        "requests_in_flight_at_sigterm": len(in_flight),
        "node_a_exit_code": drain.exit_code,
        "node_a_exit_s": rounded(exited - sigterm, 2),
        "node_a_restart_s": rounded(run.marks["fault_end"] - exited, 2),
        "requests_served_by_node_a_after_restart": len(restarted),
        "client_answers": len(served),
        "client_5xx": len(client_5xx),
        "node_5xx": len(node_5xx),
    }
    publish("drill_graceful_drain", figures)

    assert len(run.lines) == run.count
    assert books.acknowledged >= 0.9 * run.count, f"most starts failed: {run.unacked[:5]}"
    books.assert_clean()
    assert [x for x in run.lines if x.get("signal_failed")] == []
    assert len(drain.probe_answers) == PROBES
    for _, status, body in drain.probe_answers:
        assert status == 200 and body["task"] is None, body
    assert max(probe_waits) < ANSWER_WITHIN_S, probe_waits
    assert len(parked) >= PROBES, parked
    late = [r for r in parked if r.ended - sigterm >= ANSWER_WITHIN_S]
    assert late == [], late
    assert [r for r in in_flight if r.status is None or r.status >= 500] == []
    assert drain.exit_code == 0
    assert exited - sigterm < float(SETTINGS["DW_GRACEFUL_TIMEOUT_SECONDS"])
    assert client_5xx == [], client_5xx[:10]
    assert node_5xx == [], node_5xx[:10]
    assert restarted, "node A served nothing after its restart"
    for worker in run.workers:
        assert worker["survived"], worker
    assert figures["disruption_s"] is not None, figures
