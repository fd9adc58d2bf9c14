"""The timer loop: fires due durable timers (``start_timer`` and condition timeouts).

Each tick is one short transaction that settles a batch of due timers
(``engine.timers.fire_due``); wakes are published after the commit. Safe on
several nodes at once: due timers and their runs are claimed with
``FOR UPDATE SKIP LOCKED``, so no timer fires twice and no node waits on
another.

Between ticks the loop sleeps until the earliest pending timer is due, at most
``DW_TIMER_POLL_INTERVAL_MS`` (which bounds how late a timer armed on another
node fires), and a timer armed in this process nudges it awake at once.
"""

from __future__ import annotations

import logging

import trio

from dwtrio.background.periodic import RUN_AGAIN_NOW, run_periodically
from dwtrio.engine.timers import fire_due
from dwtrio.matching.dispatch import transaction_with_handoffs
from dwtrio.runtime import Runtime
from dwtrio.task_kinds import SYNC_MATCHED

log = logging.getLogger(__name__)

TIMER_BATCH = 200
#: Shortest sleep between ticks: overdue timers whose run is busy (locked by a
#: completion) are retried at this pace rather than in a tight loop.
MIN_SLEEP_S = 0.01


async def run_timer_loop(
    rt: Runtime, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    interval_s = rt.settings.timer_poll_interval_ms / 1000
    beat = rt.loop_beats.beat("timer", interval_s)

    async def tick() -> float | None:
        # A woken run's workflow task goes to a poll parked here, if one takes it.
        outcome, settled, next_due_s = await transaction_with_handoffs(
            rt, SYNC_MATCHED, fire_due, TIMER_BATCH
        )
        rt.publish_wakes(outcome.wakes)
        beat.handled(settled)
        if settled >= TIMER_BATCH:
            return RUN_AGAIN_NOW  # more are due right away
        if next_due_s is None:
            return None
        return min(interval_s, max(next_due_s, MIN_SLEEP_S))

    await run_periodically(
        "timers",
        tick,
        interval_s=interval_s,
        action="timer",
        log=log,
        sleep=rt.timer_nudge.sleep,
        beat=beat,
        task_status=task_status,
    )
