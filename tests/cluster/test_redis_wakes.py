"""Two dwtrio nodes on one database: wakes cross nodes through Redis, and without Redis
correctness holds (the periodic recheck delivers the task)."""

from __future__ import annotations

import uuid

import trio

from cluster_nodes import TOKEN, dead_redis_url, start_two_nodes
from conftest import CP, WP, RunningServer, StartServer


async def parked_poll(
    server: RunningServer, queue: str, timeout_s: int, out: dict[str, object]
) -> None:
    async with server.client(TOKEN) as c:
        started = trio.current_time()
        r = await c.post(
            "/api/worker/workflow-tasks/poll",
            headers=WP,
            json={
                "worker_id": f"w-{uuid.uuid4().hex[:6]}",
                "task_queue": queue,
                "timeout_seconds": timeout_s,
            },
        )
        out["task"] = r.json()["task"]
        out["elapsed"] = trio.current_time() - started


async def start_workflow(server: RunningServer, queue: str) -> str:
    workflow_id = f"x-{uuid.uuid4().hex}"
    async with server.client(TOKEN) as c:
        r = await c.post(
            "/api/workflows",
            headers=CP,
            json={
                "workflow_id": workflow_id,
                "workflow_type": "t",
                "task_queue": queue,
                "input": [],
            },
        )
        assert r.status_code == 201, r.text
    return workflow_id


async def cross_node_wake(a: RunningServer, b: RunningServer) -> tuple[dict[str, object], float]:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    out: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(parked_poll, a, queue, 15, out)
        await trio.sleep(0.5)  # the poll is parked on node A
        t0 = trio.current_time()
        workflow_id = await start_workflow(b, queue)  # the task is created through node B
    assert out["task"] is not None and out["task"]["workflow_id"] == workflow_id  # type: ignore[index]
    return out, trio.current_time() - t0


async def test_a_start_on_one_node_wakes_a_poll_on_another(
    start_server: StartServer, redis_url: str
) -> None:
    # The recheck interval is far longer than the bound below: only a Redis wake can explain it.
    a, b = await start_two_nodes(start_server, redis_url, poll_interval_ms=20_000)
    # Each node's subscriber connects once the node serves (on a loaded machine, a
    # moment later): until then readiness says "connecting", then plain ok.
    for node in (a, b):
        async with node.client(TOKEN) as c:
            with trio.fail_after(10):
                while (cache := (await c.get("/api/ready")).json()["checks"]["cache"]).get(
                    "degraded"
                ):
                    assert cache["message"] == "connecting", cache
                    await trio.sleep(0.05)
        assert cache == {"status": "ok", "store": "redis"}
    _, elapsed = await cross_node_wake(a, b)
    assert elapsed < 2.0


async def test_without_redis_the_recheck_still_delivers(start_server: StartServer) -> None:
    a, b = await start_two_nodes(start_server, dead_redis_url(), poll_interval_ms=300)
    async with a.client(TOKEN) as c:
        r = await c.get("/api/ready")
    assert r.status_code == 200  # Redis only accelerates: the node stays ready, marked degraded
    assert r.json()["checks"]["cache"]["degraded"] is True
    _, elapsed = await cross_node_wake(a, b)
    assert elapsed < 3.0
    # local wakes still need no Redis: a poll on the node that created the task wakes at once
    queue = f"q-{uuid.uuid4().hex[:8]}"
    local: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(parked_poll, a, queue, 15, local)
        await trio.sleep(0.5)
        t0 = trio.current_time()
        await start_workflow(a, queue)
    assert trio.current_time() - t0 < 0.25
