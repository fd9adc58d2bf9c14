"""Long-poll: register, claim, park until woken or the recheck interval, repeat.

The claim itself is shielded from cancellation: once the database has leased a
task, the poller either returns it or (if the client went away meanwhile)
releases it again, so a task is never stranded on a poller that is gone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from dwtrio.engine.outcome import QueueKey
from dwtrio.matching.waiters import WaiterSet

T = TypeVar("T")


async def poll_for_task(
    waiters: WaiterSet,
    key: QueueKey,
    claim: Callable[[], Awaitable[T | None]],
    release: Callable[[T], Awaitable[None]],
    *,
    timeout_s: float,
    recheck_s: float,
    draining: trio.Event,
) -> T | None:
    """Return a claimed task, or None when ``timeout_s`` passes (or the server drains).

    ``timeout_s <= 0`` probes once. A poll on a queue known to be empty (its last
    claim found nothing and no wake came since) parks without claiming first. Cancellation from outside (the client went
    away) while parked returns nothing and leases nothing; cancellation right
    after a claim releases the claimed task. The deadline itself never
    interrupts a claim: it only bounds the parking.
    """
    deadline = trio.current_time() + max(timeout_s, 0.0)
    # An idle queue costs parked pollers nothing: no claim until something changes.
    skip_claim = timeout_s > 0 and waiters.known_empty(key)
    # One place in line for the whole poll: the event is renewed before every claim
    # (so a wake during the claim is never lost) but the poller keeps its position.
    with waiters.register(key) as waiter:
        while True:
            task = None
            if not skip_claim:
                with trio.CancelScope(shield=True):  # never abandon a committed lease
                    task = await claim()
                waiters.record_claim(key, found=task is not None)
            skip_claim = False
            waiter.consumed = True
            if task is not None:
                try:
                    await trio.lowlevel.checkpoint()  # raises if the client has gone
                except BaseException:
                    with trio.CancelScope(shield=True):  # put the task back for others
                        await release(task)
                    raise
                return task
            if draining.is_set() or trio.current_time() >= deadline:
                return None
            event = waiter.event
            waiter.consumed = False
            # Only the queue's head rechecks on a timer; the others wait for a wake
            # (the head's departure nudges the next one, so someone always rechecks).
            park_until = deadline
            if waiters.is_head(key, waiter):
                park_until = min(deadline, trio.current_time() + recheck_s)
            with trio.move_on_at(park_until):
                await event.wait()
            waiter.rearm()  # consumed: the claim below looks for what woke it
