"""SingleFlight: concurrent lookups of one key share one call (runtime.py)."""

from __future__ import annotations

import trio
import trio.testing

from dwtrio.runtime import SingleFlight


async def test_concurrent_lookups_share_one_call(autojump_clock: trio.testing.MockClock) -> None:
    flight: SingleFlight[int] = SingleFlight()
    calls: list[str] = []
    results: list[int] = []

    async def lookup(key: str) -> int:
        calls.append(key)
        await trio.sleep(1)
        return len(calls)

    async def one(key: str) -> None:
        results.append(await flight.do(key, lambda: lookup(key)))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(one, "ns")
        nursery.start_soon(one, "other")
    assert sorted(calls) == ["ns", "other"]
    assert len(results) == 51
    # Later lookups are new calls (nothing is cached by the flight itself).
    assert await flight.do("ns", lambda: lookup("ns")) == 3


async def test_followers_of_a_failed_call_make_their_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flight: SingleFlight[str] = SingleFlight()
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        await trio.sleep(1)
        if attempts == 1:
            raise OSError("database unreachable")
        return "ok"

    outcomes: list[str] = []

    async def one() -> None:
        try:
            outcomes.append(await flight.do("k", flaky))
        except OSError:
            outcomes.append("failed")

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(one)
    assert sorted(outcomes) == ["failed", "ok", "ok"]
    assert attempts == 3


async def test_a_cancelled_leader_does_not_strand_its_followers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flight: SingleFlight[str] = SingleFlight()

    async def slow() -> str:
        await trio.sleep(1)
        return "v"

    got: list[str] = []
    leader_scope = trio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await flight.do("k", slow)

    async def follower() -> None:
        got.append(await flight.do("k", slow))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader)
        await trio.sleep(0.1)  # the leader's call is running
        nursery.start_soon(follower)
        await trio.sleep(0.1)  # the follower waits on the leader
        leader_scope.cancel()
    assert got == ["v"]
