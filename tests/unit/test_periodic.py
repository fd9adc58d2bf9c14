"""run_periodically: the loop under task repair, timers and timeouts (background/periodic.py)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from functools import partial

import pytest
import trio
import trio.testing

from dwtrio.background.periodic import RUN_AGAIN_NOW, run_periodically
from dwtrio.errors import RetryableStoreError, StoreUnavailableError
from dwtrio.runtime import Nudge

log = logging.getLogger("dwtrio.test.periodic")

INTERVAL_S = 5.0

#: What a scripted tick does: return this delay, or raise this exception.
Step = float | None | Exception


async def run_ticks(
    steps: Iterable[Step], *, sleep: Callable[[float], Awaitable[None]] = trio.sleep
) -> list[float]:
    """Run the loop through ``steps`` (one per tick), then cancel it; when each tick began."""
    script = list(steps)
    started: list[float] = []
    with trio.CancelScope() as scope:

        async def tick() -> float | None:
            started.append(trio.current_time())
            if not script:
                scope.cancel()
                await trio.sleep_forever()
            step = script.pop(0)
            if isinstance(step, Exception):
                raise step
            return step

        await run_periodically(
            "test loop", tick, interval_s=INTERVAL_S, action="test", log=log, sleep=sleep
        )
    assert scope.cancelled_caught
    return [t - started[0] for t in started]


def actions(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str, bool]]:
    return [
        (r.levelname, r.getMessage(), getattr(r, "action", ""), r.exc_info is not None)
        for r in caplog.records
        if r.name == log.name
    ]


async def test_ticks_run_an_interval_apart_or_when_the_tick_says(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert await run_ticks([None, 2.5, None]) == [0, 5, 7.5, 12.5]


async def test_more_work_runs_the_next_tick_at_once(autojump_clock: trio.testing.MockClock) -> None:
    assert await run_ticks([RUN_AGAIN_NOW, RUN_AGAIN_NOW, None]) == [0, 0, 0, 5]


async def test_store_unavailable_is_a_warning_and_the_next_tick_runs(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    steps: list[Step] = [StoreUnavailableError("db down"), RetryableStoreError("deadlock"), 1.0]
    assert await run_ticks(steps) == [0, 5, 10, 11]
    assert actions(caplog) == [
        ("WARNING", "test loop: store unavailable (db down)", "test_backoff", False),
        ("WARNING", "test loop: store unavailable (deadlock)", "test_backoff", False),
    ]


async def test_any_other_failure_is_logged_with_its_traceback_and_the_next_tick_runs(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    assert await run_ticks([KeyError("bad row"), None]) == [0, 5, 10]
    assert actions(caplog) == [("ERROR", "test loop: tick failed", "test_error", True)]
    (record,) = caplog.records
    assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)


async def test_cancellation_ends_the_loop_in_a_tick_or_in_its_sleep(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        ticks += 1
        await trio.sleep(1)

    loop = partial(run_periodically, "test loop", tick, interval_s=INTERVAL_S, action="t", log=log)
    with trio.move_on_after(0.5) as in_tick:
        await loop()
    with trio.move_on_after(3) as in_sleep:
        await loop()
    assert in_tick.cancelled_caught and in_sleep.cancelled_caught and ticks == 2


async def test_a_nudge_cuts_the_sleep_short(autojump_clock: trio.testing.MockClock) -> None:
    nudge = Nudge()

    async def nudge_later() -> None:
        await trio.sleep(1)
        nudge.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(nudge_later)
        assert await run_ticks([30.0, None], sleep=nudge.sleep) == [0, 1, 6]


async def test_reports_started_to_nursery_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticked = trio.Event()

    async def tick() -> None:
        ticked.set()

    async with trio.open_nursery() as nursery:
        loop = partial(
            run_periodically, "test loop", tick, interval_s=INTERVAL_S, action="t", log=log
        )
        assert await nursery.start(loop) is None
        await ticked.wait()
        nursery.cancel_scope.cancel()
