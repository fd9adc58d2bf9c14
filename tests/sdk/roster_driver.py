"""The worker roster and namespace deletion through the official SDK, against a dwtrio URL.

    python roster_driver.py <scenario> <base_url> <token>

Scenarios: ``workers`` (a running SDK worker in ``list_workers`` and
``describe_worker`` with its build id, ``deregister_worker`` of a retired
registration, the roster after the worker stopped) and ``namespaces``
(``delete_namespace`` refused while a run is open, then accepted). Prints one
JSON line with what the SDK parsed; every call is bounded.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from durable_workflow import Client, Worker, workflow
from durable_workflow.errors import DurableWorkflowError, ServerError

from driver_support import print_result, running

BUILD_ID = "build-7"


@workflow.defn(name="roster-echo")
class RosterEcho:
    def run(self, ctx, value):  # type: ignore[no-untyped-def]
        return value
        yield  # a generator, as SDK workflows are


def parsed(obj: Any) -> dict[str, Any]:
    """A parsed SDK dataclass as a dict, without its raw body."""
    out = dataclasses.asdict(obj)
    out.pop("raw", None)
    return out


def error(exc: DurableWorkflowError) -> dict[str, Any]:
    body = exc.body if isinstance(exc, ServerError) else None
    return {
        "type": type(exc).__name__,
        "status": getattr(exc, "status", None),
        "reason": body.get("reason") if isinstance(body, dict) else None,
        "body": body if isinstance(body, dict) else None,
    }


async def workers(client: Client) -> dict[str, Any]:
    queue = f"roster-{uuid.uuid4().hex[:8]}"
    worker_id = f"roster-worker-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[RosterEcho],
        worker_id=worker_id,
        build_id=BUILD_ID,
        poll_timeout=5,
    )
    out: dict[str, Any] = {"worker_id": worker_id, "task_queue": queue}
    async with running(worker):
        handle = await client.start_workflow(
            workflow_type="roster-echo",
            workflow_id=f"roster-{uuid.uuid4().hex}",
            task_queue=queue,
            input=["hi"],
        )
        out["result"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        listed = await client.list_workers()
        out["list"] = {
            "namespace": listed.namespace,
            "stale_after_seconds": listed.stale_after_seconds,
            "workers": [parsed(w) for w in listed.workers],
        }
        by_queue = await client.list_workers(task_queue=queue, status="active")
        out["by_queue"] = [w.worker_id for w in by_queue.workers]
        out["stale"] = [w.worker_id for w in (await client.list_workers(status="stale")).workers]
        out["describe"] = parsed(await client.describe_worker(worker_id))
        # A retired registration (registered, never polling) an operator removes.
        retired = f"retired-{uuid.uuid4().hex[:8]}"
        await client.register_worker(
            worker_id=retired,
            task_queue=queue,
            supported_workflow_types=["roster-echo"],
            capability_manifest={},
        )
        out["retired_id"] = retired
        out["retired_listed"] = [w.worker_id for w in (await client.list_workers()).workers]
        out["deregistered"] = await client.deregister_worker(retired)
        out["after_deregister"] = [
            w.worker_id for w in (await client.list_workers(task_queue=queue)).workers
        ]
        try:
            await client.describe_worker("nobody-at-all")
            out["describe_unknown"] = None
        except DurableWorkflowError as exc:
            out["describe_unknown"] = error(exc)
        try:
            await client.deregister_worker("nobody-at-all")
            out["deregister_unknown"] = None
        except DurableWorkflowError as exc:
            out["deregister_unknown"] = error(exc)
    # The worker deregistered itself on stop: it has left the roster.
    out["after_stop"] = [w.worker_id for w in (await client.list_workers(task_queue=queue)).workers]
    return out


async def namespaces(client: Client, url: str, token: str) -> dict[str, Any]:
    name = f"roster-ns-{uuid.uuid4().hex[:8]}"
    out: dict[str, Any] = {"name": name}
    await client.create_namespace(name, description="to be deleted")
    async with Client(url, token=token, namespace=name) as inside:
        await inside.start_workflow(
            workflow_type="roster-echo", workflow_id=f"{name}-wf", task_queue="nobody-polls"
        )
        try:
            await client.delete_namespace(name)
            out["refused"] = None
        except DurableWorkflowError as exc:
            out["refused"] = error(exc)
        await inside.terminate_workflow(f"{name}-wf", reason="cleanup")
    out["deleted"] = parsed(await client.delete_namespace(name))
    for key, call in [
        ("describe_after", client.describe_namespace(name)),
        ("delete_again", client.delete_namespace(name)),
        ("delete_default", client.delete_namespace("default")),
    ]:
        try:
            await call
            out[key] = None
        except DurableWorkflowError as exc:
            out[key] = error(exc)
    out["listed"] = [n.name for n in (await client.list_namespaces()).namespaces]
    return out


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        if scenario == "workers":
            return await workers(client)
        return await namespaces(client, url, token)


if __name__ == "__main__":
    print_result(main, timeout_s=120)
