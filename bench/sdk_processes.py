"""What the official SDK's worker and load processes have in common, wherever they run
(``python -m bench soak``, the reliability drills, the cluster tests).

* :func:`serve`: run SDK workers until SIGTERM (or a time limit), then report whether
  their run loops survived and what the SDK logged at WARNING or above;
* :func:`send_signal`: a signal sent the way a careful application sends it, again under
  the same request id while it fails;
* :func:`start_logged` and :func:`paced`: starts at a steady pace, each in its own task so
  that a slow answer never holds the next one back, each written down as one JSON line
  (what was sent, when, what came back) for the books the caller keeps.

Only processes that run the SDK (asyncio) import this module: never the server, nor
pytest's own process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO

from durable_workflow import Client, Worker

#: A failed signal is sent again under the same request id, this many times at most.
SIGNAL_TRIES = 6


class WarningLog(logging.Handler):
    """What the SDK logs at WARNING or above: a count and the first few messages.

    Records whose exception is one of ``by_design`` (failures the workload makes on
    purpose, such as an activity's first attempt failing) are counted apart."""

    def __init__(self, by_design: tuple[type[BaseException], ...] = ()) -> None:
        super().__init__(logging.WARNING)
        self.by_design_types = by_design
        self.count = 0
        self.by_design = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        if self.by_design_types and isinstance(error, self.by_design_types):
            self.by_design += 1
            return
        self.count += 1
        if len(self.first) < 8:
            self.first.append(record.getMessage()[:300])


async def serve(
    workers: Sequence[Worker],
    max_seconds: float,
    *,
    runners: Sequence[Coroutine[Any, Any, Any]] | None = None,
    stop: asyncio.Event | None = None,
    by_design: tuple[type[BaseException], ...] = (),
) -> dict[str, Any]:
    """Run ``workers`` (each one's ``run()``, or the given ``runners``) until SIGTERM or
    ``max_seconds``, then stop them all and report.

    ``stop`` is set when the process is told to stop, so that a runner still waiting to
    begin (one gated on another signal) can give up. A run loop that ended before the
    stop failed: ``survived`` is False and ``run_error`` says why."""
    logged = WarningLog(by_design)
    logging.getLogger("durable_workflow").addHandler(logged)
    stop = stop or asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(r) for r in (runners or [w.run() for w in workers])]
    stopped = asyncio.create_task(asyncio.wait_for(stop.wait(), max_seconds))
    await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
    survived = not any(t.done() for t in tasks)  # a run loop only ends on its own when it failed
    stop.set()
    for worker in workers:
        await worker.stop()
    results = await asyncio.gather(*tasks, stopped, return_exceptions=True)
    errors = [
        repr(r)
        for r in results[:-1]
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
    ]
    return {
        "worker_id": workers[0].worker_id,
        "worker_ids": [w.worker_id for w in workers],
        "survived": survived,
        "run_error": errors[0] if errors else None,
        "warnings": logged.count,
        "failures_by_design": logged.by_design,
        "first_warnings": logged.first,
    }


async def send_signal(
    client: Client, workflow_id: str, item: str, *, name: str = "add"
) -> dict[str, Any]:
    """What a careful application does: the SDK retries a failed request a few times; if
    it still fails, send the signal again under the same request id (the server answers a
    repeat from its receipt), up to :data:`SIGNAL_TRIES` times a second apart."""
    errors = []
    sent_at = time.time()
    for attempt in range(1, SIGNAL_TRIES + 1):
        try:
            await client.signal_workflow(
                workflow_id, name, args=[item], request_id=f"{workflow_id}-signal"
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


async def start_logged(
    client: Client,
    out: TextIO,
    *,
    workflow_id: str,
    workflow_type: str,
    task_queue: str,
    kind: str,
    name: str,
    signal_item: str | None = None,
) -> None:
    """Start one workflow with ``[name]`` as its input and write what happened as a line
    of ``out``: id, kind, name, when the start was sent and answered, and the error if it
    failed; then, if it started and ``signal_item`` is given, send it that signal
    (:func:`send_signal`) and add the signal's tries and times to the line."""
    line: dict[str, Any] = {
        "workflow_id": workflow_id,
        "kind": kind,
        "name": name,
        "sent_at": time.time(),
    }
    try:
        await client.start_workflow(
            workflow_type=workflow_type,
            workflow_id=workflow_id,
            task_queue=task_queue,
            input=[name],
            duplicate_policy="use-existing",  # a retried start gets the run it created
        )
    except Exception as exc:  # recorded: the caller's books say what became of it
        line["error"] = f"{type(exc).__name__}: {exc}"[:300]
    line["answered_at"] = time.time()
    if signal_item is not None and "error" not in line:
        line["signal"] = signal_item
        line.update(await send_signal(client, workflow_id, signal_item))
    out.write(json.dumps(line) + "\n")
    out.flush()


async def paced(
    count: int, per_second: float, start: Callable[[int], Coroutine[Any, Any, None]]
) -> float:
    """Call ``start(i)`` for ``i`` in ``range(count)``, ``per_second`` a second on a fixed
    schedule, each in its own task; wait for them all. Returns the seconds taken."""
    began = time.monotonic()
    tasks = []
    for i in range(count):
        await asyncio.sleep(max(0.0, began + i / per_second - time.monotonic()))
        tasks.append(asyncio.create_task(start(i)))
    await asyncio.gather(*tasks)
    return time.monotonic() - began
