"""The official SDK across nodes: a worker polls one address, a client starts, signals and
waits on another (the same one behind a load balancer or for a single container).

    python signal_flow_driver.py <worker_url> <client_url> <token> <count>

Starts ``count`` workflows through ``client_url``. Each sleeps a second (a durable
timer), waits for a signal the driver sends through ``client_url``, and runs an activity
on the worker polling ``worker_url``, so every kind of wake (timer, signal, activity,
completion) has to reach a poll that another node may hold. Prints one JSON line: the
server's health as the SDK reads it, the workflow ids and their results. Runs in its own
process (the SDK is asyncio).
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


@workflow.defn(name="signal-flow")
class SignalFlow:
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


async def main(worker_url: str, client_url: str, token: str, count: int) -> dict[str, Any]:
    queue = f"flow-{uuid.uuid4().hex[:8]}"
    async with (
        Client(worker_url, token=token, namespace="default", timeout=15) as worker_client,
        Client(client_url, token=token, namespace="default", timeout=15) as client,
    ):
        health = await client.health()
        worker = Worker(
            worker_client,
            task_queue=queue,
            workflows=[SignalFlow],
            activities=[shout],
            poll_timeout=5,
        )
        runner = asyncio.create_task(worker.run())
        try:
            handles = [
                await client.start_workflow(
                    workflow_type="signal-flow",
                    workflow_id=f"flow-{uuid.uuid4().hex}",
                    task_queue=queue,
                    input=[f"n{i}"],
                )
                for i in range(count)
            ]
            for i, handle in enumerate(handles):
                await client.signal_workflow(handle.workflow_id, "add", args=[f"s{i}"])
            results = await asyncio.gather(
                *(client.get_result(h, timeout=60.0, poll_interval=0.1) for h in handles)
            )
        finally:
            await worker.stop()
            await asyncio.gather(runner, return_exceptions=True)
    return {"health": health, "workflow_ids": [h.workflow_id for h in handles], "results": results}


if __name__ == "__main__":
    a, b, auth_token, n = sys.argv[1:5]
    out = asyncio.run(asyncio.wait_for(main(a, b, auth_token, int(n)), timeout=120))
    print(json.dumps(out, default=str))
