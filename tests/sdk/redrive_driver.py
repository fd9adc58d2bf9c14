"""Redrive through the official SDK against a dwtrio URL; prints JSON.

    python redrive_driver.py <scenario> <base_url> <token>

Scenarios: ``activity`` (the second of two activities fails for good, so the run
fails; the activity is fixed and ``Client.redrive_workflow`` continues the run:
the first activity must not run again) and ``code`` (the workflow code raises after
its activity; the code is fixed and ``WorkflowHandle.redrive`` continues the run) and
``steps`` (an activity, a timer and a side effect replay before the retried activity).
The worker counts every activity execution. Runs in its own process (the SDK is
asyncio; the test process runs Trio). Every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from typing import Any

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.errors import NonRetryableError, ServerError, WorkflowFailed

from driver_support import print_result, running

#: Executions per activity, in this worker process.
CALLS: Counter[str] = Counter()
#: What the test "deploys" between the failure and the redrive.
FIXED = {"charge": False, "code": False}
#: Side effects evaluated, in this worker process (a replayed one is not).
EFFECTS: list[str] = []


@activity.defn(name="reserve")
async def reserve(item: str) -> str:
    CALLS["reserve"] += 1
    return f"reserved {item}"


@activity.defn(name="charge")
async def charge(item: str) -> str:
    CALLS["charge"] += 1
    if not FIXED["charge"]:
        raise NonRetryableError(f"card declined for {item}")
    return f"charged {item}"


@workflow.defn(name="redrive-order")
class RedriveOrder:
    def run(self, ctx, item):  # type: ignore[no-untyped-def]
        reserved = yield ctx.schedule_activity("reserve", [item])
        charged = yield ctx.schedule_activity("charge", [item])
        return f"{reserved}, {charged}"


@workflow.defn(name="redrive-code")
class RedriveCode:
    def run(self, ctx, item):  # type: ignore[no-untyped-def]
        reserved = yield ctx.schedule_activity("reserve", [item])
        if not FIXED["code"]:
            raise RuntimeError("a bug after the reservation")
        return f"{reserved}, shipped"


def _token() -> str:
    EFFECTS.append("token")
    return f"tok-{len(EFFECTS)}"


@workflow.defn(name="redrive-steps")
class RedriveSteps:
    """An activity, a timer and a side effect before the step that fails."""

    def run(self, ctx, item):  # type: ignore[no-untyped-def]
        reserved = yield ctx.schedule_activity("reserve", [item])
        yield ctx.start_timer(1)
        token = yield ctx.side_effect(_token)
        charged = yield ctx.schedule_activity("charge", [item])
        return f"{reserved}, {token}, {charged}"


def _result(r: Any) -> dict[str, Any]:
    """What the SDK parsed (WorkflowCommandResult), with the raw body's redrive details."""
    fields = dataclasses.asdict(r)
    raw = fields.pop("raw")
    fields["type"] = type(r).__name__
    fields["redrive"] = raw.get("redrive")
    fields["retained"] = raw.get("retained")
    return fields


def _error(exc: ServerError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "status": exc.status, "reason": exc.reason()}


def _worker(client: Client, queue: str) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[RedriveOrder, RedriveCode, RedriveSteps],
        activities=[reserve, charge],
        poll_timeout=5,
    )


async def _failed_run(client: Client, workflow_type: str, queue: str) -> tuple[str, str, str]:
    workflow_id = f"redrive-{uuid.uuid4().hex}"
    handle = await client.start_workflow(
        workflow_type=workflow_type, workflow_id=workflow_id, task_queue=queue, input=["book"]
    )
    try:
        await client.get_result(handle, timeout=30.0, poll_interval=0.1)
    except WorkflowFailed as exc:
        return workflow_id, handle.run_id or "", str(exc)
    raise AssertionError("the run did not fail")


async def activity_scenario(url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        queue = f"q-{uuid.uuid4().hex[:8]}"
        out: dict[str, Any] = {}
        async with running(_worker(client, queue)):
            workflow_id, failed_run, failure = await _failed_run(client, "redrive-order", queue)
            out.update(workflow_id=workflow_id, failed_run_id=failed_run, failure=failure)
            out["calls_before"] = dict(CALLS)
            FIXED["charge"] = True
            redriven = await client.redrive_workflow(workflow_id, failed_run, request_id="r-1")
            out["redriven"] = _result(redriven)
            handle = client.get_workflow_handle(workflow_id, run_id=redriven.run_id)
            out["result"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        out["calls_after"] = dict(CALLS)
        out["again"] = _result(
            await client.redrive_workflow(workflow_id, failed_run, request_id="r-1")
        )
        for name, call in (
            ("not_current", client.redrive_workflow(workflow_id, failed_run)),
            ("completed", client.redrive_workflow(workflow_id, redriven.run_id or "")),
        ):
            try:
                await call
                out[name] = "accepted"
            except ServerError as exc:
                out[name] = _error(exc)
        described = await client.describe_workflow(workflow_id)
        out["described"] = {"status": described.status, "run_id": described.run_id}
        runs = await client.list_workflow_runs(workflow_id)
        out["runs"] = [{"run_id": r.run_id, "status": r.status} for r in runs.runs]
        listed = await client.list_workflows(query=f"WorkflowId = '{workflow_id}'", page_size=50)
        out["listed"] = sorted([e.run_id or "", e.status or ""] for e in listed.executions)
        return out


async def code_scenario(url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        queue = f"q-{uuid.uuid4().hex[:8]}"
        out: dict[str, Any] = {}
        async with running(_worker(client, queue)):
            workflow_id, failed_run, failure = await _failed_run(client, "redrive-code", queue)
            out.update(workflow_id=workflow_id, failed_run_id=failed_run, failure=failure)
            FIXED["code"] = True
            handle = client.get_workflow_handle(workflow_id, run_id=failed_run)
            redriven = await handle.redrive()
            out["redriven"] = _result(redriven)
            new_handle = client.get_workflow_handle(workflow_id, run_id=redriven.run_id)
            out["result"] = await client.get_result(new_handle, timeout=30.0, poll_interval=0.1)
        out["calls_after"] = dict(CALLS)
        return out


async def steps_scenario(url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        queue = f"q-{uuid.uuid4().hex[:8]}"
        out: dict[str, Any] = {}
        async with running(_worker(client, queue)):
            workflow_id, failed_run, failure = await _failed_run(client, "redrive-steps", queue)
            out.update(workflow_id=workflow_id, failed_run_id=failed_run, failure=failure)
            FIXED["charge"] = True
            redriven = await client.redrive_workflow(workflow_id, failed_run)
            out["redriven"] = _result(redriven)
            handle = client.get_workflow_handle(workflow_id, run_id=redriven.run_id)
            out["result"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        out["calls_after"] = dict(CALLS)
        out["effects"] = len(EFFECTS)
        return out


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    if scenario == "activity":
        return await activity_scenario(url, token)
    if scenario == "code":
        return await code_scenario(url, token)
    if scenario == "steps":
        return await steps_scenario(url, token)
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    print_result(main)
