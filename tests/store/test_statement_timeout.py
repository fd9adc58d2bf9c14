"""A slow database cannot hold the store without end (DW_DB_STATEMENT_TIMEOUT_SECONDS,
DW_DB_POOL_WAIT_SECONDS), against a real Postgres.

A statement stuck behind a lock another session holds is cancelled by Postgres at the
statement timeout and raises :class:`StoreTimeoutError` (503 backend_unavailable), not
retried, with its connection back in the pool. A caller queued for a connection while
every one is busy gives up after the pool wait. An autocommit operation whose earlier
statement had committed says so (``maybe_applied``), as a lost connection does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from dwtrio.errors import StoreTimeoutError
from dwtrio.store import bridge
from dwtrio.store.pool import Conn, Store, connect_once, open_store

MAX = 2

Body = Callable[[Store], Awaitable[None]]


async def with_store(db_dsn: str, body: Body, *, timeout_s: float, wait_s: float = 10.0) -> None:
    async with (
        bridge.open_loop(),
        open_store(
            db_dsn, min_size=1, max_size=MAX, statement_timeout_s=timeout_s, pool_wait_s=wait_s
        ) as store,
    ):
        await body(store)


async def create_table(db_dsn: str) -> None:
    async with bridge.open_loop():
        await connect_once(
            db_dsn, lambda c: c.execute("CREATE TABLE slow (id int PRIMARY KEY, n int)")
        )
        await connect_once(db_dsn, lambda c: c.execute("INSERT INTO slow VALUES (1, 0)"))


async def hold_row_lock(db_dsn: str, seconds: float) -> None:
    """Another session locks row 1 of ``slow`` for ``seconds`` (outside dwtrio's pool)."""
    statement = f"SELECT pg_sleep({seconds}) FROM (SELECT 1 FROM slow WHERE id = 1 FOR UPDATE) x"
    async with bridge.open_loop():
        await connect_once(db_dsn, lambda c: c.execute(statement))


async def bump(conn: Conn) -> int:
    return int(await conn.fetchval("UPDATE slow SET n = n + 1 WHERE id = 1 RETURNING n"))


async def in_use(store: Store) -> tuple[int, int]:
    stats = store.pool_statistics()
    return stats.in_use, stats.waiting


async def test_a_statement_waiting_on_a_lock_is_cancelled_at_the_statement_timeout(
    db_dsn: str,
) -> None:
    await create_table(db_dsn)

    async def body(store: Store) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold_row_lock, db_dsn, 5)
            await trio.sleep(0.3)
            began = trio.current_time()
            with trio.fail_after(4.5), pytest.raises(StoreTimeoutError) as caught:
                await store.transaction(bump)
            waited = trio.current_time() - began
            assert 0.4 <= waited < 3, waited  # not the lock's 5 s
            err = caught.value
            assert err.reason == "backend_unavailable" and err.http_status == 503
            assert err.fields["cause"] == "statement_timeout"
            assert err.fields["retryable"] is True
            assert "DW_DB_STATEMENT_TIMEOUT_SECONDS" in err.message
            assert not err.maybe_applied
            # Not retried, and the connection is back: other rows go on at once.
            assert await in_use(store) == (0, 0)
            assert await store.read(lambda c: c.fetchval("SELECT 1")) == 1
        # The lock is gone: the same statement goes through, exactly once before.
        assert await store.transaction(bump) == 1

    await with_store(db_dsn, body, timeout_s=0.5)


async def test_an_autocommit_timeout_after_a_committed_statement_is_maybe_applied(
    db_dsn: str,
) -> None:
    await create_table(db_dsn)

    async def commit_then_stall(conn: Conn) -> None:
        await bump(conn)  # commits on its own
        await conn.execute("SELECT pg_sleep(2)")

    async def stall(conn: Conn) -> None:
        await conn.execute("SELECT pg_sleep(2)")

    async def body(store: Store) -> None:
        with trio.fail_after(5):
            with pytest.raises(StoreTimeoutError) as first:
                await store.autocommit(commit_then_stall)
            assert first.value.maybe_applied
            with pytest.raises(StoreTimeoutError) as only:
                await store.autocommit(stall)
            assert not only.value.maybe_applied
        assert await store.read(lambda c: c.fetchval("SELECT n FROM slow")) == 1

    await with_store(db_dsn, body, timeout_s=0.3)


async def test_callers_queued_for_a_busy_pool_give_up_after_the_pool_wait(db_dsn: str) -> None:
    """Both connections wait on the lock; a third caller queues 0.5 s and gets a 503
    error; once the lock is gone the two finish and the pool is idle, not deadlocked."""
    await create_table(db_dsn)
    bumped: list[int] = []

    async def body(store: Store) -> None:
        async def bumper() -> None:
            bumped.append(await store.transaction(bump))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold_row_lock, db_dsn, 2)
            await trio.sleep(0.3)
            for _ in range(MAX):
                nursery.start_soon(bumper)
            await trio.sleep(0.2)
            assert await in_use(store) == (MAX, 0)
            began = trio.current_time()
            with trio.fail_after(3), pytest.raises(StoreTimeoutError) as caught:
                await store.read(lambda c: c.fetchval("SELECT 1"))
            assert trio.current_time() - began >= 0.45
            assert caught.value.fields["cause"] == "pool_wait_timeout"
            assert "DW_DB_POOL_WAIT_SECONDS" in caught.value.message
            assert await in_use(store) == (MAX, 0)  # the one that gave up left the queue
        assert sorted(bumped) == [1, 2]
        assert await in_use(store) == (0, 0)
        assert await store.read(lambda c: c.fetchval("SELECT n FROM slow")) == MAX

    await with_store(db_dsn, body, timeout_s=10, wait_s=0.5)


async def test_a_caller_queued_for_a_connection_gets_the_one_freed_before_its_wait_ends(
    db_dsn: str,
) -> None:
    """The pool wait bounds the wait, it does not shorten it: a connection freed in time
    goes to the queued caller."""
    await create_table(db_dsn)

    async def body(store: Store) -> None:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for _ in range(MAX):
                    nursery.start_soon(store.read, lambda c: c.execute("SELECT pg_sleep(0.3)"))
                await trio.sleep(0.1)
                assert await store.read(lambda c: c.fetchval("SELECT 7")) == 7
        assert await in_use(store) == (0, 0)

    await with_store(db_dsn, body, timeout_s=5, wait_s=1.0)
