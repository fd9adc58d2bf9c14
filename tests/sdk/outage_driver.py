"""Steady SDK load against a dwtrio URL while the test breaks its database; prints a JSON result.

    python outage_driver.py <scenario> <base_url> <token>

Scenario ``load``: one SDK worker with default settings serves greeters (a
workflow task, an activity, a workflow task) and sleepers (a 1 s durable timer,
then an activity). A starter starts ``DRIVER_RATE`` workflows a second for
``DRIVER_SECONDS`` seconds (environment variables), each start with the SDK's
default transport retries; then every acknowledged workflow is awaited. The
result counts what was acknowledged, completed with the right result, failed,
and when each start was acknowledged and each workflow completed (wall clock),
so the test can line them up with the fault it injected.

Runs in its own process (the SDK is asyncio; the test process runs Trio).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any

import httpx
from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.errors import ServerError, WorkflowAlreadyStarted

from driver_support import print_result, running


@activity.defn(name="greet")
def greet(name: str) -> str:
    return f"hello, {name}"


@workflow.defn(name="greeter")
class Greeter:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        result = yield ctx.schedule_activity("greet", [name])
        return result


@workflow.defn(name="sleeper")
class Sleeper:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        yield ctx.sleep(1)
        result = yield ctx.schedule_activity("greet", [name])
        return result


async def load(base_url: str, token: str) -> dict[str, Any]:
    rate = float(os.environ.get("DRIVER_RATE", "5"))
    seconds = float(os.environ.get("DRIVER_SECONDS", "20"))
    queue = f"outage-{uuid.uuid4().hex[:8]}"
    client = Client(base_url, token=token, namespace="default")
    worker = Worker(client, task_queue=queue, workflows=[Greeter, Sleeper], activities=[greet])
    acknowledged: dict[str, float] = {}
    start_errors: list[str] = []

    async def start(i: int) -> None:
        kind = "greeter" if i % 2 == 0 else "sleeper"
        workflow_id = f"{kind}-{i}-{uuid.uuid4().hex[:6]}"
        try:
            await client.start_workflow(
                workflow_type=kind, workflow_id=workflow_id, task_queue=queue, input=[str(i)]
            )
        except WorkflowAlreadyStarted:
            pass  # a retried start whose first answer was lost: it was started
        except Exception as exc:
            start_errors.append(f"{type(exc).__name__}: {exc}")
            return
        acknowledged[workflow_id] = time.time()

    completed: dict[str, float] = {}
    wrong: list[str] = []
    failed: list[str] = []

    async def finish(workflow_id: str) -> None:
        handle = client.get_workflow_handle(workflow_id)
        give_up = time.time() + 150
        while True:
            try:
                result = await handle.result(poll_interval=0.25, timeout=150)
                break
            except (ServerError, httpx.HTTPError) as exc:
                # Reading the result failed (the server said 503 during the outage):
                # that says nothing about the workflow; ask again.
                if time.time() > give_up:
                    failed.append(f"{workflow_id}: unanswered: {exc}")
                    return
                await asyncio.sleep(0.5)
            except Exception as exc:
                failed.append(f"{workflow_id}: {type(exc).__name__}: {exc}")
                return
        completed[workflow_id] = time.time()
        if result != f"hello, {workflow_id.split('-')[1]}":
            wrong.append(f"{workflow_id}: {result!r}")

    async with running(worker):
        began = time.time()
        starters = []
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, began + i / rate - time.time()))
            starters.append(asyncio.create_task(start(i)))
        await asyncio.gather(*starters)
        await asyncio.gather(*(finish(w) for w in list(acknowledged)))
    return {
        "began": began,
        "attempted": int(rate * seconds),
        "acknowledged": len(acknowledged),
        "start_errors": start_errors,
        "completed": len(completed),
        "wrong": wrong,
        "failed": failed,
        "acknowledged_at": acknowledged,
        "completed_at": completed,
    }


async def main(name: str, base_url: str, token: str) -> Any:
    if log_file := os.environ.get("DRIVER_LOG"):
        logging.basicConfig(
            filename=log_file, level=logging.INFO, format="%(created).3f %(name)s %(message)s"
        )
    if name == "load":
        return await load(base_url, token)
    raise SystemExit(f"unknown scenario {name}")


if __name__ == "__main__":
    print_result(main, timeout_s=400)
