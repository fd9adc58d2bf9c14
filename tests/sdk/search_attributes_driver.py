"""The search-attribute registry through the official SDK 2.12.0 against a dwtrio URL.

    python search_attributes_driver.py <scenario> <base_url> <token>

Prints one JSON line: what each call returned (the parsed objects' class and
fields) or raised (the SDK exception's class, status, reason, errors), for the
test to assert on. Runs in its own process because the SDK is asyncio-based;
every wait is bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable
from typing import Any

from durable_workflow import Client, Worker, workflow
from durable_workflow.errors import DurableWorkflowError, InvalidArgument, ServerError

from driver_support import print_result, running


@workflow.defn(name="counter")
class Counter:
    """Upserts a value that does not fit ``Count``'s registered int type, then finishes."""

    def run(self, ctx, count):  # type: ignore[no-untyped-def]
        yield ctx.upsert_search_attributes({"Count": count, "Stage": "counted"})
        return count


def parsed(value: Any) -> dict[str, Any]:
    """A returned object as the test sees it: its class and its fields."""
    is_record = dataclasses.is_dataclass(value) and not isinstance(value, type)
    fields = dataclasses.asdict(value) if is_record else value
    return {"class": type(value).__name__, "fields": fields}


def refusal(exc: DurableWorkflowError) -> dict[str, Any]:
    out: dict[str, Any] = {"class": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, ServerError):
        out.update(status=exc.status, reason=exc.reason(), body=exc.body)
    if isinstance(exc, InvalidArgument):
        out["errors"] = exc.errors
    return out


async def outcome(call: Awaitable[Any]) -> dict[str, Any]:
    """What one SDK call did: ``{"ok": parsed}`` or ``{"raised": refusal}``."""
    try:
        return {"ok": parsed(await call)}
    except DurableWorkflowError as exc:
        return {"raised": refusal(exc)}


async def registry(client: Client) -> dict[str, Any]:
    out: dict[str, Any] = {"initial": await outcome(client.list_search_attributes())}
    out["created"] = [
        await outcome(client.create_search_attribute(name, type_))
        for name, type_ in [("Region", "keyword"), ("Count", "int"), ("Tags", "keyword_list")]
    ]
    out["listed"] = await outcome(client.list_search_attributes())
    out["refused"] = {
        "reserved": await outcome(client.create_search_attribute("WorkflowId", "keyword")),
        "exists": await outcome(client.create_search_attribute("Region", "int")),
        "bad_name": await outcome(client.create_search_attribute("bad-name", "keyword")),
        "bad_type": await outcome(client.create_search_attribute("Ok", "string")),
        "delete_system": await outcome(client.delete_search_attribute("Status")),
        "delete_unknown": await outcome(client.delete_search_attribute("Nope")),
    }
    out["deleted"] = await outcome(client.delete_search_attribute("Tags"))
    out["after_delete"] = await outcome(client.list_search_attributes())
    queue = f"q-{uuid.uuid4().hex[:8]}"
    out["bad_start"] = await outcome(
        client.start_workflow(
            workflow_type="counter",
            workflow_id=f"bad-{uuid.uuid4().hex}",
            task_queue=queue,
            input=[1],
            search_attributes={"Count": "three", "Region": "eu"},
        )
    )
    workflow_id = f"good-{uuid.uuid4().hex}"
    await client.start_workflow(
        workflow_type="counter",
        workflow_id=workflow_id,
        task_queue=queue,
        input=[1],
        search_attributes={"Count": 3, "Region": "eu", "Free": {"any": "shape"}},
    )
    out["good_start"] = (await client.describe_workflow(workflow_id)).search_attributes
    return out


async def limit(client: Client) -> dict[str, Any]:
    """Run against a server whose DW_MAX_SEARCH_ATTRIBUTES is 2."""
    return {
        "created": [
            await outcome(client.create_search_attribute(name, "keyword")) for name in ("A", "B")
        ],
        "third": await outcome(client.create_search_attribute("C", "keyword")),
    }


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def bad_upsert(client: Client) -> dict[str, Any]:
    """A worker's upsert of a mistyped value: the SDK sees the refusal and fails the
    task; once the definition is gone the retried task records the upsert."""
    captured = Captured()
    logging.getLogger("durable_workflow.worker").addHandler(captured)
    await client.create_search_attribute("Count", "int")
    queue = f"q-{uuid.uuid4().hex[:8]}"
    workflow_id = f"counter-{uuid.uuid4().hex}"
    handle = await client.start_workflow(
        workflow_type="counter", workflow_id=workflow_id, task_queue=queue, input=["three"]
    )
    worker = Worker(client, task_queue=queue, workflows=[Counter], poll_timeout=5)
    out: dict[str, Any] = {"workflow_id": workflow_id, "run_id": handle.run_id}
    async with running(worker):
        async with asyncio.timeout(30):
            while not any("registered as int" in m for m in captured.messages):
                await asyncio.sleep(0.05)
        out["worker_warnings"] = list(captured.messages)
        refused = await client.describe_workflow(workflow_id)
        out["refused"] = {"status": refused.status, "search_attributes": refused.search_attributes}
        history = await client.get_history(workflow_id, handle.run_id or "")
        out["refused_history"] = [e["event_type"] for e in history["events"]]
        await client.delete_search_attribute("Count")
        out["result"] = await client.get_result(handle, timeout=30.0, poll_interval=0.1)
        out["healed"] = (await client.describe_workflow(workflow_id)).search_attributes
    return out


SCENARIOS = {"registry": registry, "limit": limit, "bad-upsert": bad_upsert}


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        return await SCENARIOS[scenario](client)


if __name__ == "__main__":
    print_result(main, timeout_s=90)
