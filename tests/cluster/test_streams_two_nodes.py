"""Workflow streams on two nodes: an append or close through node B reaches a reader
parked on node A through the wake bus (Redis or Postgres), and with the bus gone the
reader's periodic recheck still delivers (docs/workflow-streams.md).

With a 20 s poll interval a reader rechecks only every 40 s, so an answer within a
second came through the bus.
"""

from __future__ import annotations

import uuid
from typing import Any

import trio

from cluster_nodes import TOKEN, dead_redis_url, start_two_nodes
from conftest import CP, RunningServer, StartServer

RECHECK_MS = 20_000


async def start_run(server: RunningServer) -> tuple[str, str]:
    workflow_id = f"st-{uuid.uuid4().hex}"
    async with server.client(TOKEN, **CP) as c:
        r = await c.post(
            "/api/workflows",
            json={"workflow_id": workflow_id, "workflow_type": "t", "task_queue": "idle"},
        )
        assert r.status_code == 201, r.text
        return workflow_id, r.json()["run_id"]


async def stream_call(
    server: RunningServer, path: str, body: dict[str, Any] | None = None, **params: Any
) -> dict[str, Any]:
    async with server.client(TOKEN, **CP) as c:
        if body is None:
            r = await c.get(path, params=params, timeout=30)
        else:
            r = await c.post(path, json=body)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def parked_then_written(
    reader: RunningServer, writer: RunningServer, *, close: bool = False
) -> tuple[dict[str, Any], float]:
    """A reader parks on ``reader``; ``writer`` appends (or closes); the page and how
    long after the write it came."""
    wf, run = await start_run(writer)
    path = f"/api/workflows/{wf}/runs/{run}/streams/out"
    await stream_call(writer, f"{path}/items", {"items": [{"payload": ["first"]}]})
    out: dict[str, Any] = {}

    async def read() -> None:
        out["page"] = await stream_call(reader, f"{path}/items", wait_seconds=15, **{"from": 1})
        out["at"] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.sleep(0.5)  # parked on the reader's node
        assert out == {}
        sent = trio.current_time()
        if close:
            await stream_call(writer, f"{path}/close", {})
        else:
            await stream_call(writer, f"{path}/items", {"items": [{"payload": ["second"]}]})
    return out["page"], out["at"] - sent


async def test_redis_carries_stream_wakes_between_nodes(
    start_server: StartServer, redis_url: str
) -> None:
    a, b = await start_two_nodes(start_server, redis_url, poll_interval_ms=RECHECK_MS)
    for node in (a, b):  # each subscriber is connected
        async with node.client(TOKEN) as c:
            with trio.fail_after(10):
                while (await c.get("/api/ready")).json()["checks"]["cache"].get("degraded"):
                    await trio.sleep(0.05)
    page, elapsed = await parked_then_written(a, b)
    assert [i["offset"] for i in page["items"]] == [1] and elapsed < 1.0, elapsed
    page, elapsed = await parked_then_written(b, a, close=True)
    assert page["items"] == [] and page["terminal"] is True and elapsed < 1.0, elapsed


async def test_postgres_carries_stream_wakes_between_nodes(start_server: StartServer) -> None:
    a, b = await start_two_nodes(
        start_server, None, poll_interval_ms=RECHECK_MS, wake_bus="postgres"
    )
    page, elapsed = await parked_then_written(a, b)
    assert [i["offset"] for i in page["items"]] == [1] and elapsed < 1.0, elapsed


async def test_without_the_bus_the_recheck_still_delivers(start_server: StartServer) -> None:
    # Redis is down: wakes stay on their node; readers recheck every 2 x 300 ms.
    a, b = await start_two_nodes(start_server, dead_redis_url(), poll_interval_ms=300)
    page, elapsed = await parked_then_written(a, b)
    assert [i["offset"] for i in page["items"]] == [1] and elapsed < 3.0, elapsed
    page, elapsed = await parked_then_written(a, a)  # the same node needs no bus
    assert [i["offset"] for i in page["items"]] == [1] and elapsed < 0.25, elapsed
