"""Every node runs every maintenance loop at once, and each piece of work is done once.

The reference server keeps exactly one scheduler/maintenance runner per cluster;
dwtrio runs the timer, timeout, task-repair, scheduler and retention loops on
every node, and relies on row locks (``FOR UPDATE SKIP LOCKED``) in Postgres, not
on an elected leader, so there is nothing to fail over.

Two nodes on one database, with fast loops, get work for each loop, spread over
a few seconds and created through both nodes. Each node counts what its loops
handled (``background_loops.<loop>.items`` of ``GET /api/system/metrics``, the
same count as ``dwtrio_background_items_total``). For every loop: the two
nodes' counts add up to exactly the work there was (nothing done twice, nothing
missed), both nodes took part, and the runs' histories show each effect once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import trio
from retention_support import counts, load

from dwtrio.store.pool import Conn, connect_once

from conftest import CP, WP, RunningServer, StartServer

TOKEN = "t"
FAST_LOOPS: dict[str, Any] = {
    "admin_token": None,
    "auth_token": TOKEN,
    "timer_poll_interval_ms": 50,
    "timeout_check_interval_s": 0.2,
    "task_repair_interval_s": 0.2,
    "scheduler_poll_interval_ms": 50,
    "retention_interval_s": 0.2,
    "retention_batch_size": 10,
    "workflow_task_timeout_s": 1,
}
TIMERS = 30
DEADLINES = 20
LEASES = 20
SCHEDULES = 6
EXPIRED_RUNS = 200


@attrs.define
class Node:
    """One node's control-plane and worker-plane clients."""

    server: RunningServer
    cc: httpx.AsyncClient
    wc: httpx.AsyncClient

    @classmethod
    @asynccontextmanager
    async def open(cls, server: RunningServer) -> AsyncIterator[Node]:
        async with server.client(TOKEN, **CP) as cc, server.client(TOKEN, **WP) as wc:
            yield cls(server, cc, wc)

    async def poll_wf(self, worker: str, queue: str) -> dict[str, Any] | None:
        body = {"worker_id": worker, "task_queue": queue, "timeout_seconds": 2}
        r = await self.wc.post("/api/worker/workflow-tasks/poll", json=body)
        assert r.status_code == 200, r.text
        task: dict[str, Any] | None = r.json()["task"]
        return task

    async def complete_wf(self, task: dict[str, Any], commands: list[dict[str, Any]]) -> None:
        r = await self.wc.post(
            f"/api/worker/workflow-tasks/{task['task_id']}/complete",
            json={
                "lease_owner": task["lease_owner"],
                "workflow_task_attempt": task["workflow_task_attempt"],
                "commands": commands,
            },
        )
        assert r.status_code == 200, r.text

    async def event_types(self, workflow_id: str) -> list[str]:
        r = await self.cc.get(f"/api/workflows/{workflow_id}")
        assert r.status_code == 200, r.text
        run_id = r.json()["run_id"]
        r = await self.cc.get(
            f"/api/workflows/{workflow_id}/runs/{run_id}/history", params={"page_size": 1000}
        )
        assert r.status_code == 200, r.text
        events = r.json()["events"]
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
        return [e["event_type"] for e in events]


async def items(server: RunningServer) -> dict[str, int]:
    """What each loop of ``server``'s process handled so far."""
    async with server.client(TOKEN, **CP) as c:
        r = await c.get("/api/system/metrics")
    assert r.status_code == 200, r.text
    loops = r.json()["metrics"]["background_loops"]
    return {name: loop["items"] for name, loop in loops.items()}


async def sql(dsn: str, statement: str, *args: Any) -> list[Any]:
    async def run(conn: Conn) -> list[Any]:
        return list(await conn.fetch(statement, *args))

    return await connect_once(dsn, run)


async def start(c: httpx.AsyncClient, workflow_id: str, queue: str, **extra: Any) -> None:
    body = {"workflow_id": workflow_id, "workflow_type": "maint", "task_queue": queue, **extra}
    r = await c.post("/api/workflows", json={**body, "input": []})
    assert r.status_code == 201, r.text


async def arm_timers(hs: list[Node]) -> None:
    """TIMERS workflows whose first task starts a one-second timer, through both nodes."""
    for i in range(TIMERS):
        h = hs[i % 2]
        await start(h.cc, f"tm-{i}", f"mt-timers-{i}")  # its own queue: polled only once
        task = await h.poll_wf("w1", f"mt-timers-{i}")
        assert task is not None
        await h.complete_wf(task, [{"type": "start_timer", "delay_seconds": 1}])
        await trio.sleep(0.03)  # due times spread over about a second


async def start_deadlines(hs: list[Node]) -> None:
    """DEADLINES runs that nobody works on, each with a one-second run deadline."""
    for i in range(DEADLINES):
        await start(hs[i % 2].cc, f"to-{i}", "mt-deadlines", run_timeout_seconds=1)
        await trio.sleep(0.05)


async def lose_leases(hs: list[Node]) -> None:
    """LEASES workflow tasks leased (for one second) by a worker that never answers."""
    for i in range(LEASES):
        h = hs[i % 2]
        await start(h.cc, f"rp-{i}", f"mt-repair-{i}")  # its own queue: polled only once
        task = await h.poll_wf("gone", f"mt-repair-{i}")
        assert task is not None and task["workflow_task_attempt"] == 1
        await trio.sleep(0.1)


async def create_schedules(hs: list[Node]) -> None:
    for i in range(SCHEDULES):
        r = await hs[i % 2].cc.post(
            "/api/schedules",
            json={
                "schedule_id": f"mt-s{i}",
                "spec": {"intervals": [{"every": "PT1S"}]},
                "action": {"workflow_type": "maint", "task_queue": "mt-sched", "input": []},
                "overlap_policy": "allow_all",
            },
        )
        assert r.status_code == 201, r.text


async def pause_schedules(hs: list[Node]) -> None:
    for i in range(SCHEDULES):
        r = await hs[i % 2].cc.post(f"/api/schedules/mt-s{i}/pause", json={})
        assert r.status_code == 200, r.text


async def histories_of(h: Node, prefix: str, count: int) -> list[list[str]]:
    return [await h.event_types(f"{prefix}-{i}") for i in range(count)]


async def test_every_node_runs_every_loop_and_each_item_is_handled_once(
    start_server: StartServer, db_dsn: str
) -> None:
    await load(db_dsn, runs=EXPIRED_RUNS, prefix="mx", events_per_run=3)
    a = await start_server(server_id="node-a", **FAST_LOOPS)
    # Fixed-interval loops whose ticks kept in step would hand one node nearly all the
    # work; real nodes start at different times, and different intervals keep them apart.
    b = await start_server(
        server_id="node-b",
        **{**FAST_LOOPS, "timeout_check_interval_s": 0.27, "task_repair_interval_s": 0.27},
    )
    async with Node.open(a) as ha, Node.open(b) as hb:
        hs = [ha, hb]
        await create_schedules(hs)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(arm_timers, hs)
            nursery.start_soon(start_deadlines, hs)
            nursery.start_soon(lose_leases, hs)
        await trio.sleep(3.5)  # the schedules fire three or four times each
        await pause_schedules(hs)

        expected = {
            "timer": TIMERS,
            "timeouts": DEADLINES,
            "task_repair": LEASES,
            "retention": EXPIRED_RUNS,
        }
        with trio.fail_after(20):
            while True:
                per_node = [await items(a), await items(b)]
                done = {k: per_node[0].get(k, 0) + per_node[1].get(k, 0) for k in expected}
                if all(done[k] >= n for k, n in expected.items()):
                    break
                await trio.sleep(0.2)
        await trio.sleep(1.0)  # a second handling of anything would show by now
        per_node = [await items(a), await items(b)]
        print("items per node:", per_node)

        for loop, total in expected.items():
            split = [per_node[0].get(loop, 0), per_node[1].get(loop, 0)]
            assert sum(split) == total, (loop, split)
            assert all(split), f"{loop}: one node did all the work: {split}"

        # The scheduler: every occurrence recorded once, as many as the nodes counted.
        triggered = await sql(
            db_dsn,
            "SELECT e.schedule_id, e.payload->>'occurrence_time' AS at FROM schedule_history_events e"
            " WHERE e.event_type = 'ScheduleTriggered'",
        )
        fired = [per_node[0]["scheduler"], per_node[1]["scheduler"]]
        assert sum(fired) == len(triggered) >= 2 * SCHEDULES, fired
        assert all(fired), f"scheduler: one node did all the work: {fired}"
        assert len({(r["schedule_id"], r["at"]) for r in triggered}) == len(triggered)
        started = await sql(
            db_dsn, "SELECT count(*) AS n FROM workflow_runs WHERE task_queue = 'mt-sched'"
        )
        assert started[0]["n"] == len(triggered)

        # Each effect once in the runs' histories.
        for types in await histories_of(ha, "tm", TIMERS):
            assert types.count("TimerFired") == 1, types
        for types in await histories_of(hb, "to", DEADLINES):
            assert types.count("WorkflowTimedOut") == 1, types
        for i in range(LEASES):  # each lost lease came back once: the next lease is attempt 2
            task = await ha.poll_wf("w2", f"mt-repair-{i}")
            assert task is not None and task["workflow_task_attempt"] == 2, task
        assert all(v == 0 for v in (await counts(db_dsn, "mx")).values())
