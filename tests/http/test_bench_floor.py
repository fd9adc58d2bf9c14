"""bench.floor answers the benchmarks' requests in dwtrio's wire shape.

The floor is only a fair baseline if the benchmark clients can drive it
unchanged: request-cost's round of every kind, and poll-latency's handoff of
a started workflow to a parked poll.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import psutil
import trio
from hypercorn.trio import serve

from bench import floor
from bench.harness import WP, RawConnection, _NoProgress, free_port
from bench.request_cost import KINDS, one_run
from dwtrio.main import hypercorn_config
from dwtrio.settings import Settings

#: The floor keeps its queues in a module global: a queue of this test run's own.
QUEUE = f"handoff-{uuid.uuid4().hex[:8]}"


async def _serve_floor(nursery: trio.Nursery) -> str:
    bind = f"127.0.0.1:{free_port()}"
    config = hypercorn_config(Settings.from_env({}, bind=bind))
    await nursery.start(functools.partial(serve, floor.app, config))
    return f"http://{bind}"


async def test_request_cost_round_against_the_floor() -> None:
    async with trio.open_nursery() as nursery:
        url = await _serve_floor(nursery)
        figures = await trio.to_thread.run_sync(one_run, url, [psutil.Process()], 3, _NoProgress())
        assert list(figures) == KINDS
        nursery.cancel_scope.cancel()


async def _parked(worker: str) -> None:
    """Until ``worker``'s poll is parked on the floor's queue (the app runs in this process)."""
    with trio.fail_after(10):
        while True:
            queue = floor._queues.get(QUEUE)
            if queue is not None and any(slot[0] == worker for slot in queue.parked):
                return
            await trio.sleep(0.01)


async def test_a_start_is_handed_to_the_oldest_parked_poll() -> None:
    def poll(url: str, worker: str, timeout: int) -> object:
        conn = RawConnection(url)
        try:
            body = {"worker_id": worker, "task_queue": QUEUE, "timeout_seconds": timeout}
            return conn.request("POST", "/api/worker/workflow-tasks/poll", WP, body)
        finally:
            conn.close()

    def start(url: str, wid: str) -> tuple[int, Any]:
        conn = RawConnection(url)
        try:
            body = {"workflow_id": wid, "task_queue": QUEUE}
            return conn.request("POST", "/api/workflows", {}, body)
        finally:
            conn.close()

    answers: dict[str, object] = {}

    async def parked(url: str, worker: str) -> None:
        answers[worker] = await trio.to_thread.run_sync(poll, url, worker, 5)

    async with trio.open_nursery() as nursery:
        url = await _serve_floor(nursery)
        async with trio.open_nursery() as polls:
            for worker in ("first", "second"):  # "first" parks before "second"
                polls.start_soon(parked, url, worker)
                await _parked(worker)
            for wid in ("wf-1", "wf-2"):
                status, body = await trio.to_thread.run_sync(start, url, wid)
                assert (status, body["workflow_id"]) == (201, wid)
        # Nothing parked or left: a poll with timeout 0 answers empty at once.
        late = await trio.to_thread.run_sync(poll, url, "late", 0)
        nursery.cancel_scope.cancel()
    for worker, wid in (("first", "wf-1"), ("second", "wf-2")):
        status, body = answers[worker]  # type: ignore[misc]
        assert status == 200
        assert (body["task"]["workflow_id"], body["task"]["lease_owner"]) == (wid, worker)
    assert late == (200, {"task": None, "poll_status": "empty"})
