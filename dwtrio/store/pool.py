"""The asyncpg pool, on the asyncio loop of ``store/bridge.py``.

This is the only module (with ``store/errors.py``, and ``store/notify.py`` for
the wake bus's own connection) that touches asyncpg. Each crossing of the
bridge wakes a thread, so every store operation crosses it exactly once:
store functions are written as coroutines that run on the asyncio side with a
connection (``async def op(conn, ...)``), and :meth:`Store.transaction` /
:meth:`Store.autocommit` / :meth:`Store.read` acquire a connection, run the
whole operation and come back to Trio once.

When the database goes away (a restart, a terminated backend) an operation
that certainly had no effect runs again on a fresh connection, and its caller
waits out a short outage instead of failing (:class:`Store`).

Connections stay checked out of asyncpg's pool between operations
(:class:`Checkout`): taking a connection from asyncpg's pool and giving it
back costs an ``asyncio.shield`` task and several loop turns (~0.35 ms per
operation under the earlier trio-asyncio bridge, more than a ``SELECT 1``).

Requires the bridge's loop (``bridge.open_loop``; ``main.py`` opens it around
everything, tests open it in their server fixture).
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import asyncpg
import attrs
import orjson
import trio

from dwtrio import metrics
from dwtrio.errors import StoreTimeoutError, StoreUnavailableError
from dwtrio.store import bridge
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

#: Seconds one connection attempt may take.
CONNECT_TIMEOUT_S = 5.0

#: Defaults of DW_DB_STATEMENT_TIMEOUT_SECONDS and DW_DB_POOL_WAIT_SECONDS.
STATEMENT_TIMEOUT_S = 30.0
POOL_WAIT_S = 10.0

#: Attempts of a transaction that Postgres aborts for a deadlock or serialization failure.
TRANSACTION_ATTEMPTS = 3

#: Seconds the cleanup after a failed or cancelled operation (its rollback, asyncpg's
#: reset of the connection) may take; past it the connection is closed at once. A
#: healthy server answers in milliseconds; one that stopped answering (a network
#: partition, a frozen host) would otherwise hold a cancelled operation, and with it
#: the server's shutdown, forever.
CLEANUP_TIMEOUT_S = 2.0


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


@attrs.frozen
class PoolStatistics:
    """A moment of the pool (``Store.pool_statistics``)."""

    max_size: int
    #: Connections taken from asyncpg's pool: idle here or busy with an operation.
    open: int
    idle: int
    in_use: int
    #: Callers queued for a connection (all max_size busy).
    waiting: int


class Checkout:
    """Pooled connections kept checked out between operations (asyncio side).

    asyncpg's pool owns the connections' lifecycle (connecting, ``init``,
    replacing broken ones, closing); this layer only keeps up to ``max_size``
    of them checked out, in a LIFO deque, so that an operation after a clean
    one takes and returns its connection without a loop turn. A connection
    whose operation failed or was cancelled is released to asyncpg's pool,
    which resets or replaces it. When all ``max_size`` are busy, callers queue
    (FIFO) for the next one returned, each for at most ``wait_s``: then it raises
    :class:`StoreTimeoutError` (a slow database or a held lock keeps every
    connection busy; the caller answers 503 instead of queueing without end).
    """

    def __init__(self, pool: asyncpg.Pool, max_size: int, wait_s: float = POOL_WAIT_S) -> None:
        self._pool = pool
        self._max = max_size
        self._wait_s = wait_s
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
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[PooledConn | None] = loop.create_future()
        self._waiters.append(waiter)
        # An empty context: a cancelled timer must not keep the request's context alive.
        timer = loop.call_later(self._wait_s, self._give_up, waiter, context=contextvars.Context())
        try:
            handed = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed over just as we were cancelled: pass it on.
                given = waiter.result()
                if given is not None:
                    self._pass_on(given)
                else:
                    self._free_slot()
            waiter.cancel()
            raise
        finally:
            timer.cancel()
        return handed if handed is not None else await self._take_from_pool()

    def _give_up(self, waiter: asyncio.Future[PooledConn | None]) -> None:
        if not waiter.done():
            waiter.set_exception(
                StoreTimeoutError(
                    f"All {self._max} database connections of this process stayed busy for "
                    f"{self._wait_s:g} s (DW_DB_POOL_WAIT_SECONDS): the database is slow or "
                    "overloaded; retry.",
                    cause="pool_wait_timeout",
                )
            )

    async def _take_from_pool(self) -> PooledConn:
        """A connection from asyncpg's pool, for a slot already counted in ``_out``."""
        try:
            return await self._pool.acquire()
        except BaseException:
            self._free_slot()
            raise

    def statistics(self) -> PoolStatistics:
        """How many connections are held, idle here or busy, and how many callers wait."""
        return PoolStatistics(
            max_size=self._max,
            open=self._out,
            idle=len(self._idle),
            in_use=self._out - len(self._idle),
            # (callers that gave up or were cancelled leave their future behind until
            # a returned connection passes over it)
            waiting=sum(1 for waiter in self._waiters if not waiter.done()),
        )

    def put_back(self, conn: PooledConn) -> None:
        """After a clean operation: the next caller gets it without a loop turn."""
        if self._closed or not _usable(conn) or conn.is_in_transaction():
            task = asyncio.get_running_loop().create_task(self.discard(conn))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
            return
        self._pass_on(conn)

    async def discard(self, conn: PooledConn, *, broken: bool = False) -> None:
        """After a failed or cancelled operation: asyncpg's pool resets or replaces it.

        A ``broken`` connection (its server went away, or it is stuck in a state
        it cannot leave) is closed first, so that asyncpg opens a new one instead
        of handing it out again (its reset would not notice).

        The slot is freed only once asyncpg has the connection back, and goes
        to a caller already waiting if there is one: a newcomer must not take
        it first and leave that caller waiting on an exhausted asyncpg pool.
        """
        try:
            if broken and _usable(conn):
                conn.terminate()
            await self._pool.release(conn, timeout=CLEANUP_TIMEOUT_S)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The reset failed or timed out: asyncpg has terminated the connection and
            # opens a new one when needed. The operation's own error is what counts.
            log.debug("connection reset failed (%s); terminated", type(exc).__name__)
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


class Mode(enum.Enum):
    """How a store operation runs, and so whether it may run again after its
    connection failed (see :meth:`Store._attempt`)."""

    #: Only reads: always safe to run again.
    READ = "read"
    #: Inside BEGIN ... COMMIT: safe to run again unless the failure hit the COMMIT.
    TRANSACTION = "transaction"
    #: Statements that commit one by one: safe only if none was sent yet.
    AUTOCOMMIT = "autocommit"
    #: One try, no waiting (probes: they report an outage, they don't sit it out).
    PROBE = "probe"


class Interrupted(Exception):
    """The connection failed before the operation had any effect: it may run again."""

    def __init__(self, error: StoreUnavailableError) -> None:
        super().__init__(str(error))
        self.error = error


#: While an outage lasts, one waiting caller (the *prober*) retries its operation
#: this often; the others wait for it to get through.
PROBE_INTERVAL_S = 0.1

#: The latest moment the operations of this task may wait for the database (see
#: :meth:`Store.wait_until`).
_wait_limit: contextvars.ContextVar[float] = contextvars.ContextVar(
    "dwtrio_store_wait_limit", default=math.inf
)

#: The runs the current operation appended history events to (see :func:`note_new_events`).
_new_events: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "dwtrio_store_new_events", default=None
)


def note_new_events(run_id: str) -> None:
    """Called by the store functions that append history events: once the operation
    has committed, :attr:`Store.after_commit` is told which runs got new events (the
    history long-poll of those runs wakes). Outside an operation it does nothing."""
    runs = _new_events.get()
    if runs is not None:
        runs.add(run_id)


async def call_on_trio(token: trio.lowlevel.TrioToken, fn: Callable[[], T]) -> T:
    """From inside a store operation on another thread than Trio's: run the plain
    function ``fn`` on the Trio thread of ``token`` and return its result (one hop
    each way; sync match reserves parked polls so, ``store/offers.py``)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T) -> None:
        if not done.done():  # (the operation may have been cancelled meanwhile)
            done.set_result(result)

    def call() -> None:
        result = fn()
        try:
            loop.call_soon_threadsafe(settle, result)
        except RuntimeError:
            pass  # the loop has closed: nobody waits any more

    token.run_sync_soon(call)
    return await done


class Store:
    """Runs store operations on pooled connections, one bridge crossing each.

    A connection that fails (Postgres restarted, a backend terminated, a
    connection that died while idle) is thrown away, never given to the next
    operation. The operation runs again on a fresh connection when it certainly
    had no effect; then, while the database stays unreachable, the caller waits
    up to ``outage_wait_s`` for it to come back (one caller at a time probes,
    every ``PROBE_INTERVAL_S``; the others go on the moment it gets through).
    Otherwise, or once the wait is over, the operation raises
    :class:`StoreUnavailableError` (``503 backend_unavailable``), marked
    ``maybe_applied`` when the failure hit a write whose outcome is unknown.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        max_size: int,
        *,
        outage_wait_s: float = 10.0,
        pool_wait_s: float = POOL_WAIT_S,
        dsn: str | None = None,
    ) -> None:
        self._pool = pool
        #: The database's DSN, for a connection of its own outside the pool (the
        #: Postgres wake bus's LISTEN connection, ``store/notify.py``).
        self.dsn = dsn
        self._conns = Checkout(pool, max_size, pool_wait_s)
        self.outage_wait_s = outage_wait_s
        #: Told (on the Trio side, after the commit) the runs an operation appended
        #: history events to; the runtime publishes their history wakes.
        self.after_commit: Callable[[set[str]], None] | None = None
        #: Set by the prober when the database answers again (None: no outage seen).
        self._back: trio.Event | None = None

    async def transaction(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op(conn, ...)`` inside one transaction; commit before returning.

        Raises:
            StoreUnavailableError, RetryableStoreError, AlreadyExistsError: translated
                driver errors; anything else propagates unchanged.
        """
        return await self._measured(Mode.TRANSACTION, op, *args, **kwargs)

    async def autocommit(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op(conn, ...)`` without an explicit transaction, for use cases whose
        only write is one statement (each statement commits on its own): two round
        trips fewer than :meth:`transaction`."""
        return await self._measured(Mode.AUTOCOMMIT, op, *args, **kwargs)

    def pool_statistics(self) -> PoolStatistics:
        """The connection pool of this process, now (read on the Trio side: a snapshot of
        counters the asyncio side moves; nothing is awaited)."""
        return self._conns.statistics()

    async def read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op(conn, ...)``, which only reads, without an explicit transaction."""
        return await self._measured(Mode.READ, op, *args, **kwargs)

    async def probe(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the read ``op(conn, ...)`` once: an outage raises at once (health checks)."""
        return await self._measured(Mode.PROBE, op, *args, **kwargs)

    @contextmanager
    def wait_until(self, deadline: float) -> Iterator[None]:
        """Operations of this task wait for an unreachable database until ``deadline``
        (Trio clock) at the latest, e.g. a long-poll's own deadline."""
        token = _wait_limit.set(min(deadline, _wait_limit.get()))
        try:
            yield
        finally:
            _wait_limit.reset(token)

    async def _measured(self, mode: Mode, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """:meth:`_call`, timed and counted (``dwtrio_store_*`` metrics)."""
        started = time.perf_counter()
        try:
            return await self._call(mode, op, *args, **kwargs)
        except StoreUnavailableError:
            metrics.STORE_UNAVAILABLE_BY_MODE[mode.value].inc()
            raise
        finally:
            metrics.STORE_DURATION_BY_MODE[mode.value].observe(time.perf_counter() - started)

    async def _call(self, mode: Mode, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        deadline: float | None = None
        probing: trio.Event | None = None
        try:
            while True:
                try:
                    result, appended = await bridge.run(
                        lambda: self._attempt(mode, op, *args, **kwargs)
                    )
                except Interrupted as exc:
                    now = trio.current_time()
                    if mode is Mode.PROBE or (deadline is not None and now >= deadline):
                        raise exc.error from exc.__cause__
                    if deadline is None:
                        # Often one dead connection among live ones: try a fresh one at once.
                        deadline = min(now + self.outage_wait_s, _wait_limit.get())
                        continue
                    if probing is None and self._back is None:
                        # The first to find the database gone probes for everyone.
                        probing = self._back = trio.Event()
                    if probing is not None:
                        await trio.sleep(min(PROBE_INTERVAL_S, deadline - now))
                    else:
                        with trio.move_on_at(deadline):
                            await self._back.wait()  # type: ignore[union-attr]
                else:
                    if appended and self.after_commit is not None:
                        self.after_commit(appended)
                    return result
        finally:
            if probing is not None:
                # Got through, gave up or was cancelled: the others try again
                # themselves (one of them probes next if it is still down).
                if self._back is probing:
                    self._back = None
                probing.set()

    async def _attempt(
        self, mode: Mode, op: Op[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> tuple[T, set[str]]:
        """One run of ``op`` (asyncio side): its result and the runs it appended
        history events to; a failure that certainly had no effect raises
        :class:`Interrupted`."""
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            conn: PooledConn | None = None
            sent = -1
            ran: int | None = None  # statements of the failed attempt sent (None: unknown)
            committing = False
            appended: set[str] = set()
            _new_events.set(appended)  # this asyncio task's context: the op's only
            try:
                conn = await self._conns.acquire()
                sent = _statements_sent(conn)
                try:
                    if mode is not Mode.TRANSACTION:
                        result = await op(conn, *args, **kwargs)
                    else:
                        tx = conn.transaction()
                        await tx.start()
                        try:
                            result = await op(conn, *args, **kwargs)
                        except BaseException as exc:
                            if not _connection_lost(exc, conn):  # (a lost one took it along)
                                await _rollback_or_terminate(tx, conn)
                            raise
                        committing = True
                        await tx.commit()
                except BaseException as exc:
                    # Counted before the connection goes back (asyncpg then detaches it).
                    ran = _statements_since(conn, sent)
                    await asyncio.shield(
                        self._conns.discard(conn, broken=_connection_lost(exc, conn))
                    )
                    raise
                self._conns.put_back(conn)
                return result, appended
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
                # Two use cases locked the same rows in opposite orders; Postgres
                # rolled one back. Nothing was applied (a whole transaction, or the
                # one writing statement of an autocommit operation): run it again.
                if attempt == TRANSACTION_ATTEMPTS:
                    raise translate(exc) from exc  # type: ignore[misc]
                log.info("retry %d after %s", attempt, type(exc).__name__)
                deadlock = isinstance(exc, asyncpg.DeadlockDetectedError)
                metrics.STORE_RETRIES_BY_REASON["deadlock" if deadlock else "serialization"].inc()
            except Exception as exc:
                mapped = translate(exc)
                if mapped is None:
                    raise
                if isinstance(mapped, StoreTimeoutError) and mode is Mode.AUTOCOMMIT and ran != 1:
                    # A statement before the cancelled one may have committed (or the
                    # count is unknown): the caller must not assume nothing happened.
                    mapped.maybe_applied = True
                if isinstance(mapped, StoreUnavailableError) and _connection_lost(exc, conn):
                    no_effect = (
                        conn is None  # it failed getting a connection
                        or mode in (Mode.READ, Mode.PROBE)
                        or (mode is Mode.TRANSACTION and not committing)
                        or ran == 0  # nothing reached the server
                    )
                    if no_effect:
                        raise Interrupted(mapped) from exc
                    mapped.maybe_applied = True
                raise mapped from exc
        raise AssertionError("unreachable")

    async def close(self, *, timeout_s: float = CLEANUP_TIMEOUT_S) -> None:
        """Close the pool gracefully, or terminate it after ``timeout_s``; runs even when cancelled."""
        with trio.move_on_after(timeout_s, shield=True) as scope:  # cleanup must not be skipped
            await bridge.run(self._conns.close)
            await bridge.run(self._pool.close)
        if scope.cancelled_caught:
            log.warning("pool did not close within %.1fs; terminating connections", timeout_s)
            bridge.call_soon(self._pool.terminate)


async def _rollback_or_terminate(tx: Any, conn: PooledConn) -> None:
    """Roll ``tx`` back within :data:`CLEANUP_TIMEOUT_S`, else close ``conn`` at once
    (the server rolls back a transaction whose connection is gone)."""
    try:
        await asyncio.wait_for(tx.rollback(), CLEANUP_TIMEOUT_S)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.debug("rollback failed (%s); terminating the connection", type(exc).__name__)
        if _usable(conn):
            conn.terminate()


def _statements_since(conn: PooledConn, sent: int) -> int | None:
    """How many statements ``conn`` sent since it had sent ``sent``; None when either
    count is unknown."""
    now = _statements_sent(conn)
    return None if now < 0 or sent < 0 else now - sent


def _statements_sent(conn: PooledConn) -> int:
    """How many statements this connection has sent to the server (asyncpg counts
    them as they go out, so a statement refused before sending is not counted);
    -1 when it cannot tell, which never equals an earlier count."""
    try:
        return int(conn._con._protocol.queries_count)  # type: ignore[attr-defined]
    except (AttributeError, asyncpg.InterfaceError):
        return -2


#: Failures that mean the connection, not the statement, is broken.
_CONNECTION_FAILURES = (
    OSError,  # refused, reset, timed out (TimeoutError is an OSError)
    asyncpg.PostgresConnectionError,  # includes "closed in the middle of operation"
    asyncpg.CannotConnectNowError,  # starting up, shutting down
    asyncpg.AdminShutdownError,  # pg_terminate_backend, a fast shutdown
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    # A connection whose server said goodbye while it sat idle refuses the next
    # statement before sending it ("cannot switch to state ...").
    asyncpg.InternalClientError,
)


def _connection_lost(exc: BaseException, conn: PooledConn | None) -> bool:
    """Whether ``exc`` means the database or the connection went away."""
    if isinstance(exc, _CONNECTION_FAILURES):
        return True
    # InterfaceError is also asyncpg's word for a misuse: only a closed connection counts.
    return isinstance(exc, asyncpg.InterfaceError) and (conn is None or not _usable(conn))


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log what asyncio reports as unhandled instead of raising it.

    asyncpg leaves one behind when a connection is cut while it is being opened
    (a future of its TLS probe that nobody awaits any more): a Postgres restart
    must not fill the log with asyncio's default report, nor stop dwtrio.
    """
    log.warning(
        "asyncio: %s",
        context.get("message") or "unhandled error",
        exc_info=context.get("exception"),
    )


async def _create_pool(
    dsn: str, min_size: int, max_size: int, statement_timeout_s: float
) -> asyncpg.Pool:
    asyncio.get_running_loop().set_exception_handler(_log_loop_error)
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        # Without this every release arms a 300 s asyncio timer (under trio-asyncio
        # each stayed alive until its deadline: RSS grew by hundreds of MB).
        max_inactive_connection_lifetime=0,
        reset=_no_reset,
        init=_init_connection,
        # A database that does not answer at all must not hold a caller for
        # asyncpg's default minute per connection attempt.
        timeout=CONNECT_TIMEOUT_S,
        server_settings={
            "application_name": "dwtrio",
            "timezone": "UTC",
            # No statement, nor its wait for a lock, holds a connection without end.
            "statement_timeout": str(max(1, round(statement_timeout_s * 1000))),
        },
    )


@asynccontextmanager
async def open_store(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 16,
    outage_wait_s: float = 10.0,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    pool_wait_s: float = POOL_WAIT_S,
) -> AsyncIterator[Store]:
    """Open a pool for ``dsn`` (inside ``bridge.open_loop``) and close it on exit.

    Raises:
        StoreUnavailableError: the database cannot be reached.
    """
    try:
        pool = await bridge.run(_create_pool, dsn, min_size, max_size, statement_timeout_s)
    except Exception as exc:
        if (mapped := translate(exc)) is not None:
            raise mapped from exc
        raise
    store = Store(pool, max_size, outage_wait_s=outage_wait_s, pool_wait_s=pool_wait_s, dsn=dsn)
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
        return await bridge.run(run)
    except Exception as exc:
        if (mapped := translate(exc)) is not None:
            raise mapped from exc
        raise
