"""The official SDK against a small cluster through its load balancer.

    python lb_driver.py register <url> <token> <queue> <worker_id>
    python lb_driver.py worker   <url> <token> <queue> <max_seconds> <poll_timeout>
    python lb_driver.py load     <url> <token> <queue> <seconds> <per_second> <out.jsonl>

``register`` runs a worker until the roster (read through ``url``) lists it, then stops
it, and prints its roster entry. ``worker`` polls and runs the greeter workflows until
SIGTERM (or ``max_seconds``), then prints whether its run loop survived and what the SDK
logged at WARNING or above. ``load`` starts ``per_second`` workflows a second for
``seconds`` at a steady pace (each start in its own task, so a slow answer does not hold
the next one back): three in four are ``lb-greeter`` (one activity), every fourth is
``lb-waiter`` (a timer, a signal the driver sends after the start, again under the same
request id if it fails, then the activity).
Each start, and each signal, is a line in ``out.jsonl`` with its wall-clock times and
outcome; the test checks the books against the database. Runs in its own process (the
SDK is asyncio).
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

POLL_TIMEOUT_S = 10


@activity.defn(name="greet")
def greet(name: str) -> str:
    return f"hello, {name}"


@workflow.defn(name="lb-greeter")
class Greeter:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        greeting = yield ctx.schedule_activity("greet", [name])
        return greeting


@workflow.defn(name="lb-waiter")
class Waiter:
    def __init__(self) -> None:
        self.items: list[str] = []

    @workflow.signal("add")
    def add(self, item: str) -> None:
        self.items.append(item)

    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        yield ctx.sleep(1)
        ok = yield ctx.wait_condition(lambda: bool(self.items), key="signalled", timeout=60)
        greeting = yield ctx.schedule_activity("greet", [name])
        return {"greeting": greeting, "items": list(self.items), "ok": ok}


def make_worker(
    client: Client, queue: str, worker_id: str | None = None, poll_timeout: float = POLL_TIMEOUT_S
) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[Greeter, Waiter],
        activities=[greet],
        worker_id=worker_id,
        poll_timeout=poll_timeout,
    )


async def register(url: str, token: str, queue: str, worker_id: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        worker = make_worker(client, queue, worker_id)
        runner = asyncio.create_task(worker.run())
        try:
            for _ in range(100):
                listed = await client.list_workers(task_queue=queue)
                found = [w for w in listed.workers if w.worker_id == worker_id]
                if found:
                    return found[0].raw or {}
                await asyncio.sleep(0.1)
            raise AssertionError(f"worker {worker_id} never appeared in the roster")
        finally:
            await worker.stop()
            await asyncio.gather(runner, return_exceptions=True)


async def run_worker(
    url: str, token: str, queue: str, max_seconds: float, poll_timeout: float
) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        return await serve([make_worker(client, queue, poll_timeout=poll_timeout)], max_seconds)


async def load(
    url: str, token: str, queue: str, seconds: float, per_second: float, path: str
) -> dict[str, Any]:
    prefix = f"lb-{uuid.uuid4().hex[:8]}"
    count = int(seconds * per_second)
    async with Client(url, token=token, namespace="default") as client:
        with open(path, "w") as out:

            async def start(i: int) -> None:
                waiter = i % 4 == 3
                await start_logged(
                    client,
                    out,
                    workflow_id=f"{prefix}-{i:05d}",
                    workflow_type="lb-waiter" if waiter else "lb-greeter",
                    task_queue=queue,
                    kind="waiter" if waiter else "greeter",
                    name=f"n{i}",
                    signal_item=f"s{i}" if waiter else None,
                )

            took = await paced(count, per_second, start)
    return {"prefix": prefix, "count": count, "seconds": took}


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    mode, url, token, queue, *rest = sys.argv[1:]
    if mode == "register":
        result = asyncio.run(asyncio.wait_for(register(url, token, queue, rest[0]), 60))
    elif mode == "worker":
        max_s, poll_s = float(rest[0]), float(rest[1])
        coro = run_worker(url, token, queue, max_s, poll_s)
        result = asyncio.run(asyncio.wait_for(coro, max_s + 60))
    elif mode == "load":
        seconds, rate = float(rest[0]), float(rest[1])
        coro = load(url, token, queue, seconds, rate, rest[2])
        result = asyncio.run(asyncio.wait_for(coro, seconds + 120))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
