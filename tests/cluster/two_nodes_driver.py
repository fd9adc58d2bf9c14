"""The official SDK against two dwtrio nodes: workers on node A, the client on node B.

    python two_nodes_driver.py <url_a> <url_b> <token> <count>

Starts ``count`` workflows through node B that sleep, wait for a signal (sent
through node B) and run an activity on a worker polling node A. Prints one
JSON line with every result. Runs in its own process (the SDK is asyncio).
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


@workflow.defn(name="two-node-flow")
class TwoNodeFlow:
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


async def main(url_a: str, url_b: str, token: str, count: int) -> dict[str, Any]:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with (
        Client(url_a, token=token, namespace="default") as worker_client,
        Client(url_b, token=token, namespace="default") as client,
    ):
        worker = Worker(
            worker_client,
            task_queue=queue,
            workflows=[TwoNodeFlow],
            activities=[shout],
            poll_timeout=5,
        )
        runner = asyncio.create_task(worker.run())
        try:
            handles = []
            for i in range(count):
                handle = await client.start_workflow(
                    workflow_type="two-node-flow",
                    workflow_id=f"two-node-{uuid.uuid4().hex}",
                    task_queue=queue,
                    input=[f"n{i}"],
                )
                handles.append(handle)
            for i, handle in enumerate(handles):
                await client.signal_workflow(handle.workflow_id, "add", args=[f"s{i}"])
            results = await asyncio.gather(
                *(client.get_result(h, timeout=60.0, poll_interval=0.1) for h in handles)
            )
        finally:
            await worker.stop()
            await asyncio.gather(runner, return_exceptions=True)
        return {"results": results, "workflow_ids": [h.workflow_id for h in handles]}


if __name__ == "__main__":
    a, b, auth_token, n = sys.argv[1:5]
    out = asyncio.run(asyncio.wait_for(main(a, b, auth_token, int(n)), timeout=120))
    print(json.dumps(out, default=str))
