"""WaiterSet: FIFO parked pollers per queue, one wake per new task, wakes passed on.

Contract: worker-plane.md §5.2 (wake immediately, one poller per task, never
lose a wake); dwtrio/matching/waiters.py.
"""

from __future__ import annotations

from contextlib import ExitStack

import trio
import trio.testing

from dwtrio.matching.waiters import Waiter, WaiterSet, WaiterState, WaiterStatistics

KEY = ("default", "q", "workflow")
OTHER = ("default", "q", "activity")


def park(stack: ExitStack, waiters: WaiterSet, key: tuple[str, str, str], n: int) -> list[Waiter]:
    return [stack.enter_context(waiters.register(key)) for _ in range(n)]


def is_set(ws: list[Waiter]) -> list[bool]:
    return [w.event.is_set() for w in ws]


def test_wakes_go_to_waiters_in_fifo_order() -> None:
    waiters = WaiterSet()
    with ExitStack() as stack:
        ws = park(stack, waiters, KEY, 3)
        assert waiters.waiting(KEY) == 3
        assert waiters.wake(KEY) == 1
        assert is_set(ws) == [True, False, False]
        assert waiters.wake(KEY) == 1
        assert is_set(ws) == [True, True, False]
        assert waiters.wake(KEY) == 1
        assert is_set(ws) == [True, True, True]
        for w in ws:
            w.consumed = True


def test_one_wake_wakes_exactly_one_waiter_of_its_queue_only() -> None:
    waiters = WaiterSet()
    with ExitStack() as stack:
        ws = park(stack, waiters, KEY, 2)
        others = park(stack, waiters, OTHER, 2)
        assert waiters.wake(KEY) == 1
        assert is_set(ws) == [True, False]
        assert is_set(others) == [False, False]
        ws[0].consumed = True


def test_wake_count_wakes_several_and_counts_the_unclaimed() -> None:
    waiters = WaiterSet()
    with ExitStack() as stack:
        ws = park(stack, waiters, KEY, 2)
        assert waiters.wake(KEY, count=3) == 2
        assert is_set(ws) == [True, True]
        for w in ws:
            w.consumed = True
    stats = waiters.statistics()
    assert stats.wakes_sent == 2
    assert stats.wakes_unclaimed == 1


def test_an_already_woken_waiter_is_skipped() -> None:
    waiters = WaiterSet()
    with ExitStack() as stack:
        ws = park(stack, waiters, KEY, 2)
        waiters.wake(KEY)
        waiters.wake(KEY)  # the first is still set: the second waiter gets this one
        assert is_set(ws) == [True, True]
        assert waiters.wake(KEY) == 0  # nobody left unwoken
        for w in ws:
            w.consumed = True


def test_a_woken_waiter_that_leaves_without_consuming_passes_the_wake_on() -> None:
    waiters = WaiterSet()
    with ExitStack() as outer:
        with waiters.register(KEY) as first:
            second = outer.enter_context(waiters.register(KEY))
            third = outer.enter_context(waiters.register(KEY))
            assert waiters.wake(KEY) == 1
            assert first.event.is_set()
            assert not second.event.is_set()
            # `first` leaves (timeout, disconnect) without running a claim.
        assert second.event.is_set()
        assert not third.event.is_set()
        assert waiters.waiting(KEY) == 2
        second.consumed = True


def test_a_consumed_wake_is_not_passed_on() -> None:
    waiters = WaiterSet()
    with ExitStack() as stack:
        head = stack.enter_context(waiters.register(KEY))
        with waiters.register(KEY) as middle:
            last = stack.enter_context(waiters.register(KEY))
            head.event.set()
            head.consumed = True
            waiters.wake(KEY)  # goes to `middle`, the oldest unset waiter
            assert middle.event.is_set()
            middle.consumed = True  # it ran its claim
        assert not last.event.is_set()


def test_only_the_head_rechecks_and_its_departure_nudges_the_next() -> None:
    waiters = WaiterSet()
    with ExitStack() as stack:
        with waiters.register(KEY) as head:
            second = stack.enter_context(waiters.register(KEY))
            assert waiters.is_head(KEY, head)
            assert not waiters.is_head(KEY, second)
        # the head left (it timed out): the next waiter now owns the recheck and looks at once
        assert waiters.is_head(KEY, second)
        assert second.event.is_set()


def test_a_wake_passed_on_with_nobody_left_counts_as_unclaimed() -> None:
    waiters = WaiterSet()
    with waiters.register(KEY):
        waiters.wake(KEY)
    stats = waiters.statistics()
    assert stats.wakes_sent == 1
    assert stats.wakes_unclaimed == 1  # the hand-over found no waiter
    assert stats.queues == 0 and stats.waiters == 0


def test_wake_all_wakes_every_queue_and_passes_nothing_on() -> None:
    waiters = WaiterSet()
    with ExitStack() as stack:
        ws = park(stack, waiters, KEY, 2) + park(stack, waiters, OTHER, 1)
        waiters.wake_all()
        assert is_set(ws) == [True, True, True]
        assert all(w.consumed for w in ws)
    stats = waiters.statistics()
    assert stats.wakes_unclaimed == 0  # leaving after wake_all hands nothing over


def test_statistics_and_empty_queues_are_dropped() -> None:
    waiters = WaiterSet()
    assert waiters.statistics() == WaiterStatistics(
        queues=0, waiters=0, wakes_sent=0, wakes_unclaimed=0
    )
    assert waiters.wake(KEY) == 0  # nobody parked: the wake is unclaimed
    with ExitStack() as stack:
        park(stack, waiters, KEY, 2)
        park(stack, waiters, OTHER, 1)
        stats = waiters.statistics()
        assert (stats.queues, stats.waiters) == (2, 3)
        assert stats.wakes_unclaimed == 1
    stats = waiters.statistics()
    assert (stats.queues, stats.waiters) == (0, 0)
    assert waiters.waiting(KEY) == 0


def test_each_registration_gets_a_fresh_event() -> None:
    waiters = WaiterSet()
    with waiters.register(KEY) as first:
        waiters.wake(KEY)
        first.consumed = True
    with waiters.register(KEY) as again:
        assert not again.event.is_set()


async def test_a_wake_between_register_and_wait_is_not_lost() -> None:
    """The event exists before the claim query runs, so an early wake is kept."""
    waiters = WaiterSet()
    with waiters.register(KEY) as waiter:
        waiters.wake(KEY)  # lands "during the claim query"
        with trio.fail_after(1):
            await waiter.event.wait()
        waiter.consumed = True


async def test_fifo_with_real_tasks_parked_on_events() -> None:
    waiters = WaiterSet()
    order: list[int] = []

    async def poller(i: int, task_status: trio.TaskStatus[None]) -> None:
        with waiters.register(KEY) as waiter:
            task_status.started()
            await waiter.event.wait()
            waiter.consumed = True
            order.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(3):
            await nursery.start(poller, i)
        for _ in range(3):
            waiters.wake(KEY)
            await trio.testing.wait_all_tasks_blocked()
    assert order == [0, 1, 2]


def test_a_queue_is_forgotten_when_its_last_waiter_leaves() -> None:
    """Every query and update waits on a key of its own: none may stay behind."""
    waiters = WaiterSet()
    for i in range(1000):
        key = ("default", f"answer:{i}", "answer")
        with waiters.register(key) as waiter:
            waiters.wake(key)
            waiter.consumed = True
    assert waiters.statistics() == WaiterStatistics(
        queues=0, waiters=0, wakes_sent=1000, wakes_unclaimed=0, idle_queues=0
    )


def test_a_waiter_moves_through_its_states() -> None:
    waiters = WaiterSet()
    with waiters.register(KEY, offer="offer") as waiter:
        assert waiter.state is WaiterState.LOOKING
        assert waiters.reserve(KEY, lambda offer: True) is None  # not parked
        waiter.state = WaiterState.PARKED  # what the poll does while it waits
        assert waiters.reserve(KEY, lambda offer: True) is waiter
        assert waiter.state is WaiterState.RESERVED and not waiter.wakeable
        assert waiters.wake(KEY) == 0  # a reserved poll takes no wakes
        assert waiters.deliver(waiter, "task")
        assert waiter.state is WaiterState.HANDED and waiter.event.is_set()
        assert waiter.take() == "task" and waiter.consumed
        assert waiter.state is WaiterState.LOOKING and waiter.take() is None
    assert waiter.state is WaiterState.GONE
    assert not waiters.deliver(waiter, "late")
