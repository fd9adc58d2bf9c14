"""Fenced worker deregistration through the official SDK, against a dwtrio URL.

    python worker_deregistration_driver.py <scenario> <base_url> <token>

Scenarios: ``shutdown`` (a Worker runs a workflow and stops: it negotiated the fence
from cluster/info and deregisters with its registration token), ``stale`` (two
Workers with one worker id: the older one's shutdown is refused, the newer one keeps
its registration and then stops cleanly) and ``client`` (``register_worker`` and
``deregister_worker_registration`` by hand: receipt, replay, stale and unknown
tokens). Prints one JSON line with what the SDK saw; every call is bounded.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from durable_workflow import Client, Worker, workflow
from durable_workflow.errors import DurableWorkflowError, ServerError

from driver_support import print_result

QUEUE_PREFIX = "fenced"


@workflow.defn(name="fenced-echo")
class FencedEcho:
    def run(self, ctx, value):  # type: ignore[no-untyped-def]
        return value
        yield  # a generator, as SDK workflows are


def error(exc: BaseException) -> dict[str, Any]:
    body = exc.body if isinstance(exc, ServerError) else None
    return {
        "type": type(exc).__name__,
        "status": getattr(exc, "status", None),
        "reason": body.get("reason") if isinstance(body, dict) else None,
        "body": body if isinstance(body, dict) else None,
    }


def make_worker(client: Client, queue: str, worker_id: str) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[FencedEcho],
        worker_id=worker_id,
        poll_timeout=2,
        shutdown_timeout=10,
    )


async def start(worker: Worker) -> asyncio.Task[None]:
    """Run the worker until it has registered (its token is then known)."""
    runner = asyncio.create_task(worker.run())
    for _ in range(200):
        if worker._registered or runner.done():
            break
        await asyncio.sleep(0.05)
    if runner.done():
        runner.result()  # raises what stopped it
    return runner


async def stop(worker: Worker, runner: asyncio.Task[None]) -> dict[str, Any] | None:
    """Stop the worker; the error its shutdown raised, if any."""
    try:
        await asyncio.wait_for(worker.stop(), timeout=30)
        outcome = None
    except (DurableWorkflowError, RuntimeError) as exc:
        outcome = error(exc)
    await asyncio.gather(runner, return_exceptions=True)
    return outcome


async def shutdown(client: Client) -> dict[str, Any]:
    queue = f"{QUEUE_PREFIX}-{uuid.uuid4().hex[:8]}"
    worker_id = f"fenced-worker-{uuid.uuid4().hex[:8]}"
    worker = make_worker(client, queue, worker_id)
    runner = await start(worker)
    out: dict[str, Any] = {"worker_id": worker_id}
    out["fenced"] = worker._deregistration_fenced
    out["token"] = worker._registration_token
    handle = await client.start_workflow(
        workflow_type="fenced-echo",
        workflow_id=f"fenced-{uuid.uuid4().hex}",
        task_queue=queue,
        input=["hi"],
    )
    out["result"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
    out["before_stop"] = (await client.describe_worker(worker_id)).status
    out["stop_error"] = await stop(worker, runner)
    out["after_stop"] = (await client.describe_worker(worker_id)).status
    # The server's receipt: the same fenced request again answers it.
    out["replayed"] = await client.deregister_worker_registration(
        worker_id, registration_token=out["token"]
    )
    return out


async def stale(client: Client) -> dict[str, Any]:
    queue = f"{QUEUE_PREFIX}-{uuid.uuid4().hex[:8]}"
    worker_id = f"fenced-twin-{uuid.uuid4().hex[:8]}"
    older, newer = make_worker(client, queue, worker_id), make_worker(client, queue, worker_id)
    older_runner = await start(older)
    newer_runner = await start(newer)  # the same worker id registers again
    out: dict[str, Any] = {
        "worker_id": worker_id,
        "older_token": older._registration_token,
        "newer_token": newer._registration_token,
    }
    out["older_stop_error"] = await stop(older, older_runner)
    out["after_older_stop"] = (await client.describe_worker(worker_id)).status
    # The newer registration still serves its queue.
    handle = await client.start_workflow(
        workflow_type="fenced-echo",
        workflow_id=f"fenced-{uuid.uuid4().hex}",
        task_queue=queue,
        input=["still here"],
    )
    out["result"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
    out["newer_stop_error"] = await stop(newer, newer_runner)
    out["after_newer_stop"] = (await client.describe_worker(worker_id)).status
    return out


async def by_hand(client: Client) -> dict[str, Any]:
    queue = f"{QUEUE_PREFIX}-{uuid.uuid4().hex[:8]}"
    worker_id = f"fenced-hand-{uuid.uuid4().hex[:8]}"

    async def register() -> str:
        ack = await client.register_worker(
            worker_id=worker_id,
            task_queue=queue,
            supported_workflow_types=["fenced-echo"],
            capability_manifest={},
        )
        return str(ack["registration_token"])

    async def refused(token: str) -> dict[str, Any] | None:
        try:
            await client.deregister_worker_registration(worker_id, registration_token=token)
        except ServerError as exc:
            return error(exc)
        return None

    first = await register()
    second = await register()
    out: dict[str, Any] = {"worker_id": worker_id, "first": first, "second": second}
    out["stale"] = await refused(first)
    out["unknown"] = await refused("f" * 32)
    out["receipt"] = await client.deregister_worker_registration(
        worker_id, registration_token=second, expected_namespace="default"
    )
    out["replayed"] = await client.deregister_worker_registration(
        worker_id, registration_token=second
    )
    # The unfenced DELETE still works, and answers an unknown worker as already gone.
    third = await register()
    out["third"] = third
    out["unfenced"] = await client.deregister_worker_registration(worker_id)
    out["unfenced_again"] = await client.deregister_worker_registration(f"nobody-{worker_id}")
    out["after_unfenced"] = await refused(third)
    return out


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        if scenario == "shutdown":
            return await shutdown(client)
        if scenario == "stale":
            return await stale(client)
        return await by_hand(client)


if __name__ == "__main__":
    print_result(main, timeout_s=150)
