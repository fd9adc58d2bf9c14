"""Waiting for an answer: a control-plane caller parked until a worker's reply commits.

Queries and updates with ``wait_for=completed`` wait this way. The caller
registers a waiter on the answer's wake key (``WaiterSet.register``) *before*
the transaction that makes the answer possible, so no wake can be missed; the
worker's answer publishes that key after its commit (the wake bus carries it
to the caller's node). Postgres stays the truth: ``check`` reads it after
every wake and every ``recheck_s``, so a lost wake costs one recheck interval.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from dwtrio.matching.waiters import Waiter

T = TypeVar("T")


async def wait_for_answer(
    waiter: Waiter,
    check: Callable[[], Awaitable[T | None]],
    *,
    deadline: float,
    recheck_s: float,
    draining: trio.Event | None = None,
) -> T | None:
    """``check()``'s first non-None result, or None once ``deadline`` (trio clock)
    passes or the server drains (the caller then answers as for a timeout at once,
    instead of being cut off when the graceful drain ends)."""
    while True:
        found = await check()
        stop = trio.current_time() >= deadline or (draining is not None and draining.is_set())
        if found is not None or stop:
            waiter.consumed = True  # nobody else waits on this key: nothing to pass on
            return found
        await waiter.event.wait(until=min(deadline, trio.current_time() + recheck_s))
        waiter.rearm()  # a wake during the next check sets the fresh event
