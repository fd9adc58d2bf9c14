"""The official SDK's side of ``python -m bench soak``: workers and the load, each a process.

    python -m bench.soak_driver worker <url> <queue> <max_seconds>
    python -m bench.soak_driver load   <url,url,...> <queue> <seconds> <per_second> <out.jsonl>

``worker`` runs the soak's workflows and activity until SIGTERM (or ``max_seconds``) and
prints one JSON line: whether its run loop survived and what the SDK logged at WARNING
or above. ``load`` starts ``per_second`` workflows a second for ``seconds`` at a steady
pace, round robin over the URLs (one client each), each start in its own task so a slow
answer never holds the next one back. The mix, by start number ``i``:

* ``soak-greeter`` (one activity), half of the starts;
* ``soak-waiter`` (a 1 s timer, then a wait for the signal the driver sends after the
  start, then the activity), one in four;
* ``soak-parent`` (a ``soak-child`` workflow that runs the activity), one in four.

Every result follows from the workflow's input alone (:func:`expected_output`), so the
soak checks each run against its own arguments before retention deletes it. Each start
is a line in ``out.jsonl``: id, kind, name, send and answer times, and an error if the
start (or its signal) failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from typing import Any

from durable_workflow import Client, Worker, activity, workflow

from bench.sdk_processes import paced, serve, start_logged

#: Worker long-poll timeout (seconds).
POLL_TIMEOUT_S = 10
#: Kinds by ``i % 4``.
KINDS = ("greeter", "waiter", "greeter", "parent")
TYPES = {"greeter": "soak-greeter", "waiter": "soak-waiter", "parent": "soak-parent"}


def signal_item(name: str) -> str:
    return f"s-{name}"


def expected_output(workflow_type: str, name: str) -> Any:
    """What a soak workflow of ``workflow_type`` started with ``[name]`` returns."""
    greeting = f"hello, {name}"
    if workflow_type in ("soak-greeter", "soak-child"):
        return greeting
    if workflow_type == "soak-waiter":
        return {"greeting": greeting, "items": [signal_item(name)], "ok": True}
    if workflow_type == "soak-parent":
        return {"child": greeting}
    raise ValueError(f"not a soak workflow type: {workflow_type}")


@activity.defn(name="greet")
def greet(name: str) -> str:
    return f"hello, {name}"


@workflow.defn(name="soak-greeter")
class Greeter:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        greeting = yield ctx.schedule_activity("greet", [name])
        return greeting


@workflow.defn(name="soak-waiter")
class Waiter:
    def __init__(self) -> None:
        self.items: list[str] = []

    @workflow.signal("add")
    def add(self, item: str) -> None:
        self.items.append(item)

    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        yield ctx.sleep(1)
        ok = yield ctx.wait_condition(lambda: bool(self.items), key="signalled", timeout=120)
        greeting = yield ctx.schedule_activity("greet", [name])
        return {"greeting": greeting, "items": list(self.items), "ok": ok}


@workflow.defn(name="soak-child")
class Child:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        greeting = yield ctx.schedule_activity("greet", [name])
        return greeting


@workflow.defn(name="soak-parent")
class Parent:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        greeting = yield ctx.start_child_workflow("soak-child", [name])
        return {"child": greeting}


async def run_worker(url: str, queue: str, max_seconds: float) -> dict[str, Any]:
    async with Client(url, token="soak", namespace="default") as client:
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[Greeter, Waiter, Child, Parent],
            activities=[greet],
            poll_timeout=POLL_TIMEOUT_S,
        )
        return await serve([worker], max_seconds)


async def load(
    urls: list[str], queue: str, seconds: float, per_second: float, path: str
) -> dict[str, Any]:
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    count = int(seconds * per_second)
    clients = [Client(url, token="soak", namespace="default") for url in urls]
    try:
        with open(path, "w") as out:

            async def start(i: int) -> None:
                kind, name = KINDS[i % len(KINDS)], f"n{i}"
                await start_logged(
                    clients[i % len(clients)],
                    out,
                    workflow_id=f"{prefix}-{i:07d}",
                    workflow_type=TYPES[kind],
                    task_queue=queue,
                    kind=kind,
                    name=name,
                    signal_item=signal_item(name) if kind == "waiter" else None,
                )

            took = await paced(count, per_second, start)
    finally:
        for client in clients:
            await client.aclose()
    return {"prefix": prefix, "count": count, "seconds": took}


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    mode, *rest = sys.argv[1:]
    if mode == "worker":
        url, queue, max_s = rest[0], rest[1], float(rest[2])
        result = asyncio.run(asyncio.wait_for(run_worker(url, queue, max_s), max_s + 60))
    elif mode == "load":
        urls, queue, seconds, rate, path = rest[0].split(","), rest[1], *rest[2:5]
        coro = load(urls, queue, float(seconds), float(rate), path)
        result = asyncio.run(asyncio.wait_for(coro, float(seconds) + 120))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
