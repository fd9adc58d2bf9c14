"""The store's connection handling against a real Postgres (``store/pool.py``).

Connections stay checked out of asyncpg's pool between operations; these
tests hold that layer to what asyncpg's pool itself guaranteed: never more
than ``max_size`` connections, waiting callers served, failed and cancelled
operations leave no broken or leaked connection behind, a connection the
server closed is replaced, and closing does not hang.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import trio

from dwtrio.errors import StoreUnavailableError
from dwtrio.store import bridge
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
    async with bridge.open_loop(), open_store(db_dsn, min_size=1, max_size=MAX) as store:
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
                " AND state <> 'idle' AND pid <> pg_backend_pid() AND datname = current_database()"
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


async def kill_sleepers(conn: Conn) -> None:
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE query LIKE 'SELECT pg_sleep(1%' AND pid <> pg_backend_pid()"
        " AND datname = current_database()"
    )


async def test_a_read_whose_connection_is_killed_runs_again_on_a_new_one(db_dsn: str) -> None:
    async def body(store: Store) -> None:
        pids: list[int] = []

        async def reader() -> None:
            pids.append(await store.read(sleep_then_pid, 1))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.sleep(0.3)
                first = await store.read(
                    lambda c: c.fetchval(
                        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(1%'"
                        " AND datname = current_database()"
                    )
                )
                await store.read(kill_sleepers)
        assert pids and pids[0] != first  # answered by a second connection

    await with_store(db_dsn, body)


async def test_a_write_killed_after_it_was_sent_is_an_error_marked_maybe_applied(
    db_dsn: str,
) -> None:
    """An autocommit statement may have committed before its connection died: it is
    not run again, and the error says its outcome is unknown; the pool goes on."""

    async def body(store: Store) -> None:
        errors: list[StoreUnavailableError] = []

        async def victim() -> None:
            try:
                await store.autocommit(sleep_then_pid, 1)
            except StoreUnavailableError as exc:
                errors.append(exc)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(victim)
                await trio.sleep(0.3)
                await store.read(kill_sleepers)
        assert len(errors) == 1 and errors[0].maybe_applied
        assert errors[0].fields["retryable"] is True
        assert await store.read(backend_pid) > 0

    await with_store(db_dsn, body)


async def test_a_transaction_killed_before_commit_runs_again(db_dsn: str) -> None:
    await _admin_exec(db_dsn, "CREATE TABLE drill (id bigserial PRIMARY KEY)")

    async def insert_then_sleep(conn: Conn) -> None:
        await conn.execute("INSERT INTO drill DEFAULT VALUES")
        await conn.execute("SELECT pg_sleep(1)")

    async def body(store: Store) -> None:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.transaction, insert_then_sleep)
                await trio.sleep(0.3)
                await store.read(kill_sleepers)
        assert await store.read(lambda c: c.fetchval("SELECT count(*) FROM drill")) == 1

    await with_store(db_dsn, body)


async def _admin_exec(dsn: str, statement: str) -> None:
    async with bridge.open_loop():
        await connect_once(dsn, lambda c: c.execute(statement))


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


async def test_backends_terminated_under_load_cost_no_failed_operation(db_dsn: str) -> None:
    """The drill that gave 500s: dwtrio's backends killed again and again while
    callers run transactions, reads and autocommit writes. Reads never fail (they
    run again on fresh connections); a write fails only when the kill hit it after
    it reached the server (marked maybe_applied, a 503 on the wire), never with a
    raw driver error, and nothing is applied twice."""
    await _admin_exec(db_dsn, "CREATE TABLE drill (id bigserial PRIMARY KEY, kind text)")

    async def insert(conn: Conn, kind: str) -> None:
        await conn.execute("INSERT INTO drill (kind) VALUES ($1)", kind)

    async def count(conn: Conn) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM drill"))

    async def body(store: Store) -> None:
        done = {"tx": 0, "auto": 0, "read": 0}
        unknown = {"tx": 0, "auto": 0}
        stop = trio.Event()

        async def write(run: Any, kind: str) -> None:
            try:
                await run(insert, kind)
                done[kind] += 1
            except StoreUnavailableError as exc:
                assert exc.maybe_applied, exc
                unknown[kind] += 1

        async def caller() -> None:
            while not stop.is_set():
                await write(store.transaction, "tx")
                await store.read(count)
                done["read"] += 1
                await write(store.autocommit, "auto")

        async def killer() -> None:
            for _ in range(30):
                await trio.sleep(0.1)
                await connect_once(
                    db_dsn,
                    lambda c: c.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        # Only this test's database: the server may be shared with other runs.
                        " WHERE application_name = 'dwtrio' AND datname = current_database()"
                    ),
                )
            stop.set()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(6):
                    nursery.start_soon(caller)
                nursery.start_soon(killer)
        rows = await store.read(
            lambda c: c.fetch("SELECT kind, count(*) AS n FROM drill GROUP BY kind")
        )
        by_kind = {r["kind"]: r["n"] for r in rows}
        assert done["tx"] > 30 and done["read"] > 30
        for kind in ("tx", "auto"):  # applied once each, or not at all when unknown
            assert done[kind] <= by_kind.get(kind, 0) <= done[kind] + unknown[kind]
        # Only the few writes in flight at a kill end unknown.
        assert unknown["tx"] + unknown["auto"] <= 2 * 30 * 2

    await with_store(db_dsn, body)


async def test_an_autocommit_whose_connection_failed_before_sending_runs_again(
    db_dsn: str,
) -> None:
    """A connection found dead before the operation's first statement went out (the
    server closed it while it sat idle): nothing can have committed, so the operation
    runs again on a fresh connection instead of failing as maybe applied."""
    calls: list[int] = []

    async def dies_first(conn: Conn) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise asyncpg.ConnectionDoesNotExistError("connection was closed")
        return await backend_pid(conn)

    async def body(store: Store) -> None:
        with trio.fail_after(10):
            assert await store.autocommit(dies_first) > 0
        assert len(calls) == 2

    await with_store(db_dsn, body)
