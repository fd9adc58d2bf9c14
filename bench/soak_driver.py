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
import signal
import sys
import time
import uuid
from typing import Any, TextIO

from durable_workflow import Client, Worker, activity, workflow

#: Worker long-poll timeout (seconds).
POLL_TIMEOUT_S = 10
#: A failed signal is sent again under the same request id, this many times at most.
SIGNAL_TRIES = 6
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


class Counting(logging.Handler):
    """What the SDK logs at WARNING or above: a count, and the first few messages."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 8:
            self.first.append(record.getMessage()[:300])


async def run_worker(url: str, queue: str, max_seconds: float) -> dict[str, Any]:
    logged = Counting()
    logging.getLogger("durable_workflow").addHandler(logged)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Client(url, token="soak", namespace="default") as client:
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[Greeter, Waiter, Child, Parent],
            activities=[greet],
            poll_timeout=POLL_TIMEOUT_S,
        )
        runner = asyncio.create_task(worker.run())
        stopped = asyncio.create_task(asyncio.wait_for(stop.wait(), max_seconds))
        await asyncio.wait([runner, stopped], return_when=asyncio.FIRST_COMPLETED)
        survived = not runner.done()  # the run loop only ends on its own when it failed
        await worker.stop()
        results = await asyncio.gather(runner, stopped, return_exceptions=True)
    return {
        "worker_id": worker.worker_id,
        "survived": survived,
        "run_error": repr(results[0]) if isinstance(results[0], BaseException) else None,
        "warnings": logged.count,
        "first_warnings": logged.first,
    }


async def send_signal(client: Client, workflow_id: str, item: str) -> dict[str, Any]:
    """The SDK retries a failed request a few times; if it still fails, the signal goes
    again under the same request id (the server answers a repeat from its receipt)."""
    errors = []
    for attempt in range(1, SIGNAL_TRIES + 1):
        try:
            await client.signal_workflow(
                workflow_id, "add", args=[item], request_id=f"{workflow_id}-signal"
            )
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(1)
            continue
        return {"signal_tries": attempt, "signal_errors": errors}
    return {"signal_tries": SIGNAL_TRIES, "signal_errors": errors, "signal_failed": True}


async def start_one(client: Client, queue: str, i: int, prefix: str, out: TextIO) -> None:
    kind = KINDS[i % len(KINDS)]
    name = f"n{i}"
    line: dict[str, Any] = {
        "workflow_id": f"{prefix}-{i:07d}",
        "kind": kind,
        "name": name,
        "sent_at": time.time(),
    }
    try:
        await client.start_workflow(
            workflow_type=TYPES[kind],
            workflow_id=line["workflow_id"],
            task_queue=queue,
            input=[name],
            duplicate_policy="use-existing",  # a retried start gets the run it created
        )
    except Exception as exc:  # recorded: the soak's books say what became of it
        line["error"] = f"{type(exc).__name__}: {exc}"[:300]
    line["answered_at"] = time.time()
    if kind == "waiter" and "error" not in line:
        line.update(await send_signal(client, line["workflow_id"], signal_item(name)))
    out.write(json.dumps(line) + "\n")
    out.flush()


async def load(
    urls: list[str], queue: str, seconds: float, per_second: float, path: str
) -> dict[str, Any]:
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    count = int(seconds * per_second)
    began = time.monotonic()
    clients = [Client(url, token="soak", namespace="default") for url in urls]
    try:
        with open(path, "w") as out:
            tasks = []
            for i in range(count):
                await asyncio.sleep(max(0.0, began + i / per_second - time.monotonic()))
                client = clients[i % len(clients)]
                tasks.append(asyncio.create_task(start_one(client, queue, i, prefix, out)))
            await asyncio.gather(*tasks)
    finally:
        for client in clients:
            await client.aclose()
    return {"prefix": prefix, "count": count, "seconds": time.monotonic() - began}


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
