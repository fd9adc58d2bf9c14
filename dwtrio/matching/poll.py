"""Long-poll: register, claim, park until woken or the recheck interval, repeat.

The claim itself is shielded from cancellation: once the database has leased a
task, the poller either returns it or (if the client went away meanwhile)
releases it again, so a task is never stranded on a poller that is gone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import trio

from dwtrio import metrics
from dwtrio.matching.waiters import (
    GONE,
    HANDED,
    LOOKING,
    MAX_CLAIMS_IN_FLIGHT,
    PARKED,
    RESERVED,
    ClientGone,
    QueueKey,
    WaiterSet,
)
from dwtrio.protocol.admission import Blocked, Throttled

T = TypeVar("T")

#: How long past its deadline a reserved poll waits for the task being written for it.
RESERVATION_GRACE_S = 2.0

#: How often a poll whose worker may claim nothing (its build-id cohort drains) looks
#: whether that is still so, waiting outside the queue's line meanwhile.
BLOCKED_RECHECK_S = 2.0


class Client(Protocol):
    """The poll's client, as its transport sees it."""

    async def wait_gone(self) -> None:
        """Return when the client has disconnected."""

    def has_gone(self) -> bool:
        """Whether the client is known to have disconnected, without waiting."""


async def poll_for_task(
    waiters: WaiterSet,
    key: QueueKey,
    claim: Callable[[], Awaitable[T | Throttled | Blocked | None]],
    release: Callable[[T], Awaitable[None]],
    *,
    timeout_s: float,
    recheck_s: float,
    draining: trio.Event,
    typed: bool = False,
    client: Client | None = None,
    offer: object = None,
    claims_at_once: int = MAX_CLAIMS_IN_FLIGHT,
) -> T | None:
    """Return a claimed task, or None when ``timeout_s`` passes (or the server drains).

    ``timeout_s <= 0`` probes once. A poll on a queue known to be empty (see
    ``waiters.py``), or arriving while several claims of the queue run, parks
    without claiming first. ``typed`` says the claim filters by the worker's
    types, so finding nothing proves nothing about the queue.

    The client going away while the poll is parked leases nothing: either
    cancellation from outside, or ``client.wait_gone`` returning (it is
    awaited while parked; the poll then raises ``ClientGone``). A task claimed
    for a client that went away meanwhile (cancellation, or
    ``client.has_gone()``) is released before the poll ends. The deadline
    itself never interrupts a claim: it only bounds the parking.

    With an ``offer`` (what this poll would lease), a request creating a task
    may hand it over while the poll is parked (sync match, ``waiters.py``):
    the poll returns it without claiming, and releases it like a claimed task
    if its client is gone.
    """
    deadline = trio.current_time() + max(timeout_s, 0.0)
    gone = None if client is None else client.wait_gone
    # One function, not a loop calling a helper: every frame is held by every parked poll.
    blocked = False
    while True:
        # An idle queue costs parked pollers nothing: no claim until something changes;
        # nor does a burst of polls while a few claims of the queue are running.
        # Back from waiting outside the line: claim at once, so a worker still blocked
        # does not park in the line again.
        skip_claim = (
            not blocked
            and deadline > trio.current_time()
            and waiters.should_defer(key, recheck_s, claims_at_once)
        )
        #: After a throttled claim: look again this soon even without a wake.
        retry_s: float | None = None
        #: When a wake (or a handoff) last ended this poll's parking: None before any.
        woken_at: float | None = None
        # One place in line for the whole poll: the event is renewed before every claim
        # (so a wake during the claim is never lost) but the poller keeps its position.
        with waiters.register(key, offer) as waiter:
            try:
                while True:
                    task: T | None = waiter.take()  # handed over by the request that created it
                    retry_s = None
                    if task is None and not skip_claim:
                        with waiters.claiming(key) as seq, trio.CancelScope(shield=True):
                            got = await claim()  # shielded: never abandon a committed lease
                        if isinstance(got, Blocked):
                            metrics.claim_result(key[2], "blocked").inc()
                            # The wake that sent it claiming (if one did) is for a poll
                            # that can take the task: pass one on as it leaves the line.
                            waiters.wake(key)
                            break
                        if isinstance(got, Throttled):
                            metrics.claim_result(key[2], "throttled").inc()
                            # Capped, not empty: the queue is not marked, and this poll looks
                            # again when a lease may have ended or the minute turned.
                            retry_s, task = got.retry_after_s, None
                        else:
                            task = got
                            metrics.claim_result(key[2], "empty" if got is None else "found").inc()
                        waiters.record_claim(
                            key,
                            found=task is not None,
                            typed=typed or retry_s is not None,
                            seq=seq,
                            recheck_s=recheck_s,
                        )
                    skip_claim = False
                    if task is not None:
                        # A wake that arrived during the claim is for another task: leaving
                        # with it unconsumed hands it to the next poller (``register``).
                        try:
                            await trio.lowlevel.checkpoint()  # raises if cancelled from outside
                            if client is not None and client.has_gone():
                                raise ClientGone
                        except BaseException:
                            with trio.CancelScope(shield=True):  # put the task back for others
                                await release(task)
                            raise
                        if woken_at is not None:
                            metrics.wake_to_answer(key[2]).observe(trio.current_time() - woken_at)
                        return task
                    if draining.is_set() or trio.current_time() >= deadline:
                        # A wake that arrived during the claim is left unconsumed: passed on.
                        return None
                    # Park (inline, not a helper: every frame is held by every parked poll)
                    # for a wake or a handoff; until the deadline, or the next recheck if the
                    # waiter is the queue's head (``retry_s`` after a throttled claim, else
                    # ``recheck_s``); ``ClientGone`` if the client leaves. Only the head
                    # rechecks on a timer; the others wait for a wake (the head's departure
                    # nudges the next one, so someone always rechecks). After a throttled
                    # claim the head looks again sooner (a lease may end on another node,
                    # or the minute turn, which wakes nobody here).
                    park_until = deadline
                    if waiters.is_head(key, waiter):
                        park_until = min(deadline, trio.current_time() + (retry_s or recheck_s))
                    event = waiter.event
                    if waiter.state is LOOKING:
                        waiter.state = PARKED
                    try:
                        await event.wait(gone, until=park_until)
                    finally:
                        if waiter.state is PARKED:
                            waiter.state = LOOKING
                    if waiter.state is RESERVED and not event.is_set():
                        # A task is being written for this poll: its creator decides (it
                        # delivers, or unreserves and wakes us), even a little past the
                        # deadline. Should it take longer (a slow store), the poll goes on;
                        # a delivery to it is then refused and the creator releases the task.
                        await event.wait(gone, until=deadline + RESERVATION_GRACE_S)
                        if waiter.state is RESERVED:
                            waiter.state = GONE  # given up: refuses the late delivery
                    woken_at = trio.current_time() if waiter.event.is_set() else None
                    if waiter.state is HANDED:
                        continue
                    if draining.is_set():
                        return None
                    if waiters.known_empty(key, recheck_s):
                        # Nothing arrived since the queue was last seen empty (a wake would
                        # have cleared the mark): no claim. At the deadline, nothing to pass on
                        # (a thousand polls ending together are not a thousand empty claims);
                        # before it, this was a nudge to take over the recheck, or a recheck
                        # another claim has just made: park again.
                        if trio.current_time() >= deadline:
                            waiter.consumed = True
                            return None
                        waiter.rearm()
                        skip_claim = True
                        continue
                    waiter.rearm()  # consumed: the claim below looks for what woke it
            except BaseException:
                # Leaving (client gone, cancelled) with a task delivered but not yet taken:
                # it was leased for this poll, so put it back for others.
                handed = waiter.take()
                if handed is not None:
                    with trio.CancelScope(shield=True):
                        await release(handed)
                raise
        # Its worker may claim nothing now (it left the line): wait outside the line
        # (wakes and handoffs go to pollers that can take them), and look again now
        # and then.
        blocked = True
        until = min(deadline, trio.current_time() + BLOCKED_RECHECK_S)
        if await _wait_outside_line(until, draining, client):
            raise ClientGone
        if draining.is_set() or trio.current_time() >= deadline:
            return None


async def _wait_outside_line(until: float, draining: trio.Event, client: Client | None) -> bool:
    """Sleep until ``until`` or the server drains; True if the client left meanwhile."""
    left = False

    async def watch_client(scope: trio.CancelScope) -> None:
        nonlocal left
        assert client is not None
        await client.wait_gone()
        left = True
        scope.cancel()

    with trio.move_on_at(until):
        async with trio.open_nursery() as nursery:
            if client is not None:
                nursery.start_soon(watch_client, nursery.cancel_scope)
            await draining.wait()
            nursery.cancel_scope.cancel()
    return left
