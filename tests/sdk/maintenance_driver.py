"""Repair and archive through the official SDK against a dwtrio URL; prints JSON.

    python maintenance_driver.py <scenario> <base_url> <token>

Scenarios: ``repair-start`` (start a workflow nobody works on and repair it),
``repair-run:<workflow_id>:<queue>`` (repair it again, after the test deleted its
task, then run it to the end with a worker) and ``archive``. Runs in its own
process (the SDK is asyncio; the test process runs Trio). Every
wait is bounded.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.errors import ServerError

from driver_support import print_result, running


@activity.defn(name="greet")
async def greet(name: str) -> str:
    return f"hello {name}"


@workflow.defn(name="greets-once")
class GreetsOnce:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        result = yield ctx.schedule_activity("greet", [name])
        return result


def _result(r: Any) -> dict[str, Any]:
    """What the SDK parsed (WorkflowCommandResult), without its raw body."""
    fields = dataclasses.asdict(r)
    raw = fields.pop("raw")
    fields["type"] = type(r).__name__
    fields["repair"] = raw.get("repair")
    fields["archived_at"] = raw.get("archived_at")
    fields["reason"] = raw.get("reason")
    return fields


def _worker(client: Client, queue: str) -> Worker:
    return Worker(
        client, task_queue=queue, workflows=[GreetsOnce], activities=[greet], poll_timeout=5
    )


async def repair_start(url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        queue = f"q-{uuid.uuid4().hex[:8]}"
        workflow_id = f"repair-{uuid.uuid4().hex}"
        handle = await client.start_workflow(
            workflow_type="greets-once", workflow_id=workflow_id, task_queue=queue, input=["ann"]
        )
        first = await client.repair_workflow(workflow_id)
        return {
            "workflow_id": workflow_id,
            "run_id": handle.run_id,
            "queue": queue,
            "first": _result(first),
        }


async def repair_run(url: str, token: str, workflow_id: str, queue: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        repaired = await client.repair_workflow(workflow_id)
        handle = client.get_workflow_handle(workflow_id)
        async with running(_worker(client, queue)):
            result = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        return {"repaired": _result(repaired), "result": result}


async def archive(url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        queue = f"q-{uuid.uuid4().hex[:8]}"
        workflow_id = f"archive-{uuid.uuid4().hex}"
        open_id = f"archive-open-{uuid.uuid4().hex}"
        async with running(_worker(client, queue)):
            handle = await client.start_workflow(
                workflow_type="greets-once", workflow_id=workflow_id, task_queue=queue, input=["bo"]
            )
            result = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        out: dict[str, Any] = {
            "workflow_id": workflow_id,
            "run_id": handle.run_id,
            "result": result,
        }
        out["archived"] = _result(await client.archive_workflow(workflow_id, reason="tidy"))
        out["again"] = _result(await client.archive_workflow(workflow_id))
        await client.start_workflow(
            workflow_type="greets-once",
            workflow_id=open_id,
            task_queue=f"{queue}-idle",
            input=["x"],
        )
        try:
            await client.archive_workflow(open_id)
        except ServerError as exc:
            out["open"] = {"type": type(exc).__name__, "status": exc.status, "reason": exc.reason()}
        listed = await client.list_workflows(page_size=200)
        out["listed"] = [e.workflow_id for e in listed.executions]
        described = await client.describe_workflow(workflow_id)
        out["described"] = {"status": described.status, "run_id": described.run_id}
        return out


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    if scenario == "repair-start":
        return await repair_start(url, token)
    if scenario.startswith("repair-run:"):
        _, workflow_id, queue = scenario.split(":")
        return await repair_run(url, token, workflow_id, queue)
    if scenario == "archive":
        return await archive(url, token)
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    print_result(main)
