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
import signal
import sys
import time
import uuid
from typing import Any, TextIO

from durable_workflow import Client, Worker, activity, workflow

POLL_TIMEOUT_S = 10
SIGNAL_TRIES = 6


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


async def run_worker(
    url: str, token: str, queue: str, max_seconds: float, poll_timeout: float
) -> dict[str, Any]:
    logged = Counting()
    logging.getLogger("durable_workflow").addHandler(logged)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Client(url, token=token, namespace="default") as client:
        worker = make_worker(client, queue, poll_timeout=poll_timeout)
        runner = asyncio.create_task(worker.run())
        with_timeout = asyncio.create_task(asyncio.wait_for(stop.wait(), max_seconds))
        await asyncio.wait([runner, with_timeout], return_when=asyncio.FIRST_COMPLETED)
        survived = not runner.done()  # the run loop only ends on its own when it failed
        await worker.stop()
        results = await asyncio.gather(runner, with_timeout, return_exceptions=True)
    return {
        "worker_id": worker.worker_id,
        "survived": survived,
        "run_error": repr(results[0]) if isinstance(results[0], BaseException) else None,
        "warnings": logged.count,
        "first_warnings": logged.first,
    }


async def send_signal(client: Client, workflow_id: str, item: str) -> dict[str, Any]:
    """What a careful application does: the SDK retries a failed request a few times; if
    it still fails, send the signal again under the same request id (the server answers a
    repeat from its receipt), up to SIGNAL_TRIES times a second apart."""
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
        return {"signal_tries": attempt, "signal_errors": errors, "signalled_at": time.time()}
    return {"signal_tries": SIGNAL_TRIES, "signal_errors": errors, "signal_failed": True}


async def start_one(client: Client, queue: str, i: int, prefix: str, out: TextIO) -> None:
    waiter = i % 4 == 3
    workflow_id = f"{prefix}-{i:05d}"
    line: dict[str, Any] = {
        "workflow_id": workflow_id,
        "kind": "waiter" if waiter else "greeter",
        "name": f"n{i}",
        "sent_at": time.time(),
    }
    try:
        await client.start_workflow(
            workflow_type="lb-waiter" if waiter else "lb-greeter",
            workflow_id=workflow_id,
            task_queue=queue,
            input=[f"n{i}"],
            duplicate_policy="use-existing",  # a retried start gets the run it created
        )
    except Exception as exc:  # recorded: the test checks what happened to it
        line["error"] = f"{type(exc).__name__}: {exc}"[:300]
    line["answered_at"] = time.time()
    if waiter and "error" not in line:
        line["signal"] = f"s{i}"
        line.update(await send_signal(client, workflow_id, f"s{i}"))
    out.write(json.dumps(line) + "\n")
    out.flush()


async def load(
    url: str, token: str, queue: str, seconds: float, per_second: float, path: str
) -> dict[str, Any]:
    prefix = f"lb-{uuid.uuid4().hex[:8]}"
    count = int(seconds * per_second)
    began = time.monotonic()
    async with Client(url, token=token, namespace="default") as client:
        with open(path, "w") as out:
            tasks = []
            for i in range(count):
                await asyncio.sleep(max(0.0, began + i / per_second - time.monotonic()))
                tasks.append(asyncio.create_task(start_one(client, queue, i, prefix, out)))
            await asyncio.gather(*tasks)
    return {"prefix": prefix, "count": count, "seconds": time.monotonic() - began}


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
