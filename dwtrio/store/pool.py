"""The asyncpg pool behind the trio-asyncio bridge.

This is the only module (with ``store/errors.py``) that touches asyncio or
asyncpg. Crossing the bridge costs ~0.1 ms of CPU, so every store operation
crosses it exactly once: store functions are written as coroutines that run on
the asyncio side with a connection (``async def op(conn, ...)``), and
:meth:`Store.transaction` / :meth:`Store.read` acquire a connection, run the
whole operation and come back to Trio once.

Connections stay checked out of asyncpg's pool between operations
(:class:`Checkout`): taking a connection from asyncpg's pool and giving it
back costs an ``asyncio.shield`` task and several loop turns, which through
the bridge came to ~0.35 ms per operation, more than a ``SELECT 1``.

Requires a running trio-asyncio loop in an ancestor task (``main.py`` opens it
around everything, tests open it in their server fixture).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import asyncpg
import orjson
import trio
import trio_asyncio

from dwtrio.store.errors import translate

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class Conn(Protocol):
    """What store functions may do with a connection (a subset of asyncpg.Connection)."""

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...
    async def executemany(
        self, command: str, args: Any, *, timeout: float | None = None
    ) -> None: ...
    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...
    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any: ...


Op = Callable[Concatenate[Conn, P], Awaitable[T]]

#: Attempts of a transaction that Postgres aborts for a deadlock or serialization failure.
TRANSACTION_ATTEMPTS = 3


async def _init_connection(conn: asyncpg.Connection) -> None:
    """jsonb columns travel as Python objects, encoded with orjson."""
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


async def _no_reset(conn: Any) -> None:
    """dwtrio keeps no session state, so skip asyncpg's reset round trip on release."""


PooledConn = asyncpg.pool.PoolConnectionProxy


class Checkout:
    """Pooled connections kept checked out between operations (asyncio side).

    asyncpg's pool owns the connections' lifecycle (connecting, ``init``,
    replacing broken ones, closing); this layer only keeps up to ``max_size``
    of them checked out, in a LIFO deque, so that an operation after a clean
    one takes and returns its connection without a loop turn. A connection
    whose operation failed or was cancelled is released to asyncpg's pool,
    which resets or replaces it. When all ``max_size`` are busy, callers queue
    (FIFO) for the next one returned.
    """

    def __init__(self, pool: asyncpg.Pool, max_size: int) -> None:
        self._pool = pool
        self._max = max_size
        self._idle: deque[PooledConn] = deque()
        #: Each gets a connection, or None: a *slot* (take a connection from
        #: asyncpg's pool, which has one free for it).
        self._waiters: deque[asyncio.Future[PooledConn | None]] = deque()
        #: Slots in use: connections taken from asyncpg's pool (idle here or
        #: busy), plus slots handed to a waiter that is about to take one.
        self._out = 0
        self._closed = False
        self._releasing: set[asyncio.Task[None]] = set()

    async def acquire(self) -> PooledConn:
        while self._idle:
            conn = self._idle.pop()
            if _usable(conn):
                return conn
            # The server closed it while idle (asyncpg took it back already):
            # its slot is ours, for a fresh connection from asyncpg's pool.
            await self._pool.release(conn)
            return await self._take_from_pool()
        if self._out < self._max:
            self._out += 1
            return await self._take_from_pool()
        waiter: asyncio.Future[PooledConn | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            handed = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Handed over just as we were cancelled: pass it on.
                given = waiter.result()
                if given is not None:
                    self._pass_on(given)
                else:
                    self._free_slot()
            waiter.cancel()
            raise
        return handed if handed is not None else await self._take_from_pool()

    async def _take_from_pool(self) -> PooledConn:
        """A connection from asyncpg's pool, for a slot already counted in ``_out``."""
        try:
            return await self._pool.acquire()
        except BaseException:
            self._free_slot()
            raise

    def put_back(self, conn: PooledConn) -> None:
        """After a clean operation: the next caller gets it without a loop turn."""
        if self._closed or not _usable(conn) or conn.is_in_transaction():
            task = asyncio.get_running_loop().create_task(self.discard(conn))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
            return
        self._pass_on(conn)

    async def discard(self, conn: PooledConn) -> None:
        """After a failed or cancelled operation: asyncpg's pool resets or replaces it.

        The slot is freed only once asyncpg has the connection back, and goes
        to a caller already waiting if there is one: a newcomer must not take
        it first and leave that caller waiting on an exhausted asyncpg pool.
        """
        try:
            await self._pool.release(conn)
        finally:
            self._free_slot()

    def _pass_on(self, conn: PooledConn) -> None:
        """A connection to the first waiter, or to the idle deque."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _free_slot(self) -> None:
        """A slot to the first waiter (it takes a connection from asyncpg's pool), or free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._out -= 1

    async def close(self) -> None:
        """Give every idle connection back to asyncpg's pool (before closing it);
        connections of operations still running go back when those end."""
        self._closed = True
        while self._idle:
            await self._pool.release(self._idle.pop())
            self._out -= 1
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)


def _usable(conn: PooledConn) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        # asyncpg took the connection back itself when the server closed it
        # (the proxy is detached; releasing it again is a no-op).
        return False


class Store:
    """Runs store operations on pooled connections, one bridge crossing each."""

    def __init__(self, pool: asyncpg.Pool, max_size: int) -> None:
        self._pool = pool
        self._conns = Checkout(pool, max_size)

    async def transaction(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op(conn, ...)`` inside one transaction; commit before returning.

        Raises:
            StoreUnavailableError, RetryableStoreError, AlreadyExistsError: translated
                driver errors; anything else propagates unchanged.
        """
        return await trio_asyncio.aio_as_trio(self._run)(True, op, *args, **kwargs)  # type: ignore[no-any-return]

    async def read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op(conn, ...)`` without an explicit transaction: reads, and use cases
        whose only write is one statement (each statement commits on its own)."""
        return await trio_asyncio.aio_as_trio(self._run)(False, op, *args, **kwargs)  # type: ignore[no-any-return]

    async def _run(
        self, in_transaction: bool, op: Op[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                conn = await self._conns.acquire()
                try:
                    if not in_transaction:
                        result = await op(conn, *args, **kwargs)
                    else:
                        async with conn.transaction():
                            result = await op(conn, *args, **kwargs)
                except BaseException:
                    await asyncio.shield(self._conns.discard(conn))
                    raise
                self._conns.put_back(conn)
                return result
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
                # Two use cases locked the same rows in opposite orders; Postgres
                # rolled one back. Nothing was applied (a whole transaction, or the
                # one writing statement of a ``read`` operation): run it again.
                if attempt == TRANSACTION_ATTEMPTS:
                    raise translate(exc) from exc  # type: ignore[misc]
                log.info("retry %d after %s", attempt, type(exc).__name__)
            except Exception as exc:
                if (mapped := translate(exc)) is not None:
                    raise mapped from exc
                raise
        raise AssertionError("unreachable")

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Close the pool gracefully, or terminate it after ``timeout_s``; runs even when cancelled."""
        with trio.move_on_after(timeout_s, shield=True) as scope:  # cleanup must not be skipped
            await trio_asyncio.aio_as_trio(self._conns.close)()
            await trio_asyncio.aio_as_trio(self._pool.close)()
        if scope.cancelled_caught:
            log.warning("pool did not close within %.1fs; terminating connections", timeout_s)
            self._pool.terminate()


async def _create_pool(dsn: str, min_size: int, max_size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        # Without this every release arms a 300 s asyncio timer that trio-asyncio
        # keeps alive until its deadline: RSS grows by hundreds of MB under load.
        max_inactive_connection_lifetime=0,
        reset=_no_reset,
        init=_init_connection,
        server_settings={"application_name": "dwtrio", "timezone": "UTC"},
    )


@asynccontextmanager
async def open_store(dsn: str, *, min_size: int = 2, max_size: int = 16) -> AsyncIterator[Store]:
    """Open a pool for ``dsn`` (inside a trio-asyncio loop) and close it on exit.

    Raises:
        StoreUnavailableError: the database cannot be reached.
    """
    try:
        pool = await trio_asyncio.aio_as_trio(_create_pool)(dsn, min_size, max_size)
    except Exception as exc:
        if (mapped := translate(exc)) is not None:
            raise mapped from exc
        raise
    store = Store(pool, max_size)
    try:
        yield store
    finally:
        await store.close()


async def connect_once(dsn: str, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``op`` on a fresh single connection (bootstrap, admin work); no pool."""

    async def run() -> T:
        conn = await asyncpg.connect(dsn, server_settings={"application_name": "dwtrio-admin"})
        await _init_connection(conn)
        try:
            return await op(conn, *args, **kwargs)
        finally:
            await conn.close()

    try:
        return await trio_asyncio.aio_as_trio(run)()  # type: ignore[no-any-return]
    except Exception as exc:
        if (mapped := translate(exc)) is not None:
            raise mapped from exc
        raise
