"""Signals, cancel and terminate through the official SDK against a dwtrio URL; prints JSON.

    python workflow_commands_driver.py <scenario> <base_url> <token>

Runs in its own process (the SDK is asyncio; the test process runs
Trio). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.errors import (
    ActivityCancelled,
    SignalFailed,
    WorkflowCancelled,
    WorkflowNotFound,
    WorkflowTerminated,
)

from driver_support import print_result, running

#: What each heartbeating activity saw, keyed by its argument: "started" / "cancelled".
OBSERVED: dict[str, str] = {}


# --- activities -----------------------------------------------------------------------
@activity.defn(name="heartbeat_until_cancelled")
async def heartbeat_until_cancelled(key: str) -> str:
    ctx = activity.context()
    OBSERVED[key] = "started"
    for beat in range(600):
        try:
            await ctx.heartbeat({"beat": beat})
        except ActivityCancelled:
            OBSERVED[key] = "cancelled"
            raise
        await asyncio.sleep(0.1)
    return "never cancelled"


@activity.defn(name="send_signal")
async def send_signal(url: str, token: str, workflow_id: str) -> str:
    """Signals its own workflow while the workflow is blocked on this very activity."""
    async with Client(url, token=token, namespace="default") as client:
        await client.signal_workflow(workflow_id, "approve", args=["from-activity", 2])
    return "sent"


# --- workflows ------------------------------------------------------------------------
@workflow.defn(name="waits-for-approval")
class WaitsForApproval:
    def __init__(self) -> None:
        self.approvals: list[list[Any]] = []

    @workflow.signal("approve")
    def approve(self, who: str, n: int) -> None:
        self.approvals.append([who, n])

    def run(self, ctx):  # type: ignore[no-untyped-def]
        yield ctx.wait_condition(lambda: bool(self.approvals))
        return self.approvals


@workflow.defn(name="signalled-by-activity")
class SignalledByActivity:
    def __init__(self) -> None:
        self.approvals: list[list[Any]] = []

    @workflow.signal("approve")
    def approve(self, who: str, n: int) -> None:
        self.approvals.append([who, n])

    def run(self, ctx, url, token):  # type: ignore[no-untyped-def]
        sent = yield ctx.schedule_activity("send_signal", [url, token, ctx.workflow_id])
        yield ctx.wait_condition(lambda: bool(self.approvals))
        return {"sent": sent, "approvals": self.approvals}


@workflow.defn(name="runs-long-activity")
class RunsLongActivity:
    def run(self, ctx, key):  # type: ignore[no-untyped-def]
        result = yield ctx.schedule_activity("heartbeat_until_cancelled", [key])
        return result


WORKFLOWS = [WaitsForApproval, SignalledByActivity, RunsLongActivity]
ACTIVITIES = [heartbeat_until_cancelled, send_signal]


def _wid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@asynccontextmanager
async def running_worker(client: Client, queue: str) -> AsyncIterator[Worker]:
    worker = Worker(
        client, task_queue=queue, workflows=WORKFLOWS, activities=ACTIVITIES, poll_timeout=5
    )
    async with running(worker):
        yield worker


async def _wait_for(key: str, state: str, timeout: float = 30.0) -> None:
    async def until() -> None:
        while OBSERVED.get(key) != state:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(until(), timeout)


# --- scenarios --------------------------------------------------------------------------
async def scenario_signal_before_worker(url: str, token: str, queue: str) -> dict[str, Any]:
    """Two signals (one retried with its key) arrive before any worker polls."""
    async with Client(url, token=token, namespace="default") as client:
        workflow_id = _wid("approval")
        handle = await client.start_workflow(
            workflow_type="waits-for-approval", workflow_id=workflow_id, task_queue=queue
        )
        first = await client.signal_workflow(
            workflow_id, "approve", args=["alice", 1], request_id="approve-key"
        )
        retried = await client.signal_workflow(
            workflow_id, "approve", args=["alice", 1], request_id="approve-key"
        )
        await handle.signal("approve", ["bob", 2])
        async with running_worker(client, queue):
            result = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        return {
            "workflow_id": workflow_id,
            "run_id": handle.run_id,
            "result": result,
            "first": first,
            "retried": retried,
        }


async def scenario_signal_while_waiting(url: str, token: str, queue: str) -> dict[str, Any]:
    """The workflow is parked on a condition wait when the signal arrives."""
    async with Client(url, token=token, namespace="default") as client:
        workflow_id = _wid("waiting")
        async with running_worker(client, queue):
            handle = await client.start_workflow(
                workflow_type="waits-for-approval", workflow_id=workflow_id, task_queue=queue
            )

            async def wait_opened() -> None:
                while True:
                    history = await client.get_history(workflow_id, handle.run_id or "")
                    types = [e.get("event_type") for e in history.get("events", [])]
                    if "ConditionWaitOpened" in types:
                        return
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(wait_opened(), 30)
            receipt = await client.signal_workflow(workflow_id, "approve", args=["carol", 3])
            result = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        return {
            "workflow_id": workflow_id,
            "run_id": handle.run_id,
            "result": result,
            "receipt": receipt,
        }


async def scenario_signal_from_activity(url: str, token: str, queue: str) -> dict[str, Any]:
    """A signal arrives while the workflow is blocked on an activity (no open task)."""
    async with Client(url, token=token, namespace="default") as client:
        workflow_id = _wid("by-activity")
        async with running_worker(client, queue):
            handle = await client.start_workflow(
                workflow_type="signalled-by-activity",
                workflow_id=workflow_id,
                task_queue=queue,
                input=[url, token],
            )
            result = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        return {"workflow_id": workflow_id, "run_id": handle.run_id, "result": result}


async def scenario_close(url: str, token: str, queue: str, kind: str) -> dict[str, Any]:
    """Cancel or terminate a run whose activity is heartbeating; the activity sees it."""
    async with Client(url, token=token, namespace="default") as client:
        workflow_id = _wid(kind)
        out: dict[str, Any] = {"workflow_id": workflow_id}
        async with running_worker(client, queue):
            handle = await client.start_workflow(
                workflow_type="runs-long-activity",
                workflow_id=workflow_id,
                task_queue=queue,
                input=[workflow_id],
            )
            out["run_id"] = handle.run_id
            await _wait_for(workflow_id, "started")
            if kind == "cancel":
                await client.cancel_workflow(workflow_id, reason="customer asked")
            else:
                await client.terminate_workflow(workflow_id)
            await _wait_for(workflow_id, "cancelled")
            out["activity"] = OBSERVED[workflow_id]
            try:
                out["result"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
            except (WorkflowCancelled, WorkflowTerminated) as exc:
                out["error"] = {"type": type(exc).__name__, "message": str(exc)}
        out["status"] = (await client.describe_workflow(workflow_id)).status
        try:
            await client.signal_workflow(workflow_id, "approve", args=["late", 0])
        except SignalFailed as exc:
            out["late_signal"] = {"type": type(exc).__name__, "reason": exc.reason}
        try:
            await client.signal_workflow(_wid("missing"), "approve")
        except WorkflowNotFound as exc:
            out["missing_signal"] = type(exc).__name__
        return out


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    if scenario == "signal-before-worker":
        return await scenario_signal_before_worker(url, token, queue)
    if scenario == "signal-while-waiting":
        return await scenario_signal_while_waiting(url, token, queue)
    if scenario == "signal-from-activity":
        return await scenario_signal_from_activity(url, token, queue)
    if scenario in ("cancel", "terminate"):
        return await scenario_close(url, token, queue, scenario)
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    print_result(main)
