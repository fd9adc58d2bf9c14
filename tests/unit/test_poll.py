"""poll_for_task with fake claim/release callables on trio's virtual clock.

Contract: worker-plane.md §5.2 (wait up to timeout_seconds, wake at once, never
return empty early, 0 probes, a disconnected poller leases nothing, a lost
wake only delays); dwtrio/matching/poll.py.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from dwtrio.matching.poll import RESERVATION_GRACE_S, poll_for_task
from dwtrio.matching.waiters import (
    MAX_CLAIMS_IN_FLIGHT,
    ClientGone,
    Waiter,
    WaiterSet,
    WaiterState,
    Wakeup,
)

KEY = ("default", "q", "workflow")


@attrs.define
class FakeQueue:
    """A claim that finds a task once ``ready`` is set; records calls and releases."""

    ready: list[str] = attrs.field(factory=list)
    claims: list[float] = attrs.field(factory=list)
    released: list[str] = attrs.field(factory=list)
    claim_delay_s: float = 0.0

    async def claim(self) -> str | None:
        self.claims.append(trio.current_time())
        if self.claim_delay_s:
            await trio.sleep(self.claim_delay_s)
        return self.ready.pop(0) if self.ready else None

    async def release(self, task: str) -> None:
        self.released.append(task)


@attrs.define
class FakeClient:
    """A poll's client that leaves when ``left`` is set."""

    left: trio.Event = attrs.field(factory=trio.Event)

    async def wait_gone(self) -> None:
        await self.left.wait()

    def has_gone(self) -> bool:
        return self.left.is_set()


async def poll(
    queue: FakeQueue,
    waiters: WaiterSet,
    *,
    timeout_s: float,
    recheck_s: float = 1000.0,
    draining: trio.Event | None = None,
    client: FakeClient | None = None,
) -> str | None:
    return await poll_for_task(
        waiters,
        KEY,
        queue.claim,
        queue.release,
        timeout_s=timeout_s,
        recheck_s=recheck_s,
        draining=trio.Event() if draining is None else draining,
        client=client,
    )


async def test_returns_a_ready_task_at_once(autojump_clock: trio.testing.MockClock) -> None:
    queue, waiters = FakeQueue(ready=["t1"]), WaiterSet()
    start = trio.current_time()
    assert await poll(queue, waiters, timeout_s=30) == "t1"
    assert trio.current_time() == start
    assert queue.claims == [start]
    assert queue.released == []
    assert waiters.statistics().waiters == 0


async def test_empty_poll_returns_none_at_the_deadline_not_earlier(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    start = trio.current_time()
    assert await poll(queue, waiters, timeout_s=5) is None
    elapsed = trio.current_time() - start
    assert 5 <= elapsed < 5.001
    # One claim at the start. Nothing woke it and the queue's empty mark is younger
    # than the recheck interval, so no last claim when the deadline ends the parking
    # (test_a_stale_empty_mark_... covers an old mark).
    assert queue.claims == [start]
    assert waiters.statistics().waiters == 0


async def test_rechecks_every_interval_without_wakes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    start = trio.current_time()
    assert await poll(queue, waiters, timeout_s=3, recheck_s=0.5) is None
    offsets = [round(t - start, 6) for t in queue.claims]
    assert offsets == [0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]


async def test_a_lost_wake_only_delays_until_the_next_recheck(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    start = trio.current_time()

    async def insert_silently() -> None:
        await trio.sleep(1.2)
        queue.ready.append("t1")  # no wake published

    async with trio.open_nursery() as nursery:
        nursery.start_soon(insert_silently)
        assert await poll(queue, waiters, timeout_s=30, recheck_s=0.5) == "t1"
    assert trio.current_time() - start == pytest.approx(1.5)


async def test_a_wake_triggers_an_immediate_claim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    start = trio.current_time()

    async def insert_and_wake() -> None:
        await trio.sleep(2.5)
        queue.ready.append("t1")
        assert waiters.wake(KEY) == 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(insert_and_wake)
        assert await poll(queue, waiters, timeout_s=30, recheck_s=1000) == "t1"
    assert trio.current_time() - start == pytest.approx(2.5)
    assert len(queue.claims) == 2


async def test_a_wake_without_a_task_parks_again_until_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Another poller won the race: a spurious wake must not end the poll early."""
    queue, waiters = FakeQueue(), WaiterSet()
    start = trio.current_time()

    async def wake_only() -> None:
        await trio.sleep(1)
        waiters.wake(KEY)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wake_only)
        assert await poll(queue, waiters, timeout_s=4) is None
    assert trio.current_time() - start == pytest.approx(4)
    assert [round(t - start, 6) for t in queue.claims] == [0, 1]


async def test_timeout_zero_probes_once(autojump_clock: trio.testing.MockClock) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    start = trio.current_time()
    assert await poll(queue, waiters, timeout_s=0) is None
    assert trio.current_time() == start
    assert queue.claims == [start]
    queue.ready.append("t1")
    assert await poll(queue, waiters, timeout_s=0) == "t1"


async def test_negative_timeout_probes_once(autojump_clock: trio.testing.MockClock) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    assert await poll(queue, waiters, timeout_s=-5) is None
    assert len(queue.claims) == 1


async def test_a_slow_claim_is_not_cut_by_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The deadline only bounds parking: a claim in flight at the deadline finishes."""
    queue, waiters = FakeQueue(ready=[], claim_delay_s=0.3), WaiterSet()

    async def insert_late() -> None:
        await trio.sleep(0.9)
        queue.ready.append("t1")
        waiters.wake(KEY)  # its claim runs from 0.9 s to 1.2 s, past the deadline

    async with trio.open_nursery() as nursery:
        nursery.start_soon(insert_late)
        assert await poll(queue, waiters, timeout_s=1) == "t1"
    assert queue.released == []


async def test_cancellation_right_after_a_claim_releases_the_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waiters = WaiterSet()
    queue = FakeQueue(ready=["t1"])
    with trio.CancelScope() as scope:

        async def claim() -> str | None:
            scope.cancel()  # the client goes away while the claim query runs
            await trio.sleep(0.1)  # shielded: the claim still commits
            return await queue.claim()

        await poll_for_task(
            waiters,
            KEY,
            claim,
            queue.release,
            timeout_s=30,
            recheck_s=1,
            draining=trio.Event(),
        )
        pytest.fail("the poll must raise Cancelled")
    assert scope.cancelled_caught
    assert queue.released == ["t1"]
    assert waiters.statistics().waiters == 0


async def test_cancellation_while_parked_leases_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    with trio.move_on_after(2) as scope:
        await poll(queue, waiters, timeout_s=30)
    assert scope.cancelled_caught
    queue.ready.append("t1")
    # The gone poller is no longer registered: the wake reaches nobody.
    assert waiters.wake(KEY) == 0
    assert queue.ready == ["t1"]
    assert queue.released == []
    assert len(queue.claims) == 1


async def test_a_client_leaving_while_parked_ends_the_poll_without_a_claim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The client is watched by the parked poll itself (no watcher task): when it
    leaves, the poll raises ClientGone and leaves the queue."""
    queue, waiters, client = FakeQueue(), WaiterSet(), FakeClient()
    async with trio.open_nursery() as nursery:

        async def poller() -> None:
            with pytest.raises(ClientGone):
                await poll(queue, waiters, timeout_s=30, client=client)

        nursery.start_soon(poller)
        await trio.sleep(5)
        assert waiters.waiting(KEY) == 1
        client.left.set()
    assert waiters.waiting(KEY) == 0
    assert trio.current_time() == 5  # left at once, not at the deadline
    queue.ready.append("t1")
    assert waiters.wake(KEY) == 0
    assert queue.ready == ["t1"]
    assert len(queue.claims) == 1  # only the first, before parking


async def test_a_wake_ends_the_watch_for_the_client_and_claims(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters, client = FakeQueue(), WaiterSet(), FakeClient()
    got: list[str | None] = []
    async with trio.open_nursery() as nursery:

        async def poller() -> None:
            got.append(await poll(queue, waiters, timeout_s=30, client=client))

        nursery.start_soon(poller)
        await trio.sleep(3)
        queue.ready.append("t1")
        assert waiters.wake(KEY) == 1
    assert got == ["t1"]
    assert trio.current_time() == 3


async def test_a_task_claimed_for_a_client_that_left_during_the_claim_is_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters, client = FakeQueue(ready=["t1"], claim_delay_s=1.0), WaiterSet(), FakeClient()
    async with trio.open_nursery() as nursery:

        async def poller() -> None:
            with pytest.raises(ClientGone):
                await poll(queue, waiters, timeout_s=30, client=client)

        nursery.start_soon(poller)
        await trio.sleep(0.5)  # the claim is running
        client.left.set()
    assert queue.released == ["t1"]


async def test_wakeup_is_a_one_shot_event() -> None:
    wakeup = Wakeup()
    assert not wakeup.is_set()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wakeup.wait)
        await trio.testing.wait_all_tasks_blocked()
        wakeup.set()
    assert wakeup.is_set()
    with trio.fail_after(1):
        await wakeup.wait()  # already set: returns at once
        await wakeup.wait(trio.sleep_forever)


async def test_a_gone_poller_passes_its_wake_to_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A poller woken while it is being cancelled hands the wake to the next one."""
    queue, waiters = FakeQueue(), WaiterSet()
    got: list[str | None] = []
    first_scope = trio.CancelScope()

    async def first_poller() -> None:
        with first_scope:
            await poll(queue, waiters, timeout_s=30)

    async def second_poller() -> None:
        got.append(await poll(queue, waiters, timeout_s=30))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first_poller)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(second_poller)
        await trio.testing.wait_all_tasks_blocked()
        assert waiters.waiting(KEY) == 2
        first_scope.cancel()  # the first client disconnects ...
        queue.ready.append("t1")
        assert waiters.wake(KEY) == 1  # ... just as its wake arrives
    assert got == ["t1"]
    assert trio.current_time() == start  # no recheck needed
    assert queue.released == []


async def test_draining_returns_none(autojump_clock: trio.testing.MockClock) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    draining = trio.Event()
    draining.set()
    start = trio.current_time()
    assert await poll(queue, waiters, timeout_s=30, draining=draining) is None
    assert trio.current_time() == start
    assert len(queue.claims) == 1


async def test_drain_ends_a_parked_poll(autojump_clock: trio.testing.MockClock) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    draining = trio.Event()
    start = trio.current_time()

    async def drain() -> None:
        await trio.sleep(2)
        draining.set()
        waiters.wake_all()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        assert await poll(queue, waiters, timeout_s=30, draining=draining) is None
    assert trio.current_time() - start == pytest.approx(2)


async def test_a_task_found_while_draining_is_still_returned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(ready=["t1"]), WaiterSet()
    draining = trio.Event()
    draining.set()
    assert await poll(queue, waiters, timeout_s=30, draining=draining) == "t1"


async def test_only_the_oldest_parked_poller_rechecks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A thousand parked polls must not mean a thousand rechecks per interval."""
    head_queue, other_queue, waiters = FakeQueue(), FakeQueue(), WaiterSet()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: poll(head_queue, waiters, timeout_s=10, recheck_s=1))
        await trio.sleep(0.01)
        for _ in range(20):
            nursery.start_soon(lambda: poll(other_queue, waiters, timeout_s=10, recheck_s=1))
    # the head: a first claim, one per second, one at the deadline
    assert len(head_queue.claims) >= 10
    # the others: their first claim, plus whatever nudges handed the recheck on at the end
    assert len(other_queue.claims) <= 20 * 2 + 2


async def test_a_known_empty_queue_is_not_claimed_until_something_changes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    assert await poll(queue, waiters, timeout_s=0) is None  # a probe finds nothing
    assert waiters.known_empty(KEY, 1000)
    claims_before = len(queue.claims)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: poll(queue, waiters, timeout_s=1))  # becomes the head
        await trio.sleep(0.01)
        nursery.start_soon(lambda: poll(queue, waiters, timeout_s=1))  # parks without a claim
        await trio.sleep(0.01)
        assert len(queue.claims) == claims_before
        queue.ready.append("t1")
        waiters.wake(KEY)  # a task arrived: the queue is no longer known empty
        assert not waiters.known_empty(KEY, 1000)
        await trio.sleep(0.01)
        assert not queue.ready  # the woken head took it
        # (the head leaving nudges the other poller, which looks once more and parks)
        assert len(queue.claims) <= claims_before + 2


async def test_a_burst_of_polls_runs_few_claims_and_still_drains_a_backlog(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Polls arriving while MAX_CLAIMS_IN_FLIGHT claims run park; each found task
    wakes one of them, so every task is still handed out at once."""
    tasks = [f"t{i}" for i in range(30)]
    queue, waiters = FakeQueue(ready=list(tasks), claim_delay_s=0.01), WaiterSet()
    in_flight, peak = 0, 0

    async def counted_claim() -> str | None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await queue.claim()
        finally:
            in_flight -= 1

    got: list[str | None] = []
    start = trio.current_time()

    async def one() -> None:
        got.append(
            await poll_for_task(
                waiters,
                KEY,
                counted_claim,
                queue.release,
                timeout_s=60,
                recheck_s=1000,
                draining=trio.Event(),
            )
        )

    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(one)
        await trio.sleep(1)
        assert sorted(t for t in got if t) == sorted(tasks)  # the backlog drained within 1 s
        assert trio.current_time() - start <= 1
        nursery.cancel_scope.cancel()
    assert peak <= MAX_CLAIMS_IN_FLIGHT
    assert len(queue.claims) < 30 + 2 * MAX_CLAIMS_IN_FLIGHT  # not one claim per poll


async def test_parked_polls_ending_together_make_one_last_claim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(lambda: poll(queue, waiters, timeout_s=5, recheck_s=10))
    # One claim found the queue empty and the other 49 polls knew; at the deadline
    # the mark is still fresh, so nobody claims again (nor when each departing
    # head nudges the next).
    assert len(queue.claims) == 1


async def test_a_stale_empty_mark_does_not_stop_short_polls_from_claiming(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A task that becomes ready without a wake (a retry after its backoff) is found
    by short polls once the empty mark is a recheck interval old."""
    queue, waiters = FakeQueue(), WaiterSet()
    assert await poll(queue, waiters, timeout_s=1, recheck_s=1) is None
    queue.ready.append("t1")  # no wake
    assert await poll(queue, waiters, timeout_s=1, recheck_s=1) == "t1"


async def test_a_claim_filtered_by_type_does_not_mark_the_queue_empty(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    await poll_for_task(
        waiters,
        KEY,
        queue.claim,
        queue.release,
        timeout_s=0,
        recheck_s=10,
        draining=trio.Event(),
        typed=True,
    )
    assert not waiters.known_empty(KEY, 10)
    await poll(queue, waiters, timeout_s=0, recheck_s=10)
    assert waiters.known_empty(KEY, 10)


async def test_a_wake_during_an_empty_claim_keeps_the_queue_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(claim_delay_s=0.5), WaiterSet()

    async def wake_midway() -> None:
        await trio.sleep(0.2)
        waiters.wake(KEY)  # the claim already read the queue; its result is stale

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wake_midway)
        assert await poll(queue, waiters, timeout_s=0, recheck_s=10) is None
    assert not waiters.known_empty(KEY, 10)


async def test_a_wake_landing_on_a_poller_that_then_returns_a_task_is_passed_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two tasks arrive back to back: the second wake lands on the first poller while
    its claim runs; it returns the first task and hands the wake to the next poller."""
    queue, waiters = FakeQueue(claim_delay_s=0.1), WaiterSet()
    got: dict[str, tuple[str | None, float]] = {}
    start = trio.current_time()

    async def one(name: str) -> None:
        task = await poll(queue, waiters, timeout_s=30)  # no recheck within the test
        got[name] = (task, trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "a")
        await trio.sleep(1)
        nursery.start_soon(one, "b")
        await trio.sleep(1)
        queue.ready.append("t1")
        waiters.wake(KEY)  # a starts claiming (0.1 s)
        await trio.sleep(0.05)
        queue.ready.append("t2")
        waiters.wake(KEY)  # lands on a's fresh event while a claims
    assert got["a"][0] == "t1"
    assert got["b"][0] == "t2"
    assert got["b"][1] == pytest.approx(2.2)  # at once, not at some recheck


# --- sync match: a task handed over by its creator --------------------------------------
def accepts_all(offer: object) -> bool:
    return True


def reserve(waiters: WaiterSet) -> Waiter:
    """Reserve the oldest parked poll that has an offer; there must be one."""
    waiter = waiters.reserve(KEY, accepts_all)
    assert waiter is not None
    return waiter


async def offered_poll(
    queue: FakeQueue,
    waiters: WaiterSet,
    out: list[str | None],
    *,
    timeout_s: float = 10,
    client: FakeClient | None = None,
    draining: trio.Event | None = None,
) -> None:
    try:
        out.append(
            await poll_for_task(
                waiters,
                KEY,
                queue.claim,
                queue.release,
                timeout_s=timeout_s,
                recheck_s=1000,
                draining=trio.Event() if draining is None else draining,
                client=client,
                offer="offer",
            )
        )
    except ClientGone:
        out.append("gone")


async def park_offered(
    nursery: trio.Nursery, queue: FakeQueue, waiters: WaiterSet, out: list[str | None], **kw: Any
) -> None:
    """Start an offered poll and let it park."""
    nursery.start_soon(functools.partial(offered_poll, queue, waiters, out, **kw))
    await trio.sleep(0.1)


@contextlib.asynccontextmanager
async def reserved_poll(
    **kw: Any,
) -> AsyncIterator[tuple[FakeQueue, WaiterSet, list[str | None], Waiter]]:
    """An offered poll, parked and reserved; the block runs beside it, in its nursery."""
    queue, waiters, got = FakeQueue(), WaiterSet(), []
    async with trio.open_nursery() as nursery:
        await park_offered(nursery, queue, waiters, got, **kw)
        yield queue, waiters, got, reserve(waiters)


async def test_a_delivered_task_is_returned_without_a_claim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters, got = FakeQueue(), WaiterSet(), []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(offered_poll, queue, waiters, got)
        await trio.sleep(1)
        claims = len(queue.claims)
        waiter = waiters.reserve(KEY, accepts_all)
        assert waiter is not None and waiter.offer == "offer"
        assert waiters.reserve(KEY, accepts_all) is None  # one reservation per waiter
        assert waiters.deliver(waiter, "handed")
    assert got == ["handed"]
    assert len(queue.claims) == claims
    assert waiters.statistics().sync_matches == 1
    assert waiters.statistics().wakes_unclaimed == 0  # nothing was passed on


async def test_only_parked_polls_with_an_accepted_offer_are_reserved(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters, got = FakeQueue(claim_delay_s=5), WaiterSet(), []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(offered_poll, queue, waiters, got)
        await trio.sleep(1)
        assert waiters.reserve(KEY, accepts_all) is None  # claiming, not parked
        await trio.sleep(5)
        assert waiters.reserve(KEY, lambda offer: False) is None
        with waiters.register(KEY) as plain:  # a poll without an offer takes no handoffs
            plain.state = WaiterState.PARKED
            waiter = waiters.reserve(KEY, accepts_all)
            assert waiter is not None and waiter is not plain
            waiters.unreserve(waiter)
            await trio.sleep(0.1)  # it looks again, and parks again
            plain.state = WaiterState.LOOKING
        waiter = reserve(waiters)
        waiters.unreserve(waiter)
        nursery.cancel_scope.cancel()


async def test_a_reserved_poll_takes_no_wakes_and_waits_past_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    first: list[str | None] = []
    second: list[str | None] = []
    async with trio.open_nursery() as nursery:
        await park_offered(nursery, queue, waiters, first, timeout_s=2)
        await park_offered(nursery, queue, waiters, second, timeout_s=60)
        waiter = reserve(waiters)
        queue.ready.append("woken-for")
        assert waiters.wake(KEY) == 1  # goes to the other poll
        await trio.sleep(0.1)
        assert second == ["woken-for"]
        await trio.sleep(2.5)  # the reserved poll's deadline passes: it waits for its task
        assert first == []
        assert waiters.deliver(waiter, "handed")
        await trio.sleep(0)
    assert first == ["handed"]


async def test_an_unreserved_poll_past_its_deadline_looks_for_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with reserved_poll(timeout_s=2) as (queue, waiters, got, waiter):
        await trio.sleep(2.5)  # past the deadline, within the grace
        queue.ready.append("t1")  # created by someone else meanwhile
        assert waiters.wake(KEY) == 0  # not taken by the reserved poll
        claims = len(queue.claims)
        waiters.unreserve(waiter)
    assert got == ["t1"]
    assert len(queue.claims) == claims + 1


async def test_a_poll_whose_client_left_refuses_the_delivery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = FakeClient()
    async with reserved_poll(client=client) as (queue, waiters, got, waiter):
        client.left.set()
        await trio.sleep(0.1)
        assert got == ["gone"]
        assert not waiters.deliver(waiter, "handed")  # the creator must release it
    assert queue.released == []
    assert waiters.statistics().sync_matches == 0


async def test_a_delivered_task_for_a_client_gone_meanwhile_is_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = FakeClient()
    async with reserved_poll(client=client) as (queue, waiters, got, waiter):
        assert waiters.deliver(waiter, "handed")
        client.left.set()  # gone before the poller ran again
    assert got == ["gone"]
    assert queue.released == ["handed"]


async def test_a_drain_during_a_reservation_ends_the_poll(
    autojump_clock: trio.testing.MockClock,
) -> None:
    draining = trio.Event()
    async with reserved_poll(draining=draining) as (_queue, waiters, got, waiter):
        draining.set()
        waiters.wake_all()
        await trio.sleep(0.1)
        assert got == [None]
        assert not waiters.deliver(waiter, "handed")


async def test_a_nudged_new_head_does_not_claim_a_known_empty_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    first: list[str | None] = []
    second: list[str | None] = []
    async with trio.open_nursery() as nursery:
        await park_offered(nursery, queue, waiters, first, timeout_s=60)
        assert len(queue.claims) == 1 and waiters.known_empty(KEY, 1000)
        await park_offered(nursery, queue, waiters, second, timeout_s=60)
        waiter = reserve(waiters)
        assert waiters.deliver(waiter, "handed")  # the head leaves with it
        await trio.sleep(0.1)
        assert first == ["handed"]
        # The new head was nudged, but the queue is still known empty: no claim,
        # and it parks again, ready for the next handoff.
        assert len(queue.claims) == 1
        again = reserve(waiters)
        assert waiters.deliver(again, "handed-2")
    assert second == ["handed-2"]


async def test_a_poll_leaving_in_the_tick_of_its_delivery_releases_the_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = FakeClient()
    async with reserved_poll(client=client) as (queue, waiters, got, waiter):
        client.left.set()  # the poller is scheduled to see it ...
        assert waiters.deliver(waiter, "handed")  # ... before it runs, the task arrives
    assert got == ["gone"]
    assert queue.released == ["handed"]


async def test_a_wake_skipped_during_a_reservation_that_created_nothing_is_not_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with reserved_poll(timeout_s=60) as (queue, waiters, got, waiter):
        queue.ready.append("t1")  # another request's task, meanwhile
        assert waiters.wake(KEY) == 0  # nobody wakeable: the reserved poll skipped it
        waiters.unreserve(waiter)  # the reservation's own statement created nothing
        await trio.sleep(0.1)
    assert got == ["t1"]


async def test_a_reservation_that_never_settles_does_not_hold_the_poll(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with reserved_poll(timeout_s=5) as (_queue, waiters, got, waiter):
        start = trio.current_time()
        await trio.sleep(5 + RESERVATION_GRACE_S + 1)
        assert got == [None]
        assert trio.current_time() - start <= 5 + RESERVATION_GRACE_S + 1
        assert not waiters.deliver(waiter, "late")  # its creator must release it


# --- what the set remembers about queues nobody polls ----------------------------------
def stats_of(waiters: WaiterSet) -> tuple[int, int]:
    stats = waiters.statistics()
    return stats.queues, stats.idle_queues


async def test_an_empty_mark_outlives_the_poll_only_until_it_expires(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    assert await poll(queue, waiters, timeout_s=0, recheck_s=1) is None
    assert stats_of(waiters) == (0, 1)  # nobody polls it, but it is known empty for 1 s
    assert waiters.known_empty(KEY, 1)
    await trio.sleep(1)
    other = ("default", "other", "workflow")
    await poll_for_task(
        waiters,
        other,
        queue.claim,
        queue.release,
        timeout_s=0,
        recheck_s=1,
        draining=trio.Event(),
    )
    assert not waiters.known_empty(KEY, 1)
    assert stats_of(waiters) == (0, 1)  # KEY's expired mark is gone; other's is fresh
    waiters.wake(other)  # a wake forgets the mark: nothing left to remember
    assert stats_of(waiters) == (0, 0)


async def test_a_hundred_thousand_queues_polled_once_leave_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue, waiters = FakeQueue(), WaiterSet()
    draining = trio.Event()
    peak = 0
    for i in range(100_000):
        await poll_for_task(
            waiters,
            ("default", f"q{i}", "workflow"),
            queue.claim,
            queue.release,
            timeout_s=0,
            recheck_s=1,
            draining=draining,
        )
        if i % 100 == 99:
            await trio.sleep(0.1)  # 1,000 queues a second, each known empty for 1 s
            peak = max(peak, waiters.statistics().idle_queues)
    assert peak <= 1_100
    await trio.sleep(1)
    # The last marks have expired: they go as the next queue is marked.
    await poll(queue, waiters, timeout_s=0, recheck_s=1)
    assert stats_of(waiters) == (0, 1)


async def test_a_failed_claim_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waiters = WaiterSet()

    async def broken() -> str | None:
        raise RuntimeError("the store went away")

    with pytest.raises(RuntimeError):
        await poll_for_task(
            waiters,
            KEY,
            broken,
            FakeQueue().release,
            timeout_s=30,
            recheck_s=1,
            draining=trio.Event(),
        )
    assert stats_of(waiters) == (0, 0)


async def test_a_delivery_after_the_reservation_was_given_up_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with reserved_poll(timeout_s=5) as (queue, waiters, got, waiter):
        # The creator takes longer than the deadline and the grace: the poll goes on and
        # claims another task (slowly), and only then does the creator deliver.
        queue.ready.append("claimed")
        queue.claim_delay_s = 1.0
        assert waiters.wake(KEY) == 0  # (skips the reserved poll; the queue is not empty)
        await trio.sleep(5 + RESERVATION_GRACE_S + 0.5)
        assert len(queue.claims) == 2  # its first look, and the claim running now
        # Refused: the poll is about to answer with what it claimed, and the handed
        # task would be leased to it with nobody to run it (its creator releases it).
        assert not waiters.deliver(waiter, "late")
    assert got == ["claimed"]
    assert queue.released == []
