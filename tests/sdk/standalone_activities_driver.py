"""Standalone activities through the official SDK against a dwtrio URL; prints JSON.

    python standalone_activities_driver.py <scenario> <base_url> <token>

Scenarios: ``result`` (start one, await its result, describe and list it),
``failure`` (an activity that always fails, with a retry policy of three attempts),
``cancel`` (a heartbeating activity cancelled through the handle) and ``refusals``
(what the SDK raises for an unknown id and a taken id). The worker is an unmodified
SDK ``Worker`` with the activities registered and no workflow. Runs in its own
process (the SDK is asyncio; the test process runs Trio). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from durable_workflow import Client, Worker, activity
from durable_workflow.errors import (
    DurableWorkflowError,
    InvalidArgument,
    WorkflowCancelled,
    WorkflowFailed,
)

from driver_support import print_result, running

ATTEMPTS: list[int] = []


@activity.defn(name="sa-add")
async def add(a: int, b: int) -> dict[str, Any]:
    return {"sum": a + b, "attempt": activity.context().info.attempt_number}


@activity.defn(name="sa-flaky")
async def flaky(label: str) -> str:
    ATTEMPTS.append(activity.context().info.attempt_number)
    raise RuntimeError(f"{label} broke on attempt {activity.context().info.attempt_number}")


@activity.defn(name="sa-patient")
async def patient() -> str:
    for _ in range(300):
        await activity.context().heartbeat({"alive": True})
        await asyncio.sleep(0.1)
    return "never cancelled"


def _worker(client: Client, queue: str) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[],
        activities=[add, flaky, patient],
        poll_timeout=5,
    )


def _described(d: Any) -> dict[str, Any]:
    keys = (
        "activity_id",
        "workflow_run_id",
        "activity_execution_id",
        "workflow_type",
        "activity_type",
        "activity_class",
        "task_queue",
        "namespace",
        "status",
        "activity_status",
        "closed_reason",
        "business_key",
        "payload_codec",
        "started_at",
        "closed_at",
        "attempt_count",
        "result",
    )
    return {k: getattr(d, k) for k in keys}


async def result_scenario(url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        queue = f"sa-{uuid.uuid4().hex[:8]}"
        activity_id = f"sa-add-{uuid.uuid4().hex[:12]}"
        async with running(_worker(client, queue)):
            handle = await client.start_activity(
                activity_type="sa-add",
                task_queue=queue,
                activity_id=activity_id,
                activity_class="Billing\\AddNumbers",
                business_key="order-7",
                input=[2, 3],
                start_to_close_timeout_seconds=30,
                schedule_to_close_timeout_seconds=120,
            )
            started = {
                "activity_id": handle.activity_id,
                "workflow_run_id": handle.workflow_run_id,
                "activity_execution_id": handle.activity_execution_id,
                "workflow_type": handle.workflow_type,
                "activity_type": handle.activity_type,
            }
            result = await handle.result(poll_interval=0.1, timeout=30.0)
            # A second one without an id: the server makes one up.
            unnamed = await client.start_activity(
                activity_type="sa-add", task_queue=queue, input=[1, 1]
            )
            unnamed_result = await unnamed.result(poll_interval=0.1, timeout=30.0)
        described = _described(await handle.describe())
        listed = await client.list_activities(page_size=200)
        completed = await client.list_activities(status="completed", page_size=200)
        running_ = await client.list_activities(status="running", page_size=200)
        first = await client.list_activities(page_size=1)
        second = await client.list_activities(page_size=1, next_page_token=first.next_page_token)
        workflows = await client.list_workflows(page_size=200)
        as_workflow = await client.describe_workflow(activity_id)
        return {
            "started": started,
            "result": result,
            "unnamed_id": unnamed.activity_id,
            "unnamed_result": unnamed_result,
            "described": described,
            "listed": {
                "ids": [a.activity_id for a in listed.activities],
                "count": listed.activity_count,
                "mine": next(
                    _described(a) for a in listed.activities if a.activity_id == activity_id
                ),
            },
            "completed_ids": [a.activity_id for a in completed.activities],
            "running_ids": [a.activity_id for a in running_.activities],
            "pages": {
                "first": [a.activity_id for a in first.activities],
                "first_token": first.next_page_token,
                "second": [a.activity_id for a in second.activities],
            },
            "workflow_ids": [w.workflow_id for w in workflows.executions],
            "as_workflow": {"status": as_workflow.status, "type": as_workflow.workflow_type},
        }


async def failure_scenario(url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        queue = f"sa-{uuid.uuid4().hex[:8]}"
        async with running(_worker(client, queue)):
            handle = await client.start_activity(
                activity_type="sa-flaky",
                task_queue=queue,
                input=["gizmo"],
                retry_policy={"max_attempts": 3, "backoff_seconds": [0]},
            )
            raised: dict[str, Any] = {}
            try:
                await handle.result(poll_interval=0.1, timeout=30.0)
            except WorkflowFailed as exc:
                raised = {"type": type(exc).__name__, "message": str(exc)}
        return {
            "activity_id": handle.activity_id,
            "run_id": handle.workflow_run_id,
            "raised": raised,
            "attempts_seen": ATTEMPTS,
            "described": _described(await handle.describe()),
        }


async def cancel_scenario(url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        queue = f"sa-{uuid.uuid4().hex[:8]}"
        async with running(_worker(client, queue)):
            handle = await client.start_activity(
                activity_type="sa-patient", task_queue=queue, heartbeat_timeout_seconds=30
            )
            running_status = None
            for _ in range(100):
                d = await handle.describe()
                if d.activity_status == "running":
                    running_status = d.status
                    break
                await asyncio.sleep(0.1)
            await handle.cancel(reason="no longer needed")
            raised: dict[str, Any] = {}
            try:
                await handle.result(poll_interval=0.1, timeout=30.0)
            except WorkflowCancelled as exc:
                raised = {"type": type(exc).__name__, "message": str(exc)}
            await asyncio.sleep(0.5)  # the activity's next heartbeat learns of it
        return {
            "activity_id": handle.activity_id,
            "run_id": handle.workflow_run_id,
            "running_status": running_status,
            "raised": raised,
            "described": _described(await handle.describe()),
        }


async def refusals_scenario(url: str, token: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with Client(url, token=token, namespace="default") as client:
        try:
            await client.describe_activity(f"nobody-{uuid.uuid4().hex}")
        except DurableWorkflowError as exc:
            out["unknown"] = {
                "type": type(exc).__name__,
                "status": getattr(exc, "status", None),
                "reason": exc.reason() if hasattr(exc, "reason") else None,
            }
        queue = f"sa-idle-{uuid.uuid4().hex[:8]}"
        activity_id = f"sa-taken-{uuid.uuid4().hex[:12]}"
        await client.start_activity(
            activity_type="sa-add", task_queue=queue, activity_id=activity_id
        )
        try:
            await client.start_activity(
                activity_type="sa-add", task_queue=queue, activity_id=activity_id
            )
        except InvalidArgument as exc:
            out["taken"] = {"type": type(exc).__name__, "errors": exc.errors}
        pending = await client.describe_activity(activity_id)
        out["pending"] = {"status": pending.status, "activity_status": pending.activity_status}
    return out


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    scenarios = {
        "result": result_scenario,
        "failure": failure_scenario,
        "cancel": cancel_scenario,
        "refusals": refusals_scenario,
    }
    if scenario not in scenarios:
        raise SystemExit(f"unknown scenario {scenario!r}")
    return await scenarios[scenario](url, token)


if __name__ == "__main__":
    print_result(main)
