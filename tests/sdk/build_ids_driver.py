"""Build-id rollouts through the official SDK, against a dwtrio URL.

    python build_ids_driver.py <scenario> <base_url> <token>

Two SDK workers poll one task queue, one of build ``build-a`` and one of build
``build-b``. Each has its own implementation of the workflow ``rollout-who`` and the
activity ``rollout-whoami``, which say which build ran them, so a result tells which
cohort ran the workflow task and which the activity.

Scenarios: ``cohorts`` (list_task_queue_build_ids, drain, promote and resume, with what
the SDK's dataclasses parse) and ``drain`` (a drained cohort takes no new work while the
other keeps working; resumed, it works again). Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.errors import DurableWorkflowError, ServerError

from driver_support import print_result, running

BUILDS = ("build-a", "build-b")
WORKFLOW = "rollout-who"


def _workflow(build: str) -> type:
    @workflow.defn(name=WORKFLOW)
    class Who:
        def run(self, ctx):  # type: ignore[no-untyped-def]
            ran_activity = yield ctx.schedule_activity("rollout-whoami", [])
            return [build, ran_activity]

    return Who


def _activity(build: str) -> Any:
    @activity.defn(name="rollout-whoami")
    def whoami() -> str:
        return build

    return whoami


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
    }


@asynccontextmanager
async def two_builds(client: Client, queue: str) -> AsyncIterator[None]:
    """A worker of each build on ``queue``, until both are listed as active cohorts."""
    async with AsyncExitStack() as stack:
        for build in BUILDS:
            worker = Worker(
                client,
                task_queue=queue,
                workflows=[_workflow(build)],
                activities=[_activity(build)],
                worker_id=f"{build}-{uuid.uuid4().hex[:6]}",
                build_id=build,
                poll_timeout=2,
            )
            await stack.enter_async_context(running(worker))
        for _ in range(100):
            rollout = await client.list_task_queue_build_ids(queue)
            if sorted(c.build_id or "" for c in rollout.build_ids if c.active_worker_count) == [
                *BUILDS
            ]:
                break
            await asyncio.sleep(0.1)
        yield


async def run_one(client: Client, queue: str) -> Any:
    handle = await client.start_workflow(
        workflow_type=WORKFLOW, workflow_id=f"rollout-{uuid.uuid4().hex}", task_queue=queue
    )
    return await client.get_result(handle, timeout=30.0, poll_interval=0.1)


async def cohorts(client: Client) -> dict[str, Any]:
    queue = f"rollout-{uuid.uuid4().hex[:8]}"
    out: dict[str, Any] = {"task_queue": queue}
    async with two_builds(client, queue):
        out["listed"] = parsed(await client.list_task_queue_build_ids(queue))
        out["drained"] = parsed(await client.drain_task_queue_build_id(queue, "build-a"))
        out["drained_again"] = parsed(await client.drain_task_queue_build_id(queue, "build-a"))
        out["after_drain"] = parsed(await client.list_task_queue_build_ids(queue))
        try:
            await client.promote_task_queue_build_id(queue, "build-a")
            out["promote_draining"] = None
        except DurableWorkflowError as exc:
            out["promote_draining"] = error(exc)
        out["promoted"] = parsed(await client.promote_task_queue_build_id(queue, "build-b"))
        handle = await client.start_workflow(
            workflow_type=WORKFLOW, workflow_id=f"pinned-{uuid.uuid4().hex}", task_queue=queue
        )
        out["pinned_result"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        run = await client.describe_workflow_run(handle.workflow_id, handle.run_id)
        out["pinned_compatibility"] = run.compatibility
        out["resumed"] = parsed(await client.resume_task_queue_build_id(queue, "build-a"))
        out["after_resume"] = parsed(await client.list_task_queue_build_ids(queue))
        # The unversioned cohort: nobody runs it; resuming it is a no-op, draining records it.
        out["resume_unversioned"] = parsed(await client.resume_task_queue_build_id(queue, None))
        out["drain_unversioned"] = parsed(await client.drain_task_queue_build_id(queue, None))
        out["promote_other_queue"] = parsed(
            await client.promote_task_queue_build_id(f"{queue}-other", None)
        )
        out["final"] = parsed(await client.list_task_queue_build_ids(queue))
    out["unknown_queue"] = parsed(await client.list_task_queue_build_ids("nobody-polls-this"))
    return out


async def drain(client: Client) -> dict[str, Any]:
    queue = f"rollout-{uuid.uuid4().hex[:8]}"
    out: dict[str, Any] = {"task_queue": queue}
    async with two_builds(client, queue):
        # Both builds take work: run workflows until each has run one (bounded).
        seen: set[str] = set()
        for _ in range(40):
            seen.update(await run_one(client, queue))
            if seen == set(BUILDS):
                break
        out["before"] = sorted(seen)
        await client.drain_task_queue_build_id(queue, "build-a")
        # Drained: every new workflow task and activity goes to build-b.
        out["while_drained"] = [await run_one(client, queue) for _ in range(6)]
        listed = await client.list_task_queue_build_ids(queue)
        out["cohorts_while_drained"] = {
            c.build_id: [c.rollout_status, c.active_worker_count, c.draining_worker_count]
            for c in listed.build_ids
        }
        # Resumed, and build-b drained in its place: build-a works again.
        await client.resume_task_queue_build_id(queue, "build-a")
        await client.drain_task_queue_build_id(queue, "build-b")
        out["after_swap"] = [await run_one(client, queue) for _ in range(3)]
    return out


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        if scenario == "cohorts":
            return await cohorts(client)
        return await drain(client)


if __name__ == "__main__":
    print_result(main, timeout_s=150)
