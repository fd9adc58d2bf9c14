"""Runs real workflows with the official SDK against a dwtrio URL; prints a JSON result.

    python workflows_driver.py <scenario> <base_url> <token>

Runs in its own process: the SDK is asyncio-based, while the test process runs
Trio (which changes asyncio process-wide). Every scenario is
bounded by timeouts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.errors import (
    ActivityFailed,
    NonRetryableError,
    WorkflowAlreadyStarted,
    WorkflowFailed,
)

from driver_support import print_result


# --- activities -----------------------------------------------------------------------
@activity.defn(name="greet")
def greet(name: str) -> str:
    return f"hello, {name}"


@activity.defn(name="double")
def double(x: int) -> int:
    return x * 2


@activity.defn(name="add_one")
def add_one(x: int) -> int:
    return x + 1


@activity.defn(name="to_text")
def to_text(x: int) -> str:
    return f"value={x}"


@activity.defn(name="square")
def square(x: int) -> int:
    return x * x


@activity.defn(name="explode")
def explode(reason: str) -> str:
    raise NonRetryableError(f"exploded: {reason}")


@activity.defn(name="flaky_fail")
def flaky_fail(reason: str) -> str:
    raise RuntimeError(f"broken: {reason}")


# --- workflows ------------------------------------------------------------------------
@workflow.defn(name="greeter")
class GreeterWorkflow:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        result = yield ctx.schedule_activity("greet", [name])
        return result


@workflow.defn(name="pipeline")
class PipelineWorkflow:
    def run(self, ctx, x):  # type: ignore[no-untyped-def]
        a = yield ctx.schedule_activity("double", [x])
        b = yield ctx.schedule_activity("add_one", [a])
        c = yield ctx.schedule_activity("to_text", [b])
        return c


@workflow.defn(name="fanout")
class FanoutWorkflow:
    def run(self, ctx, n):  # type: ignore[no-untyped-def]
        first = yield ctx.schedule_activity("add_one", [0])
        squares = yield [ctx.schedule_activity("square", [i]) for i in range(n)]
        return {"first": first, "squares": squares}


@workflow.defn(name="catches-activity-failure")
class CatchesActivityFailure:
    def run(self, ctx, reason):  # type: ignore[no-untyped-def]
        try:
            yield ctx.schedule_activity("explode", [reason])
        except ActivityFailed as exc:
            return {
                "caught": type(exc).__name__,
                "message": str(exc),
                "exception_type": exc.exception_type,
                "non_retryable": exc.non_retryable,
                "activity_type": exc.activity_type,
            }
        return {"caught": None}


@workflow.defn(name="activity-failure-fails-workflow")
class ActivityFailureFailsWorkflow:
    def run(self, ctx, reason):  # type: ignore[no-untyped-def]
        result = yield ctx.schedule_activity("flaky_fail", [reason])
        return result


@workflow.defn(name="raises")
class RaisesWorkflow:
    def run(self, ctx, what):  # type: ignore[no-untyped-def]
        yield ctx.schedule_activity("greet", [what])
        raise ValueError(f"workflow exploded: {what}")


ALL_WORKFLOWS = [
    GreeterWorkflow,
    PipelineWorkflow,
    FanoutWorkflow,
    CatchesActivityFailure,
    ActivityFailureFailsWorkflow,
    RaisesWorkflow,
]
ALL_ACTIVITIES = [greet, double, add_one, to_text, square, explode, flaky_fail]


def _wid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


async def _run_one(
    url: str,
    token: str,
    workflow_type: str,
    args: list[Any],
    queue: str,
    *,
    quickstart: bool = False,
) -> dict[str, Any]:
    """Start one workflow, run a worker until it closes, return its result or error.

    ``quickstart`` drives the worker with ``run_until`` exactly like the SDK
    README; otherwise the worker runs its concurrent pollers (``run``), which is
    how real deployments run and what parallel activities need to overlap.
    """
    async with Client(url, token=token, namespace="default") as client:
        worker = Worker(
            client,
            task_queue=queue,
            workflows=ALL_WORKFLOWS,
            activities=ALL_ACTIVITIES,
            poll_timeout=5,
        )
        workflow_id = _wid(workflow_type)
        started = time.monotonic()
        handle = await client.start_workflow(
            workflow_type=workflow_type, workflow_id=workflow_id, task_queue=queue, input=args
        )
        out: dict[str, Any] = {"workflow_id": workflow_id, "run_id": handle.run_id}
        runner = None
        if quickstart:
            await worker.run_until(workflow_id=workflow_id, timeout=30.0)
        else:
            runner = asyncio.create_task(worker.run())
        try:
            out["result"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        except WorkflowFailed as exc:
            out["error"] = {
                "type": type(exc).__name__,
                "message": str(exc),
                "exception_class": exc.exception_class,
            }
        finally:
            if runner is not None:
                await worker.stop()
                await asyncio.gather(runner, return_exceptions=True)
        out["elapsed_s"] = time.monotonic() - started
        return out


async def scenario_two_workers(url: str, token: str, count: int = 20) -> dict[str, Any]:
    queue = f"shared-{uuid.uuid4().hex[:8]}"
    async with Client(url, token=token, namespace="default") as client:
        workers = [
            Worker(
                client,
                task_queue=queue,
                workflows=ALL_WORKFLOWS,
                activities=ALL_ACTIVITIES,
                poll_timeout=5,
            )
            for _ in range(2)
        ]
        runners = [asyncio.create_task(w.run()) for w in workers]
        try:
            handles = [
                await client.start_workflow(
                    workflow_type="pipeline", workflow_id=_wid("pair"), task_queue=queue, input=[i]
                )
                for i in range(count)
            ]
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(client.get_result(h, timeout=60.0, poll_interval=0.1) for h in handles)
                ),
                timeout=90,
            )
        finally:
            for w in workers:
                await w.stop()
            for r in runners:
                r.cancel()
            await asyncio.gather(*runners, return_exceptions=True)
        return {"results": results, "worker_ids": [w.worker_id for w in workers]}


async def scenario_duplicate(url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        workflow_id = _wid("dup")
        first = await client.start_workflow(
            workflow_type="greeter", workflow_id=workflow_id, task_queue="dup-queue", input=["x"]
        )
        try:
            await client.start_workflow(
                workflow_type="greeter",
                workflow_id=workflow_id,
                task_queue="dup-queue",
                input=["x"],
            )
        except WorkflowAlreadyStarted as exc:
            return {"first_run_id": first.run_id, "raised": type(exc).__name__, "message": str(exc)}
        return {"first_run_id": first.run_id, "raised": None}


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    if scenario == "greeter":
        return await _run_one(url, token, "greeter", ["world"], queue, quickstart=True)
    if scenario == "pipeline":
        return await _run_one(url, token, "pipeline", [5], queue)
    if scenario == "fanout":
        return await _run_one(url, token, "fanout", [5], queue)
    if scenario == "catches-activity-failure":
        return await _run_one(url, token, "catches-activity-failure", ["boom"], queue)
    if scenario == "activity-failure-fails-workflow":
        return await _run_one(url, token, "activity-failure-fails-workflow", ["boom"], queue)
    if scenario == "raises":
        return await _run_one(url, token, "raises", ["now"], queue)
    if scenario == "two-workers":
        return await scenario_two_workers(url, token)
    if scenario == "duplicate":
        return await scenario_duplicate(url, token)
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    print_result(main)
