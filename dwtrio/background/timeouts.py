"""The timeout loop: every second or so, enforce activity and workflow deadlines.

Each due item is handled in its own short transaction (see
``engine.timeouts``); due rows are claimed ``FOR UPDATE SKIP LOCKED``, so the
loops of several nodes share the work without handling an item twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from dwtrio.background.periodic import run_periodically
from dwtrio.engine.outcome import Outcome
from dwtrio.engine.timeouts import activity_timeout_pass, fire_next_run_timeout
from dwtrio.runtime import Runtime
from dwtrio.store.pool import Conn

log = logging.getLogger(__name__)

#: Most items one pass handles per kind before sleeping (the next pass continues).
TIMEOUT_BATCH = 500


async def _drain(rt: Runtime, op: Callable[[Conn], Awaitable[Outcome | None]]) -> int:
    handled = 0
    while handled < TIMEOUT_BATCH:
        outcome = await rt.store.transaction(op)
        if outcome is None:
            break
        rt.publish_wakes(outcome.wakes)
        handled += 1
    return handled


async def check_once(rt: Runtime) -> int:
    """One pass: run deadlines first (closing a run retires its activities), then activities
    (``engine.timeouts.activity_timeout_pass``, which ``POST /api/system/activity-timeouts/pass``
    runs too)."""
    runs = await _drain(rt, fire_next_run_timeout)
    report = await activity_timeout_pass(
        rt.store, rt.publish_wakes, namespace=None, limit=TIMEOUT_BATCH
    )
    return runs + report.processed


async def run_timeouts_loop(
    rt: Runtime, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    beat = rt.loop_beats.beat("timeouts", rt.settings.timeout_check_interval_s)

    async def tick() -> None:
        handled = await check_once(rt)
        beat.handled(handled)
        if handled:
            log.info("timeouts: %d deadlines enforced", handled, extra={"action": "timeouts"})

    await run_periodically(
        "timeouts",
        tick,
        interval_s=rt.settings.timeout_check_interval_s,
        action="timeouts",
        log=log,
        beat=beat,
        task_status=task_status,
    )
