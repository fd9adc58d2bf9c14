"""The one loop every periodic background task runs: tick, survive a failed tick, sleep, again.

A tick is one pass of work. What it returns says when the next one runs:
``None`` after the loop's interval, a number after that many seconds, and
:data:`RUN_AGAIN_NOW` (zero) at once, without sleeping (the pass stopped at its
batch limit and more work is waiting).

A tick that fails does not stop the server (the loops run in the supervisor
nursery, where an exception would end it): the store being unavailable or
asking for a retry is a warning, anything else (a bug, one malformed row) is
logged with its traceback; either way the next tick runs after the interval.
Cancellation is never caught.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, NoReturn

import trio

from dwtrio import metrics
from dwtrio.errors import RetryableStoreError, StoreUnavailableError
from dwtrio.runtime import LoopBeat

#: One pass of work; returns the delay before the next pass (None: the interval).
Tick = Callable[[], Awaitable[float | None]]

#: What a tick returns when more work is waiting: the next tick runs at once.
RUN_AGAIN_NOW: Final = 0.0


def _measured(loop: str, tick: Tick) -> Tick:
    """``tick``, feeding the ``dwtrio_background_*`` metrics of ``loop``: each pass's
    time, its failures, and when the last one succeeded."""
    duration = metrics.BACKGROUND_DURATION.labels(loop)
    failures = metrics.BACKGROUND_FAILURES.labels(loop)
    last_pass = metrics.BACKGROUND_LAST_PASS.labels(loop)

    async def measured() -> float | None:
        started = time.perf_counter()
        try:
            delay_s = await tick()
        except Exception:
            failures.inc()
            raise
        finally:
            duration.observe(time.perf_counter() - started)
        last_pass.set(time.time())
        return delay_s

    return measured


async def run_periodically(
    name: str,
    tick: Tick,
    *,
    interval_s: float,
    action: str,
    log: logging.Logger,
    sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    beat: LoopBeat | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Report started, then run ``tick`` forever, ``interval_s`` apart unless it says otherwise.

    Args:
        name: how log lines start (``"<name>: tick failed"``).
        tick: one pass of work; see the module docstring for what it returns.
        interval_s: the sleep after a tick that returns None or fails.
        action: the ``action`` log key's prefix: ``<action>_backoff`` when the
            store is unavailable, ``<action>_error`` when a tick failed otherwise.
        log: the calling loop's logger, so its lines keep their logger name.
        sleep: how to wait between ticks (``Nudge.sleep`` for a loop that can
            be woken early); ``trio.sleep`` by default.
        beat: where the loop reports each tick's start and end, and its next
            tick (``Runtime.loop_beats``; the system health reads it).

    Never returns; cancelling the enclosing scope (the supervisor's shutdown)
    ends it wherever it is, a tick included.
    """
    tick = _measured(action, tick)
    task_status.started()
    while True:
        delay_s: float | None = None
        error: str | None = None
        if beat is not None:
            beat.started()
        try:
            delay_s = await tick()
        except (StoreUnavailableError, RetryableStoreError) as exc:
            error = f"store unavailable: {exc}"
            log.warning(
                "%s: store unavailable (%s)", name, exc, extra={"action": f"{action}_backoff"}
            )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.exception("%s: tick failed", name, extra={"action": f"{action}_error"})
        if beat is not None:
            beat.finished(error, interval_s if delay_s is None else delay_s)
        if delay_s is None:
            await sleep(interval_s)
        elif delay_s > 0:
            await sleep(delay_s)
        else:
            # Again at once, but let other tasks run (and a cancellation in) first.
            await trio.lowlevel.checkpoint()
