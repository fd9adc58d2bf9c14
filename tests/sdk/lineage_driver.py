"""SDK 2.12.0 scenarios for markers, search attributes, continue-as-new and children.

    python lineage_driver.py <scenario> <base_url> <token>

Prints one JSON line. Runs in its own process (the SDK is asyncio; the test
process runs Trio). Every scenario is bounded by timeouts.
"""

from __future__ import annotations

import uuid
from typing import Any

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.errors import ChildWorkflowFailed

from driver_support import print_result, running

#: How often the side-effect function really ran in this worker process.
EFFECT_CALLS: list[str] = []


def _effect() -> str:
    value = uuid.uuid4().hex
    EFFECT_CALLS.append(value)
    return value


@activity.defn(name="echo")
def echo(value: Any) -> Any:
    return value


@workflow.defn(name="markers")
class MarkersWorkflow:
    """A side effect and version markers, then an activity: the next task replays them."""

    def run(self, ctx):  # type: ignore[no-untyped-def]
        token = yield ctx.side_effect(_effect)
        version = yield ctx.get_version("change-1", 1, 2)
        patched = yield ctx.patched("patch-1")
        echoed = yield ctx.schedule_activity("echo", [token])
        again = yield ctx.schedule_activity("echo", [version])
        return {"token": token, "echoed": echoed, "version": again, "patched": patched}


@workflow.defn(name="tagged")
class TaggedWorkflow:
    def run(self, ctx, color):  # type: ignore[no-untyped-def]
        yield ctx.upsert_search_attributes({"Color": color, "Stage": "one"})
        yield ctx.upsert_memo({"owner": "ana", "step": 1})
        yield ctx.schedule_activity("echo", [color])
        yield ctx.upsert_search_attributes({"Stage": None, "Done": True})
        yield ctx.upsert_memo({"step": None})
        return color


@workflow.defn(name="countdown")
class CountdownWorkflow:
    def run(self, ctx, n, seen):  # type: ignore[no-untyped-def]
        seen = [*seen, n]
        if n > 1:
            return ctx.continue_as_new(n - 1, seen)
        last = yield ctx.schedule_activity("echo", [seen])
        return last


@workflow.defn(name="child-double")
class ChildDouble:
    def run(self, ctx, x):  # type: ignore[no-untyped-def]
        y = yield ctx.schedule_activity("echo", [x * 2])
        return y


@workflow.defn(name="child-fails")
class ChildFails:
    def run(self, ctx, why):  # type: ignore[no-untyped-def]
        yield ctx.schedule_activity("echo", [why])
        raise ValueError(f"child refused: {why}")


@workflow.defn(name="parent")
class ParentWorkflow:
    def run(self, ctx, x):  # type: ignore[no-untyped-def]
        doubled = yield ctx.start_child_workflow("child-double", [x])
        try:
            yield ctx.start_child_workflow("child-fails", ["no"])
        except ChildWorkflowFailed as exc:
            caught = {
                "type": type(exc).__name__,
                "message": str(exc),
                "exception_class": exc.exception_class,
                "child_workflow_type": exc.child_workflow_type,
            }
        else:
            caught = None
        return {"doubled": doubled, "caught": caught}


WORKFLOWS = [
    MarkersWorkflow,
    TaggedWorkflow,
    CountdownWorkflow,
    ChildDouble,
    ChildFails,
    ParentWorkflow,
]


async def run_scenario(url: str, token: str, workflow_type: str, args: list[Any]) -> dict[str, Any]:
    """Start one workflow, run a worker until the instance's current run closes."""
    queue = f"lq-{uuid.uuid4().hex[:8]}"
    async with Client(url, token=token, namespace="default") as client:
        worker = Worker(
            client, task_queue=queue, workflows=WORKFLOWS, activities=[echo], poll_timeout=5
        )
        workflow_id = f"{workflow_type}-{uuid.uuid4().hex}"
        handle = await client.start_workflow(
            workflow_type=workflow_type, workflow_id=workflow_id, task_queue=queue, input=args
        )
        async with running(worker):
            # A handle without a run id follows the instance's current run (continue-as-new).
            current = client.get_workflow_handle(workflow_id)
            result = await client.get_result(current, timeout=60.0, poll_interval=0.1)
            described = await client.describe_workflow(workflow_id)
        return {
            "workflow_id": workflow_id,
            "first_run_id": handle.run_id,
            "run_id": described.run_id,
            "result": result,
            "search_attributes": described.search_attributes,
            "memo": described.memo,
            "effect_calls": EFFECT_CALLS,
        }


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    if scenario == "markers":
        return await run_scenario(url, token, "markers", [])
    if scenario == "search-attributes":
        return await run_scenario(url, token, "tagged", ["red"])
    if scenario == "continue-as-new":
        return await run_scenario(url, token, "countdown", [3, []])
    if scenario == "children":
        return await run_scenario(url, token, "parent", [21])
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    print_result(main)
