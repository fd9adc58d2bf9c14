"""The store's connection handling against a real Postgres (``store/pool.py``).

Connections stay checked out of asyncpg's pool between operations; these
tests hold that layer to what asyncpg's pool itself guaranteed: never more
than ``max_size`` connections, waiting callers served, failed and cancelled
operations leave no broken or leaked connection behind, a connection the
server closed is replaced, and closing does not hang.
"""

from __future__ import annotations

import asyncpg
import pytest
import trio
import trio_asyncio

from dwtrio.errors import StoreUnavailableError
from dwtrio.store.pool import Conn, Store, connect_once, open_store

MAX = 3


async def backend_pid(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def sleep_then_pid(conn: Conn, seconds: float) -> int:
    await conn.execute(f"SELECT pg_sleep({seconds})")
    return await backend_pid(conn)


async def fail(conn: Conn) -> None:
    await conn.execute("SELECT no_such_column")


async def open_transaction_and_fail(conn: Conn) -> None:
    await conn.execute("SELECT 1")
    raise RuntimeError("boom")


async def with_store(db_dsn: str, body: object) -> None:
    async with trio_asyncio.open_loop(), open_store(db_dsn, min_size=1, max_size=MAX) as store:
        await body(store)  # type: ignore[operator]


async def test_concurrent_operations_share_at_most_max_size_connections(db_dsn: str) -> None:
    async def body(store: Store) -> None:
        pids: list[int] = []

        async def one() -> None:
            pids.append(await store.read(sleep_then_pid, 0.05))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(MAX * 4):
                    nursery.start_soon(one)
        assert len(pids) == MAX * 4
        assert len(set(pids)) <= MAX
        # Sequential operations after that reuse one warm connection.
        again = {await store.read(backend_pid) for _ in range(10)}
        assert len(again) == 1

    await with_store(db_dsn, body)


async def test_failed_and_cancelled_operations_leak_nothing(db_dsn: str) -> None:
    async def body(store: Store) -> None:
        for _ in range(MAX * 2):
            with pytest.raises(asyncpg.UndefinedColumnError):
                await store.transaction(fail)
            with pytest.raises(RuntimeError):
                await store.transaction(open_transaction_and_fail)
            with trio.move_on_after(0.05):
                await store.read(sleep_then_pid, 5)
        # Every slot came back: MAX operations still run side by side.
        pids: list[int] = []

        async def one() -> None:
            pids.append(await store.read(sleep_then_pid, 0.2))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for _ in range(MAX):
                    nursery.start_soon(one)
        assert len(set(pids)) == MAX
        # And none of them is left inside a transaction or a running query.
        busy = await store.read(
            lambda c: c.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dwtrio'"
                " AND state <> 'idle' AND pid <> pg_backend_pid()"
            )
        )
        assert busy == 0

    await with_store(db_dsn, body)


async def test_a_connection_closed_by_the_server_is_replaced(db_dsn: str) -> None:
    async def body(store: Store) -> None:
        pid = await store.read(backend_pid)
        killed = await connect_once(
            db_dsn, lambda c: c.fetchval("SELECT pg_terminate_backend($1)", pid)
        )
        assert killed
        await trio.sleep(0.2)  # the idle connection sees the server hang up
        new_pid = await store.read(backend_pid)
        assert new_pid != pid

    await with_store(db_dsn, body)


async def test_a_connection_killed_mid_operation_is_an_error_then_replaced(db_dsn: str) -> None:
    async def body(store: Store) -> None:
        async def kill_the_other(conn: Conn) -> None:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'SELECT pg_sleep(3%' AND pid <> pg_backend_pid()"
            )

        async def victim() -> None:
            with pytest.raises(StoreUnavailableError):
                await store.read(sleep_then_pid, 3)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(victim)
                await trio.sleep(0.3)
                await store.read(kill_the_other)
        assert await store.read(backend_pid) > 0

    await with_store(db_dsn, body)


async def test_closing_returns_checked_out_connections_at_once(db_dsn: str) -> None:
    with trio.fail_after(4):  # a leaked connection would make close wait its 5 s timeout
        await with_store(db_dsn, lambda store: store.read(backend_pid))


async def test_a_full_pool_with_failures_never_strands_a_caller(db_dsn: str) -> None:
    """Many callers on a small pool, a third of their operations failing: a slot
    freed by a failure goes to a caller already waiting, never to a newcomer that
    would leave the waiter blocked on an exhausted asyncpg pool."""

    async def maybe_fail(conn: Conn, i: int) -> int:
        await conn.execute("SELECT pg_sleep(0.002)")
        if i % 3 == 0:
            raise RuntimeError("boom")
        return i

    async def body(store: Store) -> None:
        done = 0

        async def caller(k: int) -> None:
            nonlocal done
            for i in range(k, k + 30):
                try:
                    await store.read(maybe_fail, i)
                except RuntimeError:
                    pass
                done += 1

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for k in range(20):
                    nursery.start_soon(caller, k)
        assert done == 20 * 30

    await with_store(db_dsn, body)
