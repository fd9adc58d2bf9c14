"""The drills' steady SDK workload: worker and load processes of the official SDK 2.12.0.

    python workload.py worker <url> <token> <queue> <max_seconds> <poll_timeout> <runs.jsonl>
    python workload.py load   <url> <token> <queue> <seconds> <per_second> <starts.jsonl>

``worker`` polls ``queue`` and runs the four drill workflows and two activities until
SIGTERM (or ``max_seconds``), then prints one JSON line: whether its run loop survived
and what the SDK logged at WARNING or above. Every activity it runs appends one line to
``runs.jsonl`` *before* it returns (type, workflow, attempt id and number, task, time):
the books compare these real executions with what the server recorded.

``load`` starts ``per_second`` workflows a second for ``seconds`` at a steady pace, each
start in its own task so that a slow answer never holds the next one back. Start ``i``
is, by ``i % 4``: a greeter, a waiter, a greeter, a parent:

* ``drill-greeter``: the ``greet`` activity;
* ``drill-waiter``: a 1 s timer, a wait for the ``add`` signal the load sends after the
  start (again under the same request id if it fails), then ``greet``;
* ``drill-parent``: a ``drill-child`` workflow, whose ``flaky-greet`` activity fails its
  first attempt by design and succeeds on the retry one second later.

Each start is a line of ``starts.jsonl``: id, kind, name, the wall-clock times it was
sent and answered (its latency sample), and the error if it failed; a waiter's line
also has its signal's tries and times. Every result follows from the input alone
(``mix.expected_output``). Both activities allow ``mix.MAX_ATTEMPTS`` attempts.

Runs in its own process (the SDK is asyncio); of the tests it imports only ``mix.py``,
and what every SDK process shares from ``bench/sdk_processes.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
import uuid
from typing import Any, TextIO

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.workflow import ActivityRetryPolicy
from mix import KINDS, MAX_ATTEMPTS, TYPES, signal_item

from bench.sdk_processes import paced, serve, start_logged

RETRY = ActivityRetryPolicy(max_attempts=MAX_ATTEMPTS, backoff_seconds=[1, 1])


class RunLog:
    """The activity executions of this worker process, one JSON line each."""

    def __init__(self) -> None:
        self.out: TextIO | None = None
        self.lock = threading.Lock()  # sync activities run in threads

    def record(self, activity_type: str) -> None:
        info = activity.context().info
        line = {
            "activity_type": activity_type,
            "workflow_id": info.workflow_id,
            "run_id": info.run_id,
            "attempt_id": info.activity_attempt_id,
            "attempt_number": info.attempt_number,
            "task_id": info.task_id,
            "worker_id": info.worker_id,
            "at": time.time(),
        }
        with self.lock:
            assert self.out is not None
            self.out.write(json.dumps(line) + "\n")
            self.out.flush()


RUNS = RunLog()


@activity.defn(name="greet")
def greet(name: str) -> str:
    RUNS.record("greet")
    return f"hello, {name}"


class FailsByDesign(RuntimeError):
    pass


@activity.defn(name="flaky-greet")
def flaky_greet(name: str) -> str:
    RUNS.record("flaky-greet")
    if activity.context().info.attempt_number == 1:
        raise FailsByDesign("the first attempt fails by design")
    return f"hello again, {name}"


@workflow.defn(name="drill-greeter")
class Greeter:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        greeting = yield ctx.schedule_activity("greet", [name], retry_policy=RETRY)
        return greeting


@workflow.defn(name="drill-waiter")
class Waiter:
    def __init__(self) -> None:
        self.items: list[str] = []

    @workflow.signal("add")
    def add(self, item: str) -> None:
        self.items.append(item)

    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        yield ctx.sleep(1)
        ok = yield ctx.wait_condition(lambda: bool(self.items), key="signalled", timeout=120)
        greeting = yield ctx.schedule_activity("greet", [name], retry_policy=RETRY)
        return {"greeting": greeting, "items": list(self.items), "ok": ok}


@workflow.defn(name="drill-child")
class Child:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        greeting = yield ctx.schedule_activity("flaky-greet", [name], retry_policy=RETRY)
        return greeting


@workflow.defn(name="drill-parent")
class Parent:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        greeting = yield ctx.start_child_workflow("drill-child", [name])
        return {"child": greeting}


async def run_worker(
    url: str, token: str, queue: str, max_seconds: float, poll_timeout: float
) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[Greeter, Waiter, Child, Parent],
            activities=[greet, flaky_greet],
            poll_timeout=poll_timeout,
        )
        return await serve([worker], max_seconds, by_design=(FailsByDesign,))


async def load(
    url: str, token: str, queue: str, seconds: float, per_second: float, path: str
) -> dict[str, Any]:
    prefix = f"drill-{uuid.uuid4().hex[:8]}"
    count = int(seconds * per_second)
    async with Client(url, token=token, namespace="default") as client:
        with open(path, "w") as out:

            async def start(i: int) -> None:
                kind, name = KINDS[i % len(KINDS)], f"n{i}"
                await start_logged(
                    client,
                    out,
                    workflow_id=f"{prefix}-{i:05d}",
                    workflow_type=TYPES[kind],
                    task_queue=queue,
                    kind=kind,
                    name=name,
                    signal_item=signal_item(name) if kind == "waiter" else None,
                )

            took = await paced(count, per_second, start)
    return {"prefix": prefix, "count": count, "seconds": took}


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    mode, url, token, queue, *rest = sys.argv[1:]
    if mode == "worker":
        max_s, poll_s = float(rest[0]), float(rest[1])
        with open(rest[2], "a") as runs:
            RUNS.out = runs
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
