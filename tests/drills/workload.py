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

Runs in its own process (the SDK is asyncio); of the tests it imports only ``mix.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import threading
import time
import uuid
from typing import Any, TextIO

from durable_workflow import Client, Worker, activity, workflow
from durable_workflow.workflow import ActivityRetryPolicy
from mix import KINDS, MAX_ATTEMPTS, TYPES, signal_item

POLL_TIMEOUT_S = 10
SIGNAL_TRIES = 6
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


class Counting(logging.Handler):
    """What the SDK logs at WARNING or above: a count, and the first few messages; the
    failures of flaky-greet's first attempts (by design) are counted apart."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.by_design = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, FailsByDesign):
            self.by_design += 1
            return
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
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[Greeter, Waiter, Child, Parent],
            activities=[greet, flaky_greet],
            poll_timeout=poll_timeout,
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
        "failures_by_design": logged.by_design,
        "first_warnings": logged.first,
    }


async def send_signal(client: Client, workflow_id: str, item: str) -> dict[str, Any]:
    """What a careful application does: the SDK retries a failed request a few times; if
    it still fails, send the signal again under the same request id (the server answers
    a repeat from its receipt), up to SIGNAL_TRIES times a second apart."""
    errors = []
    sent_at = time.time()
    for attempt in range(1, SIGNAL_TRIES + 1):
        try:
            await client.signal_workflow(
                workflow_id, "add", args=[item], request_id=f"{workflow_id}-signal"
            )
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(1)
            continue
        return {
            "signal_tries": attempt,
            "signal_errors": errors,
            "signal_sent_at": sent_at,
            "signalled_at": time.time(),
        }
    return {"signal_tries": SIGNAL_TRIES, "signal_errors": errors, "signal_failed": True}


async def start_one(client: Client, queue: str, i: int, prefix: str, out: TextIO) -> None:
    kind = KINDS[i % len(KINDS)]
    name = f"n{i}"
    line: dict[str, Any] = {
        "workflow_id": f"{prefix}-{i:05d}",
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
    except Exception as exc:  # recorded: the books say what became of it
        line["error"] = f"{type(exc).__name__}: {exc}"[:300]
    line["answered_at"] = time.time()
    if kind == "waiter" and "error" not in line:
        line["signal"] = signal_item(name)
        line.update(await send_signal(client, line["workflow_id"], signal_item(name)))
    out.write(json.dumps(line) + "\n")
    out.flush()


async def load(
    url: str, token: str, queue: str, seconds: float, per_second: float, path: str
) -> dict[str, Any]:
    prefix = f"drill-{uuid.uuid4().hex[:8]}"
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
