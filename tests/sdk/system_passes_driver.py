"""The admin system passes through the official SDK, against a dwtrio URL.

    python system_passes_driver.py <scenario> <base_url> <token>

Scenarios: ``calls`` (each of ``repair_status``, ``repair_pass``,
``activity_timeout_status``, ``activity_timeout_pass``, ``retention_status`` and
``retention_pass`` with and without their filters, plus one refused call) and
``busy`` (an SDK worker runs two-activity workflows, a few at a time, for a fixed
number of rounds while the server's retention loop prunes; prints every result).
Prints one JSON line; every call is bounded.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.errors import DurableWorkflowError

from driver_support import print_result, running

#: The busy scenario runs workflows CONCURRENCY at a time until the file named by
#: $SP_STOP_FILE exists, at most BUSY_MAX_WORKFLOWS of them and for BUSY_MAX_S seconds.
BUSY_MAX_WORKFLOWS = 400
BUSY_MAX_S = 90.0
CONCURRENCY = 4


@activity.defn(name="sp-double")
def double(x: int) -> int:
    return x * 2


@activity.defn(name="sp-describe")
def describe(x: int) -> str:
    return f"value={x}"


@workflow.defn(name="sp-pipeline")
class Pipeline:
    def run(self, ctx, x):  # type: ignore[no-untyped-def]
        doubled = yield ctx.schedule_activity("sp-double", [x])
        text = yield ctx.schedule_activity("sp-describe", [doubled])
        return text


def refused(exc: DurableWorkflowError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "status": getattr(exc, "status", None)}


async def calls(client: Client) -> dict[str, Any]:
    out: dict[str, Any] = {
        "repair_status": await client.repair_status(),
        "repair_pass": await client.repair_pass(),
        "repair_pass_runs": await client.repair_pass(run_ids=["run-nobody"]),
        "repair_pass_instance": await client.repair_pass(instance_id="wf-nobody"),
        "activity_timeout_status": await client.activity_timeout_status(),
        "activity_timeout_pass": await client.activity_timeout_pass(limit=5),
        "activity_timeout_pass_ids": await client.activity_timeout_pass(execution_ids=["nope"]),
        "retention_status": await client.retention_status(),
        "retention_pass_ids": await client.retention_pass(run_ids=["run-sdk000000000"]),
        "retention_pass_limit": await client.retention_pass(limit=2),
        "retention_pass": await client.retention_pass(),
    }
    try:
        await client.retention_pass(limit=0)
        out["refused"] = None
    except DurableWorkflowError as exc:
        out["refused"] = refused(exc)
    return out


async def busy(client: Client) -> dict[str, Any]:
    queue = f"sp-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[Pipeline],
        activities=[double, describe],
        poll_timeout=5,
    )
    results: list[dict[str, Any]] = []
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        try:
            handle = await client.start_workflow(
                workflow_type="sp-pipeline",
                workflow_id=f"sp-{uuid.uuid4().hex}",
                task_queue=queue,
                input=[i],
            )
            result = await client.get_result(handle, timeout=60.0, poll_interval=0.1)
            results.append(
                {
                    "i": i,
                    "workflow_id": handle.workflow_id,
                    "run_id": handle.run_id,
                    "result": result,
                }
            )
        finally:
            slots.release()

    stop_file = Path(os.environ["SP_STOP_FILE"])
    deadline = time.monotonic() + BUSY_MAX_S
    stopped_by_file = False
    async with running(worker), asyncio.TaskGroup() as tasks:
        for i in range(BUSY_MAX_WORKFLOWS):
            if stop_file.exists():
                stopped_by_file = True
                break
            if time.monotonic() > deadline:
                break
            await slots.acquire()
            tasks.create_task(one(i))
    return {
        "results": sorted(results, key=lambda r: r["i"]),
        "stopped_by_file": stopped_by_file,
    }


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        if scenario == "calls":
            return await calls(client)
        return await busy(client)


if __name__ == "__main__":
    print_result(main, timeout_s=170)
