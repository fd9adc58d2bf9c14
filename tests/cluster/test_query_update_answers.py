"""Two dwtrio nodes on one database: a query or update waiting on one node is answered
by a worker talking to the other (the answer's wake crosses through Redis; without
Redis the waiting node's recheck still finds it)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

from dwtrio import payloads

from cluster_nodes import TOKEN, dead_redis_url, start_two_nodes
from conftest import CP, WP, RunningServer, StartServer

ANSWER = {"codec": "avro", "blob": payloads.encode(42)}


async def start_parked_workflow(node: RunningServer, queue: str) -> str:
    """A started workflow whose first task completed with an activity: no task open."""
    workflow_id = f"x-{uuid.uuid4().hex}"
    async with node.client(TOKEN, **WP) as wc, node.client(TOKEN, **CP) as cc:
        r = await wc.post(
            "/api/worker/register",
            json={"worker_id": "w1", "task_queue": queue, "runtime": "python"},
        )
        assert r.status_code == 201, r.text
        r = await cc.post(
            "/api/workflows",
            json={"workflow_id": workflow_id, "workflow_type": "t", "task_queue": queue},
        )
        assert r.status_code == 201, r.text
        r = await wc.post(
            "/api/worker/workflow-tasks/poll",
            json={"worker_id": "w1", "task_queue": queue, "timeout_seconds": 5},
        )
        task = r.json()["task"]
        r = await wc.post(
            f"/api/worker/workflow-tasks/{task['task_id']}/complete",
            json={
                "lease_owner": "w1",
                "workflow_task_attempt": task["workflow_task_attempt"],
                "commands": [{"type": "schedule_activity", "activity_type": "a", "queue": queue}],
            },
        )
        assert r.status_code == 200, r.text
    return workflow_id


async def answer_query(node: RunningServer, queue: str) -> None:
    async with node.client(TOKEN, **WP) as wc:
        r = await wc.post(
            "/api/worker/query-tasks/poll",
            json={"worker_id": "w1", "task_queue": queue, "timeout_seconds": 10},
        )
        task = r.json()["task"]
        assert task is not None
        r = await wc.post(
            f"/api/worker/query-tasks/{task['query_task_id']}/complete",
            json={"lease_owner": "w1", "query_task_attempt": 1, "result_envelope": ANSWER},
        )
        assert r.status_code == 200, r.text


async def answer_update(node: RunningServer, queue: str) -> None:
    async with node.client(TOKEN, **WP) as wc:
        r = await wc.post(
            "/api/worker/workflow-tasks/poll",
            json={"worker_id": "w1", "task_queue": queue, "timeout_seconds": 10},
        )
        task = r.json()["task"]
        assert task is not None and task["workflow_update_id"]
        r = await wc.post(
            f"/api/worker/workflow-tasks/{task['task_id']}/complete",
            json={
                "lease_owner": "w1",
                "workflow_task_attempt": task["workflow_task_attempt"],
                "commands": [
                    {
                        "type": "complete_update",
                        "update_id": task["workflow_update_id"],
                        "result": ANSWER,
                    }
                ],
            },
        )
        assert r.status_code == 200, r.text


async def answered_across(
    a: RunningServer,
    b: RunningServer,
    answer: Callable[[RunningServer, str], Awaitable[None]],
    request: str,
    body: dict[str, Any],
) -> tuple[httpx.Response, float]:
    """Ask through node A (``/api/workflows/<id>/<request>``) while a worker polls and
    answers through node B; return the response and how long it took."""
    queue = f"q-{uuid.uuid4().hex[:8]}"
    workflow_id = await start_parked_workflow(a, queue)
    out: list[Any] = []
    async with a.client(TOKEN, **CP) as cc, trio.open_nursery() as nursery:
        nursery.start_soon(answer, b, queue)
        await trio.sleep(0.3)  # the worker's poll is parked on node B
        t0 = trio.current_time()
        out.append(await cc.post(f"/api/workflows/{workflow_id}/{request}", json=body))
    return out[0], trio.current_time() - t0


async def ask_and_update_across(a: RunningServer, b: RunningServer) -> list[float]:
    """A query and then an update, each answered across nodes; their latencies."""
    elapsed: list[float] = []
    for answer, request, body in (
        (answer_query, "query/q", {}),
        (answer_update, "update/u", {"wait_for": "completed", "wait_timeout_seconds": 10}),
    ):
        with trio.fail_after(20):
            r, took = await answered_across(a, b, answer, request, body)
        assert r.status_code == 200 and r.json()["result"] == 42, r.text
        elapsed.append(took)
    return elapsed


async def test_answers_cross_nodes_through_redis(start_server: StartServer, redis_url: str) -> None:
    # Rechecks far slower than the bound below: only Redis wakes explain the speed.
    a, b = await start_two_nodes(start_server, redis_url, poll_interval_ms=20_000)
    assert all(took < 3.0 for took in await ask_and_update_across(a, b))


async def test_without_redis_the_recheck_delivers_answers(start_server: StartServer) -> None:
    a, b = await start_two_nodes(start_server, dead_redis_url(), poll_interval_ms=300)
    await ask_and_update_across(a, b)
