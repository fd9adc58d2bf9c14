"""wait_for_answer: a parked control-plane caller (matching/answers.py)."""

from __future__ import annotations

import trio
import trio.testing

from dwtrio.matching.answers import wait_for_answer
from dwtrio.matching.waiters import WaiterSet

KEY = ("default", "answer:q1", "answer")


async def test_an_answer_wakes_the_caller_at_once(autojump_clock: trio.testing.MockClock) -> None:
    waiters, answers = WaiterSet(), []

    async def check() -> str | None:
        return answers[0] if answers else None

    async def answer_later() -> None:
        await trio.sleep(2)
        answers.append("42")
        waiters.wake(KEY)

    start = trio.current_time()
    with waiters.register(KEY) as waiter:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_later)
            got = await wait_for_answer(waiter, check, deadline=start + 60, recheck_s=30)
    assert got == "42" and trio.current_time() - start == 2


async def test_a_draining_server_answers_waiting_callers_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waiters, draining = WaiterSet(), trio.Event()

    async def never() -> str | None:
        return None

    async def drain_later() -> None:
        await trio.sleep(3)
        draining.set()
        waiters.wake_all()  # what Runtime.drain does

    start = trio.current_time()
    with waiters.register(KEY) as waiter:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain_later)
            got = await wait_for_answer(
                waiter, never, deadline=start + 60, recheck_s=30, draining=draining
            )
    assert got is None and trio.current_time() - start == 3
