"""Queries and updates with the official SDK against a dwtrio URL; prints a JSON result.

    python queries_updates_driver.py <scenario> <base_url> <token>

Runs in its own process (the SDK is asyncio-based; the test process runs
Trio). The workflow under test parks on a ``hold`` activity
that this process releases only after the queries and updates are done, so
nothing depends on timing. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.errors import QueryFailed, UpdateFailed

from driver_support import print_result, running

RELEASE: asyncio.Event | None = None


def _release() -> asyncio.Event:
    global RELEASE
    if RELEASE is None:
        RELEASE = asyncio.Event()
    return RELEASE


@activity.defn(name="add_one")
def add_one(x: int) -> int:
    return x + 1


@activity.defn(name="hold")
async def hold() -> str:
    await asyncio.wait_for(_release().wait(), timeout=60)
    return "released"


@workflow.defn(name="counter")
class CounterWorkflow:
    def __init__(self) -> None:
        self.count = 0
        self.stage = "starting"

    def run(self, ctx, start):  # type: ignore[no-untyped-def]
        self.count = yield ctx.schedule_activity("add_one", [start])
        self.stage = "holding"
        yield ctx.schedule_activity("hold", [])
        self.stage = "done"
        return {"count": self.count}

    @workflow.query("state")
    def state(self) -> dict[str, Any]:
        return {"count": self.count, "stage": self.stage}

    @workflow.query("times")
    def times(self, factor: int) -> int:
        return self.count * factor

    @workflow.update("add")
    def add(self, n: int) -> int:
        if n < 0:
            raise ValueError(f"negative not allowed: {n}")
        self.count += n
        return self.count


@workflow.defn(name="gate")
class GateWorkflow:
    """Waits on a condition that only updates can satisfy."""

    def __init__(self) -> None:
        self.count = 0

    def run(self, ctx, target):  # type: ignore[no-untyped-def]
        yield ctx.wait_condition(lambda: self.count >= target, key="enough", timeout=60)
        return {"count": self.count}

    @workflow.update("add")
    def add(self, n: int) -> int:
        self.count += n
        return self.count


async def _until(
    what: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], timeout: float = 30
) -> Any:
    """Retry ``what()`` until ``ok(result)``; query routing needs the worker registered first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    value: Any = None
    while True:
        try:
            value = await what()
            if ok(value):
                return value
        except QueryFailed as exc:
            if loop.time() > deadline:
                raise RuntimeError(f"query kept failing: {exc}") from exc
        if loop.time() > deadline:
            raise RuntimeError(f"condition not reached; last value {value!r}")
        await asyncio.sleep(0.1)


async def with_counter(
    url: str, token: str, body: Callable[[Client, Any], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Start a counter workflow with a running worker, run ``body``, release the hold, finish."""
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with Client(url, token=token, namespace="default") as client:
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[CounterWorkflow],
            activities=[add_one, hold],
            poll_timeout=5,
        )
        async with running(worker):
            workflow_id = f"counter-{uuid.uuid4().hex}"
            handle = await client.start_workflow(
                workflow_type="counter", workflow_id=workflow_id, task_queue=queue, input=[5]
            )
            out = {"workflow_id": workflow_id, "run_id": handle.run_id}
            out.update(await body(client, handle))
            _release().set()
            out["final"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        return out


async def scenario_query(url: str, token: str) -> dict[str, Any]:
    async def body(client: Client, handle: Any) -> dict[str, Any]:
        held = await _until(
            lambda: handle.query("state"), lambda r: r["result"]["stage"] == "holding"
        )
        times = await handle.query("times", [3])
        try:
            await handle.query("nope")
            unknown: dict[str, Any] = {"raised": None}
        except QueryFailed as exc:
            unknown = {"raised": type(exc).__name__, "reason": exc.reason, "message": str(exc)}
        return {
            "held": held["result"],
            "held_query_name": held["query_name"],
            "times": times["result"],
            "unknown": unknown,
        }

    return await with_counter(url, token, body)


async def scenario_update(url: str, token: str) -> dict[str, Any]:
    async def body(client: Client, handle: Any) -> dict[str, Any]:
        await _until(lambda: handle.query("state"), lambda r: r["result"]["stage"] == "holding")
        added = await handle.update("add", [10], wait_for="completed")
        try:
            await handle.update("add", [-1], wait_for="completed")
            failed: dict[str, Any] = {"raised": None}
        except UpdateFailed as exc:
            failed = {"raised": type(exc).__name__, "message": str(exc)}
        accepted = await handle.update("add", [100])  # default stage: accepted
        after = await _until(lambda: handle.query("state"), lambda r: r["result"]["count"] == 116)
        return {
            "added": {k: added.get(k) for k in ("result", "update_status", "outcome", "update_id")},
            "failed": failed,
            "accepted": {k: accepted.get(k) for k in ("update_status", "outcome", "update_id")},
            "after": after["result"],
        }

    return await with_counter(url, token, body)


async def scenario_update_condition(url: str, token: str) -> dict[str, Any]:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with Client(url, token=token, namespace="default") as client:
        worker = Worker(client, task_queue=queue, workflows=[GateWorkflow], poll_timeout=5)
        async with running(worker):
            workflow_id = f"gate-{uuid.uuid4().hex}"
            handle = await client.start_workflow(
                workflow_type="gate", workflow_id=workflow_id, task_queue=queue, input=[20]
            )
            first = await handle.update("add", [15], wait_for="completed")
            second = await handle.update("add", [10], wait_for="completed")
            final = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        return {
            "workflow_id": workflow_id,
            "run_id": handle.run_id,
            "results": [first.get("result"), second.get("result")],
            "final": final,
        }


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    if scenario == "query":
        return await scenario_query(url, token)
    if scenario == "update":
        return await scenario_update(url, token)
    if scenario == "update-condition":
        return await scenario_update_condition(url, token)
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    print_result(main)
