"""The scheduler loop: fires due schedules and drains buffered fires.

Safe on every node at once. A fire claims its schedule with
``FOR UPDATE SKIP LOCKED`` and does everything in that one transaction: the
workflow start, the history event, the next occurrence. Another scheduler
either skips the locked row or, once it commits, no longer finds it due, so an
occurrence fires once however many nodes run this loop. Each process runs
``DW_SCHEDULER_CONCURRENCY`` transactions at a time, each claiming and firing up
to ``CLAIM_BATCH`` due schedules (one commit for a batch, which is what lets a
herd of schedules due together drain quickly).

Between passes the loop sleeps until the earliest schedule is due (on the
database clock), at most ``DW_SCHEDULER_POLL_INTERVAL_MS``, and at most 1 s
while a schedule holds buffered fires (they start when the running workflow
closes). A schedule changed in this process nudges it awake at once.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from dwtrio.background.periodic import RUN_AGAIN_NOW, run_periodically
from dwtrio.engine import schedules as engine
from dwtrio.errors import RetryableStoreError, StoreUnavailableError
from dwtrio.runtime import Runtime
from dwtrio.store import schedules as store

log = logging.getLogger(__name__)

#: Most fires in one pass before the loop checks the buffers and sleeps (none if more are due).
FIRE_BATCH = 500
#: Due schedules claimed and fired per transaction (one commit for them all).
CLAIM_BATCH = 16
DRAIN_BATCH = 100
#: Longest sleep while buffered fires wait for their running workflow to close.
BUFFER_RECHECK_S = 1.0
MIN_SLEEP_S = 0.01


async def run_scheduler_loop(
    rt: Runtime, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    settings = rt.settings
    if not settings.scheduler_enabled:
        log.info("scheduler: disabled in this process (DW_SCHEDULER_ENABLED=false)")
        task_status.started()
        return
    interval_s = settings.scheduler_poll_interval_ms / 1000
    beat = rt.loop_beats.beat("scheduler", interval_s)

    async def fire_some() -> int:
        """Fire up to CLAIM_BATCH due schedules in one transaction; 0 when none was due."""
        claimed: dict[str, Any] = {}
        try:
            outcome, count = await rt.store.transaction(
                engine.fire_due,
                catchup_window_s=settings.schedule_catchup_window_s,
                limit=CLAIM_BATCH,
                claimed=claimed,
            )
        except (StoreUnavailableError, RetryableStoreError):
            raise
        except Exception as exc:
            schedule_pk = claimed.get("id")
            if schedule_pk is None:
                raise
            log.exception(
                "scheduler: fire of schedule %s failed",
                schedule_pk,
                extra={"action": "schedule_fire_error"},
            )
            # The batch rolled back: mark the broken one, the others fire next pass.
            await rt.store.transaction(engine.record_fire_failure, schedule_pk, repr(exc))
            return 1
        rt.publish_wakes(outcome.wakes)
        beat.handled(count)
        return count

    async def fire_due() -> bool:
        """Fire due schedules, several at a time; False when it stopped at its batch limit."""
        fired = 0
        exhausted = False

        async def worker() -> None:
            nonlocal fired, exhausted
            while not exhausted and fired < FIRE_BATCH:
                count = await fire_some()
                if count == 0:
                    exhausted = True
                    return
                fired += count

        async with trio.open_nursery() as nursery:
            for _ in range(settings.scheduler_concurrency):
                nursery.start_soon(worker)
        return exhausted

    async def tick() -> float | None:
        # One cheap read decides whether there is work: an idle scheduler costs one
        # query per interval.
        outlook = await rt.store.read(store.scheduler_outlook)
        if outlook.has_buffered:
            outcome, _ = await rt.store.transaction(engine.drain_buffered, limit=DRAIN_BATCH)
            rt.publish_wakes(outcome.wakes)
        if outlook.next_due_seconds is not None and outlook.next_due_seconds <= 0:
            if not await fire_due():
                return RUN_AGAIN_NOW
            outlook = await rt.store.read(store.scheduler_outlook)
        delay = interval_s
        if outlook.next_due_seconds is not None:
            delay = min(delay, max(outlook.next_due_seconds, MIN_SLEEP_S))
        if outlook.has_buffered:
            delay = min(delay, BUFFER_RECHECK_S)
        return delay

    await run_periodically(
        "scheduler",
        tick,
        interval_s=interval_s,
        action="scheduler",
        log=log,
        sleep=rt.schedule_nudge.sleep,
        beat=beat,
        task_status=task_status,
    )
