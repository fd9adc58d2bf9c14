"""Drill 5: a slow database under the steady SDK load.

Two ``dwtrio serve`` nodes behind nginx carry the drills' workload (``harness.py``),
with DW_DB_STATEMENT_TIMEOUT_SECONDS=2 and DW_DB_POOL_WAIT_SECONDS=2. For
:data:`FAULT_S` seconds the database turns slow in two ways, both installed by the drill
in its own scratch database (nothing in dwtrio knows about them):

* **slowness**: a statement trigger on ``history_events`` sleeps :data:`SLOW_S` after
  every insert, so every request that appends history (starts, completions, signals)
  answers slower;
* **a held lock**: another session holds the rows of a few *stuck* runs (their own
  queue, no worker) ``FOR UPDATE``. Every statement that touches them waits on the lock:
  signals to them, and polls on their queue (the claim updates the run).

Twice during the fault the drill sends a signal to each stuck run and a poll on their
queue, through nginx: each must end at the statement timeout with ``503
backend_unavailable`` and ``cause: statement_timeout``, never hang. Meanwhile a poll
parked on node A on another queue must get a workflow started there within two
seconds of the start being sent (the start itself is slowed): the long-poll loop keeps
serving other queues. After the fault the stuck runs take a signal, their workflow
task is still at its first attempt (the timed-out claims left nothing behind), their
history holds only the signal sent after the fault, and they complete. At the end both
nodes' pools are idle (nothing waits, nothing is held): the pool never deadlocked.

The books must be clean; the only 5xx any node or client saw are 503s (the stuck
requests, and any request of the load that waited out the pool); no poll is held past
its timeout. Figures: ``drill_slow_database``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from access_log import log_clients, read_access_log
from books import check
from cluster.processes import NodeProcess, ProcessCluster, process_cluster
from figures import drill_figures, publish, rounded
from harness import DrillLoad, Workload, late_polls, logged_requests, run_drill
from services import redis_server

from dwtrio.store.pool import Conn, connect_once

from conftest import CP, WP

pytestmark = [pytest.mark.drill, pytest.mark.sdk, pytest.mark.slow]

STATEMENT_TIMEOUT_S = 2.0
SETTINGS = {
    "DW_DB_STATEMENT_TIMEOUT_SECONDS": str(STATEMENT_TIMEOUT_S),
    "DW_DB_POOL_WAIT_SECONDS": "2",
}
LOAD = DrillLoad(seconds=20.0, rate=6.0, fault_at_s=7.0)
FAULT_S = 8.0
SLOW_S = 0.2  # added to every statement that inserts history
STUCK = 3  # runs whose rows stay locked
ROUNDS_AT_S = (0.5, 4.0)  # when the stuck requests go out, from the fault
#: How long past the statement timeout a stuck request may take to come back (a loaded
#: machine, nginx, the trigger's sleep).
SLACK_S = 2.5

SLOW_TRIGGER = f"""
CREATE FUNCTION drill_slow_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep({SLOW_S});
    RETURN NULL;
END $$;
CREATE TRIGGER drill_slow_history AFTER INSERT ON history_events
    FOR EACH STATEMENT EXECUTE FUNCTION drill_slow_history();
"""
FAST_AGAIN = """
DROP TRIGGER drill_slow_history ON history_events;
DROP FUNCTION drill_slow_history();
"""


@attrs.frozen
class Answer:
    """One request the drill sent."""

    name: str
    sent: float
    took: float
    status: int
    body: dict[str, Any]


@attrs.define
class Slowness:
    stuck_ids: list[str] = attrs.field(factory=list)
    stuck: list[Answer] = attrs.field(factory=list)
    probe: Answer | None = None
    probe_start_sent: float | None = None
    after: dict[str, Any] = attrs.field(factory=dict)


def client(cluster: ProcessCluster, url: str, plane: dict[str, str]) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {cluster.token}", **plane}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=30)


async def timed(name: str, call: Any) -> Answer:
    sent = time.time()
    r: httpx.Response = await call
    return Answer(name, sent, time.time() - sent, r.status_code, r.json())


async def start(cc: httpx.AsyncClient, workflow_id: str, queue: str) -> dict[str, Any]:
    r = await cc.post(
        "/api/workflows",
        json={"workflow_id": workflow_id, "workflow_type": "drill-stuck", "task_queue": queue},
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def poll_body(worker: str, queue: str, timeout_s: int, poll_id: str) -> dict[str, Any]:
    return {
        "worker_id": worker,
        "task_queue": queue,
        "timeout_seconds": timeout_s,
        "poll_request_id": poll_id,
    }


async def hold_locks(dsn: str, workflow_ids: list[str], seconds: float) -> None:
    """Another session locks the runs of ``workflow_ids`` for ``seconds``."""

    async def op(conn: Conn) -> None:
        async with conn.transaction():  # type: ignore[attr-defined]
            await conn.fetch(
                "SELECT id FROM workflow_runs WHERE workflow_id = ANY($1) FOR UPDATE",
                workflow_ids,
            )
            await conn.execute("SELECT pg_sleep($1)", seconds)

    await connect_once(dsn, op)


async def pool_statistics(node: NodeProcess, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.url, timeout=5) as c:
        r = await c.get("/api/system/metrics", headers={"Authorization": f"Bearer {token}", **CP})
        assert r.status_code == 200, r.text
        stats: dict[str, Any] = r.json()["metrics"]["store"]["pool"]
        return stats


async def idle_pools(cluster: ProcessCluster) -> list[dict[str, Any]]:
    """Each node's pool once nothing is held or waited for (a few tries: a background
    loop may be using a connection at the moment one looks)."""
    with trio.move_on_after(10):
        while True:
            stats = [await pool_statistics(n, cluster.token) for n in cluster.nodes]
            if all(s["in_use"] == 0 and s["waiting"] == 0 for s in stats):
                return stats
            await trio.sleep(0.2)
    return stats


async def slow_database(cluster: ProcessCluster, dsn: str, w: Workload, s: Slowness) -> None:
    stuck_queue, probe_queue = f"{w.queue}-stuck", f"{w.queue}-probe"
    a = cluster.nodes[0]
    async with (
        client(cluster, cluster.lb_url, CP) as cc,
        client(cluster, cluster.lb_url, WP) as wc,
        client(cluster, a.url, CP) as cc_a,
        client(cluster, a.url, WP) as wc_a,
    ):
        s.stuck_ids = [f"{w.queue}-stuck-{i}" for i in range(STUCK)]
        for wid in s.stuck_ids:
            await start(cc, wid, stuck_queue)

        async def probe() -> None:
            body = poll_body("probe", probe_queue, 20, "probe-poll")
            s.probe = await timed("probe", wc_a.post("/api/worker/workflow-tasks/poll", json=body))

        async def stuck_round(k: int) -> None:
            async def one(call: Any, name: str) -> None:
                s.stuck.append(await timed(name, call))

            async with trio.open_nursery() as calls:
                for i, wid in enumerate(s.stuck_ids):
                    signal = cc.post(f"/api/workflows/{wid}/signal/go", json={"input": [k]})
                    calls.start_soon(one, signal, f"signal {wid}")
                    body = poll_body(f"stuck-{i}", stuck_queue, 0, f"stuck-poll-{k}-{i}")
                    poll = wc.post("/api/worker/workflow-tasks/poll", json=body)
                    calls.start_soon(one, poll, f"poll {stuck_queue}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe)
            await connect_once(dsn, lambda c: c.execute(SLOW_TRIGGER))
            nursery.start_soon(hold_locks, dsn, s.stuck_ids, FAULT_S)
            began = w.mark("fault")  # the disruption is measured from here
            for k, at in enumerate(ROUNDS_AT_S):
                await trio.sleep(max(0.0, began + at - time.time()))
                nursery.start_soon(stuck_round, k)
                if k == 0:  # the stuck requests now hold connections on both nodes
                    await trio.sleep(0.5)
                    s.probe_start_sent = time.time()
                    await start(cc_a, f"{w.queue}-probe-0", probe_queue)
            await trio.sleep(max(0.0, began + FAULT_S - time.time()))
        await connect_once(dsn, lambda c: c.execute(FAST_AGAIN))
        w.mark("fault_end")

        # The stuck runs: a signal goes through now, and their workflow task was never
        # claimed by the polls that timed out.
        for i, wid in enumerate(s.stuck_ids):
            r = await cc.post(f"/api/workflows/{wid}/signal/go", json={"input": ["after"]})
            assert r.status_code == 202, r.text
            body = poll_body(f"stuck-{i}", stuck_queue, 5, f"after-{i}")
            r = await wc.post("/api/worker/workflow-tasks/poll", json=body)
            task = r.json()["task"]
            assert r.status_code == 200 and task is not None, r.text
            s.after.setdefault("first_attempts", []).append(task["workflow_task_attempt"])
            r = await wc.post(
                f"/api/worker/workflow-tasks/{task['task_id']}/complete",
                json={
                    "lease_owner": task["lease_owner"],
                    "workflow_task_attempt": task["workflow_task_attempt"],
                    "commands": [{"type": "complete_workflow", "result": None}],
                },
            )
            assert r.status_code == 200, r.text
            r = await cc.get(f"/api/workflows/{wid}/runs/{task['run_id']}/history")
            events = r.json()["events"]
            assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
            signals = [e for e in events if e["event_type"] == "SignalReceived"]
            s.after.setdefault("signals_recorded", []).append(len(signals))
            s.after.setdefault("statuses", []).append(
                (await cc.get(f"/api/workflows/{wid}")).json()["status"]
            )


async def test_drill_slow_database(db_dsn: str, tmp_path: Path) -> None:
    s = Slowness()
    async with (
        redis_server(tmp_path / "redis") as redis,
        process_cluster(
            tmp_path / "cluster", dsn=db_dsn, redis_url=redis.url, settings=SETTINGS
        ) as cluster,
    ):
        await log_clients(cluster)

        async def fault(w: Workload) -> None:
            await slow_database(cluster, db_dsn, w, s)

        run = await run_drill(cluster, db_dsn, tmp_path / "load", fault=fault, load=LOAD)
        pools = await idle_pools(cluster)
        requests = logged_requests(cluster)
        served = read_access_log(cluster)

    books = check(run.lines, run.books, run.activity_runs)
    timeouts = [a for a in s.stuck if a.status == 503]
    probe_wait = (  # from the start that wakes it being sent
        s.probe.sent + s.probe.took - s.probe_start_sent
        if s.probe is not None and s.probe_start_sent is not None
        else None
    )
    node_5xx = [r for r in requests if r.status is not None and r.status >= 500]
    client_5xx = [x for x in served if x.status >= 500]
    figures = {
        "fault": (
            f"history inserts {SLOW_S:g} s slower and {STUCK} runs locked by another "
            f"session for {FAULT_S:g} s; statement timeout {STATEMENT_TIMEOUT_S:g} s"
        ),
        **drill_figures(run, books),
        "stuck_requests": len(s.stuck),
        "stuck_requests_503": len(timeouts),
        "stuck_request_s": {
            "min": rounded(min((a.took for a in s.stuck), default=None)),
            "max": rounded(max((a.took for a in s.stuck), default=None)),
        },
        "stuck_causes": sorted({a.body.get("cause", "") for a in s.stuck}),
        "other_queue_poll_answer_s": rounded(probe_wait),
        "stuck_first_task_attempts": s.after.get("first_attempts"),
        "pools_at_end": pools,
        "node_5xx": len(node_5xx),
        "node_503": sum(1 for r in node_5xx if r.status == 503),
        "client_answers": len(served),
        "client_5xx": len(client_5xx),
        "client_503": sum(1 for x in client_5xx if x.status == 503),
    }
    publish("drill_slow_database", figures)

    assert len(run.lines) == run.count
    assert books.acknowledged >= 0.9 * run.count, f"most starts failed: {run.unacked[:5]}"
    books.assert_clean()
    # Every request on the locked runs ended at the statement timeout, cleanly.
    assert len(s.stuck) == 2 * STUCK * len(ROUNDS_AT_S)
    for a in s.stuck:
        assert a.status == 503, a
        assert a.body["reason"] == "backend_unavailable", a
        assert a.body["cause"] == "statement_timeout", a
        assert a.body["retryable"] is True and a.body["message"], a
        assert STATEMENT_TIMEOUT_S - 0.1 <= a.took < STATEMENT_TIMEOUT_S + SLACK_S, a
        if a.name.startswith("poll"):
            assert a.body["task"] is None and a.body["poll_status"] == "backend_unavailable"
    # The other queue was served meanwhile.
    assert s.probe is not None and s.probe.status == 200, s.probe
    assert s.probe.body["task"] is not None, s.probe
    assert probe_wait is not None and probe_wait < 2.0, probe_wait  # the start is slow too
    # The stuck runs took nothing from the requests that timed out.
    assert s.after["first_attempts"] == [1] * STUCK, s.after
    assert s.after["signals_recorded"] == [1] * STUCK, s.after
    assert s.after["statuses"] == ["completed"] * STUCK, s.after
    # No deadlock: both pools idle at the end.
    assert all(p["in_use"] == 0 and p["waiting"] == 0 for p in pools), pools
    assert [r.line for r in node_5xx if r.status != 503] == []
    assert [x for x in client_5xx if x.status != 503] == []
    late = [r.line for r in late_polls(requests, LOAD.poll_timeout_s)]
    assert late == [], "\n".join(late[:20])
    for worker in run.workers:
        assert worker["survived"], worker
    assert figures["disruption_s"] is not None, figures
