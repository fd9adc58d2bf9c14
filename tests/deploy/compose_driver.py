"""The official SDK against a containerised dwtrio: a worker on this host polls the one
published address (the load balancer, or the single container), and a client starts
workflows through it and waits for their results.

    python compose_driver.py <base_url> <token> <count>

Each workflow sleeps a second (a durable timer), waits for a signal and runs an
activity, so every kind of wake crosses the nodes behind the load balancer. Prints one
JSON line: the workflow ids, their results and the SDK's view of the server.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

from durable_workflow import Client, Worker, activity, workflow


@activity.defn(name="shout")
def shout(name: str) -> str:
    return name.upper()


@workflow.defn(name="compose-flow")
class ComposeFlow:
    def __init__(self) -> None:
        self.items: list[str] = []

    @workflow.signal("add")
    def add(self, item: str) -> None:
        self.items.append(item)

    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        yield ctx.sleep(1)
        ok = yield ctx.wait_condition(lambda: bool(self.items), key="signalled", timeout=30)
        loud = yield ctx.schedule_activity("shout", [name])
        return {"loud": loud, "items": list(self.items), "ok": ok}


async def main(url: str, token: str, count: int) -> dict[str, Any]:
    queue = f"compose-{uuid.uuid4().hex[:8]}"
    async with Client(url, token=token, namespace="default", timeout=15) as client:
        health = await client.health()
        worker = Worker(
            client, task_queue=queue, workflows=[ComposeFlow], activities=[shout], poll_timeout=5
        )
        runner = asyncio.create_task(worker.run())
        try:
            handles = [
                await client.start_workflow(
                    workflow_type="compose-flow",
                    workflow_id=f"compose-{uuid.uuid4().hex}",
                    task_queue=queue,
                    input=[f"n{i}"],
                )
                for i in range(count)
            ]
            for i, handle in enumerate(handles):
                await client.signal_workflow(handle.workflow_id, "add", args=[f"s{i}"])
            results = await asyncio.gather(
                *(client.get_result(h, timeout=60.0, poll_interval=0.2) for h in handles)
            )
        finally:
            await worker.stop()
            await asyncio.gather(runner, return_exceptions=True)
    return {"health": health, "workflow_ids": [h.workflow_id for h in handles], "results": results}


if __name__ == "__main__":
    base_url, auth_token, n = sys.argv[1:4]
    out = asyncio.run(asyncio.wait_for(main(base_url, auth_token, int(n)), timeout=120))
    print(json.dumps(out, default=str))
