"""The SDK worker the worker-kill drill kills (``test_drill_worker_kill.py``), and the one
that takes over its work.

    python victim.py <victim|rescuer> <url> <token> <queue> <slow_queue> <max_seconds>
                     <poll_timeout> <runs.jsonl> <slow_runs.jsonl>

One process, two SDK workers: one on the drills' steady ``queue`` with the workload's
workflows and activities (``workload.py``; its activity runs go to ``runs.jsonl`` for
the books), one on ``slow_queue`` with two workflows made to be caught in the middle:

* ``drill-slow-activity`` runs the ``slow-greet`` activity (retry policy of
  ``mix.MAX_ATTEMPTS``), which a *victim* runs for :data:`VICTIM_ACTIVITY_S` seconds;
* ``drill-slow-task``, whose workflow code a *victim* runs for :data:`VICTIM_TASK_S`
  seconds (the SDK replays in a thread, so the worker goes on serving meanwhile).

A *rescuer* runs both at once, and serves the slow queue only once it gets SIGUSR1
(the drill sends it at the kill). Every ``slow-greet`` run is a line of
``slow_runs.jsonl`` (attempt id and number, worker, time), written when it starts.
Prints the same report as ``workload.py worker`` when stopped (SIGTERM or
``max_seconds``); a victim is normally SIGKILLed long before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import threading
import time
from typing import Any, TextIO

from durable_workflow import Client, Worker, activity, workflow
from workload import RETRY, RUNS, Child, Greeter, Parent, Waiter, flaky_greet, greet

from bench.sdk_processes import serve

VICTIM_ACTIVITY_S = 30.0
VICTIM_TASK_S = 30.0
#: Whether this process is the victim (its first argument).
ROLE = {"victim": False}


class SlowRuns:
    """``slow-greet`` runs, one JSON line each, written as each one starts."""

    def __init__(self) -> None:
        self.out: TextIO | None = None
        self.lock = threading.Lock()

    def record(self) -> None:
        info = activity.context().info
        line = {
            "workflow_id": info.workflow_id,
            "attempt_id": info.activity_attempt_id,
            "attempt_number": info.attempt_number,
            "worker_id": info.worker_id,
            "at": time.time(),
        }
        with self.lock:
            assert self.out is not None
            self.out.write(json.dumps(line) + "\n")
            self.out.flush()


SLOW_RUNS = SlowRuns()


def victim() -> bool:
    return ROLE["victim"]


@activity.defn(name="slow-greet")
def slow_greet(name: str) -> str:
    SLOW_RUNS.record()
    if victim():
        time.sleep(VICTIM_ACTIVITY_S)
    return f"slowly, {name}"


@workflow.defn(name="drill-slow-activity")
class SlowActivity:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        greeting = yield ctx.schedule_activity("slow-greet", [name], retry_policy=RETRY)
        return greeting


@workflow.defn(name="drill-slow-task")
class SlowTask:
    def run(self, ctx, name):  # type: ignore[no-untyped-def]
        if victim():
            time.sleep(VICTIM_TASK_S)  # caught here: the workflow task stays leased
        return f"done, {name}"
        yield  # a workflow is a generator


async def run(
    url: str, token: str, queue: str, slow_queue: str, max_seconds: float, poll_timeout: float
) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        workers = [
            Worker(
                client,
                task_queue=queue,
                workflows=[Greeter, Waiter, Child, Parent],
                activities=[greet, flaky_greet],
                poll_timeout=poll_timeout,
            ),
            Worker(
                client,
                task_queue=slow_queue,
                workflows=[SlowActivity, SlowTask],
                activities=[slow_greet],
                poll_timeout=poll_timeout,
            ),
        ]
        # A rescuer serves the slow queue only from SIGUSR1 on, so that it cannot take
        # the work before the victim does.
        go, stop = asyncio.Event(), asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, go.set)
        if victim():
            go.set()

        async def slow_worker() -> None:
            gates = [asyncio.create_task(go.wait()), asyncio.create_task(stop.wait())]
            await asyncio.wait(gates, return_when=asyncio.FIRST_COMPLETED)
            for gate in gates:
                gate.cancel()
            if not stop.is_set():
                await workers[1].run()

        runners = [workers[0].run(), slow_worker()]
        return await serve(workers, max_seconds, runners=runners, stop=stop)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    role, url, token, queue, slow_queue, max_s, poll_s, runs, slow_runs = sys.argv[1:]
    assert role in ("victim", "rescuer"), role
    ROLE["victim"] = role == "victim"
    with open(runs, "a") as out, open(slow_runs, "a") as slow_out:
        RUNS.out, SLOW_RUNS.out = out, slow_out
        coro = run(url, token, queue, slow_queue, float(max_s), float(poll_s))
        result = asyncio.run(asyncio.wait_for(coro, float(max_s) + 60))
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
