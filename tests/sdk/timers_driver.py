"""Runs timer and condition-wait workflows with the official SDK against a dwtrio URL.

    python timers_driver.py <scenario> <base_url> <token>

Prints one JSON line: the workflow id, run id and result (or error). Runs in
its own process because the SDK is asyncio-based; every scenario is bounded.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.errors import WorkflowFailed

from driver_support import print_result, running


@activity.defn(name="echo")
def echo(x: Any) -> Any:
    return x


@workflow.defn(name="sleeper")
class Sleeper:
    """A 1 s durable sleep, then an activity (history-events.md §5.1's example)."""

    def run(self, ctx, value):  # type: ignore[no-untyped-def]
        yield ctx.sleep(1)
        result = yield ctx.schedule_activity("echo", [value])
        return {"echoed": result}


@workflow.defn(name="sleep-beside-activity")
class SleepBesideActivity:
    """A parallel group mixing a timer and an activity: one wake once both settled."""

    def run(self, ctx, value):  # type: ignore[no-untyped-def]
        first = yield ctx.schedule_activity("echo", ["first"])
        both = yield [ctx.sleep(1), ctx.schedule_activity("echo", [value])]
        return {"first": first, "both": both}


@workflow.defn(name="condition-timeouts")
class ConditionTimeouts:
    """Two waits nothing satisfies: each times out and resolves False, then a sleep."""

    def __init__(self) -> None:
        self.ready = False

    def run(self, ctx):  # type: ignore[no-untyped-def]
        already = yield ctx.wait_condition(lambda: True, key="already", timeout=5)
        first = yield ctx.wait_condition(lambda: self.ready, key="first", timeout=1)
        second = yield ctx.wait_condition(lambda: self.ready, timeout=0.2)
        yield ctx.sleep(0)
        return {"already": already, "first": first, "second": second}


@workflow.defn(name="collects-two")
class CollectsTwo:
    """A wait satisfied by signals (one at a time), then a wait that times out."""

    def __init__(self) -> None:
        self.items: list[str] = []

    @workflow.signal("add")
    def add(self, item: str) -> None:
        self.items.append(item)

    def run(self, ctx):  # type: ignore[no-untyped-def]
        ok = yield ctx.wait_condition(lambda: len(self.items) >= 2, key="two-items", timeout=30)
        late = yield ctx.wait_condition(lambda: len(self.items) >= 3, key="never", timeout=1)
        return {"ok": ok, "late": late, "items": list(self.items)}


WORKFLOWS = [Sleeper, SleepBesideActivity, ConditionTimeouts, CollectsTwo]
SCENARIOS: dict[str, tuple[str, list[Any]]] = {
    "sleep": ("sleeper", ["hi"]),
    "parallel-sleep": ("sleep-beside-activity", ["second"]),
    "condition-timeouts": ("condition-timeouts", []),
    "signal-satisfies": ("collects-two", []),
}


async def _opened_waits(handle: Any, count: int) -> None:
    """Wait until the run's history holds ``count`` ConditionWaitOpened events."""
    while True:
        page = await handle.get_history(page_size=1000)
        events = page["events"] if isinstance(page, dict) else page.events
        opened = [e for e in events if e["event_type"] == "ConditionWaitOpened"]
        if len(opened) >= count:
            return
        await asyncio.sleep(0.05)


async def _send_signals(client: Client, handle: Any) -> None:
    """One signal per open wait, so the history is the documented example's."""
    for count, item in ((1, "a"), (2, "b")):
        await asyncio.wait_for(_opened_waits(handle, count), timeout=20)
        await client.signal_workflow(handle.workflow_id, "add", args=[item])


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    workflow_type, args = SCENARIOS[scenario]
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with Client(url, token=token, namespace="default") as client:
        worker = Worker(
            client, task_queue=queue, workflows=WORKFLOWS, activities=[echo], poll_timeout=5
        )
        workflow_id = f"{workflow_type}-{uuid.uuid4().hex}"
        handle = await client.start_workflow(
            workflow_type=workflow_type, workflow_id=workflow_id, task_queue=queue, input=args
        )
        out: dict[str, Any] = {"workflow_id": workflow_id, "run_id": handle.run_id}
        async with running(worker):
            try:
                if scenario == "signal-satisfies":
                    await _send_signals(client, handle)
                out["result"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
            except WorkflowFailed as exc:
                out["error"] = {"type": type(exc).__name__, "message": str(exc)}
        return out


if __name__ == "__main__":
    print_result(main, timeout_s=90)
