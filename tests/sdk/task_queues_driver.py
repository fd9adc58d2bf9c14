"""Task queues through the official SDK, against a dwtrio URL.

    python task_queues_driver.py <scenario> <base_url> <token>

Scenario ``queues``: a running SDK worker with a build id in
``describe_task_queue`` and ``list_task_queues``; a queue nobody polls whose
backlog grows as workflows start; a queue nothing names. Prints one JSON line
with what the SDK's own dataclasses made of the answers; every call is bounded.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from durable_workflow import Client, Worker, workflow

from driver_support import print_result, running

BUILD_ID = "build-tq"


@workflow.defn(name="tq-echo")
class QueueEcho:
    def run(self, ctx, value):  # type: ignore[no-untyped-def]
        return value
        yield  # a generator, as SDK workflows are


def parsed(obj: Any) -> Any:
    """A parsed SDK dataclass as plain data, without the raw bodies it keeps."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: parsed(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "raw"
        }
    if isinstance(obj, list):
        return [parsed(v) for v in obj]
    return obj


async def start(client: Client, queue: str, n: int) -> None:
    for _ in range(n):
        await client.start_workflow(
            workflow_type="tq-echo",
            workflow_id=f"tq-{uuid.uuid4().hex}",
            task_queue=queue,
            input=["x"],
        )


async def queues(client: Client) -> dict[str, Any]:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    idle = f"tq-idle-{uuid.uuid4().hex[:8]}"
    worker_id = f"tq-worker-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[QueueEcho],
        worker_id=worker_id,
        build_id=BUILD_ID,
        max_concurrent_workflow_tasks=4,
        poll_timeout=5,
    )
    out: dict[str, Any] = {"worker_id": worker_id, "task_queue": queue, "idle_queue": idle}
    async with running(worker):
        handle = await client.start_workflow(
            workflow_type="tq-echo",
            workflow_id=f"tq-{uuid.uuid4().hex}",
            task_queue=queue,
            input=["hi"],
        )
        out["result"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        out["described"] = parsed(await client.describe_task_queue(queue))
        await start(client, idle, 3)
        out["idle_3"] = parsed(await client.describe_task_queue(idle))
        await start(client, idle, 2)
        out["idle_5"] = parsed(await client.describe_task_queue(idle))
        listed = await client.list_task_queues()
        out["list"] = {
            "namespace": listed.namespace,
            "task_queues": [parsed(q) for q in listed.task_queues],
        }
    out["unknown"] = parsed(await client.describe_task_queue(f"nobody-{uuid.uuid4().hex[:8]}"))
    return out


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        return await queues(client)


if __name__ == "__main__":
    print_result(main, timeout_s=120)
