"""A connection of its own for LISTEN/NOTIFY (``schema/queries/notify.sql``).

The Postgres wake bus (``matching/wakebus.py``) needs a session that stays
LISTENing, so it cannot borrow a pooled connection between operations: this
module opens one more connection per process, outside the pool and its
``DW_DB_POOL_MAX_SIZE``. The same connection also sends the bus's NOTIFYs, so
the notifications it gets back from its own session are recognised by the
sender's process id and dropped here.

Like ``store/pool.py`` this runs asyncpg on the loop of ``store/bridge.py``:
each method below crosses it once, and notifications reach the caller's
synchronous ``on_message`` on the Trio thread, in the order they came. Any failure of the connection is a :class:`StoreUnavailableError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from dwtrio.errors import StoreUnavailableError
from dwtrio.store import bridge
from dwtrio.store.health import ping
from dwtrio.store.pool import CONNECT_TIMEOUT_S
from dwtrio.store.queries import query

#: PostgreSQL refuses a NOTIFY payload of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7999

#: Longest a NOTIFY or a ping may take before the connection counts as lost.
STATEMENT_TIMEOUT_S = 2.0

#: Longest closing may take (a half-dead socket must not hold up a shutdown).
CLOSE_TIMEOUT_S = 2.0

#: How the connection shows in ``pg_stat_activity``.
APPLICATION_NAME = "dwtrio-wakes"

#: What a lost connection raises (asyncpg's, the socket's, a statement timing out).
_FAILURES = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)

_NOTIFY_ALL = query("notify_all")

T = TypeVar("T")


class Listener:
    """One dedicated connection LISTENing on ``channel`` (see the module docstring)."""

    def __init__(self, conn: asyncpg.Connection, channel: str) -> None:
        self._conn = conn
        self.channel = channel

    @classmethod
    async def open(
        cls,
        dsn: str,
        channel: str,
        on_message: Callable[[str], None],
        on_lost: Callable[[], None],
    ) -> Listener:
        """Connect and LISTEN (Trio side). ``on_message(payload)`` gets every notification
        another session sends on ``channel``; ``on_lost()`` is called once the connection
        has ended, however it ended (also after :meth:`close`). Both are called on the
        Trio thread, in order."""
        on_message = bridge.to_trio(on_message)
        on_lost = bridge.to_trio(on_lost)

        async def connect() -> Listener:
            conn = await asyncpg.connect(
                dsn,
                timeout=CONNECT_TIMEOUT_S,
                server_settings={"application_name": APPLICATION_NAME},
            )
            try:
                own_pid = conn.get_server_pid()

                def notified(_conn: object, pid: int, _channel: str, payload: object) -> None:
                    if pid != own_pid and isinstance(payload, str):
                        on_message(payload)

                conn.add_termination_listener(lambda _conn: on_lost())
                async with asyncio.timeout(STATEMENT_TIMEOUT_S):
                    await conn.add_listener(channel, notified)
            except BaseException:
                conn.terminate()
                raise
            return cls(conn, channel)

        return await _bridged(connect)

    async def notify(self, payloads: list[str]) -> None:
        """Send each payload as one notification, in one statement (Trio side)."""

        async def send() -> None:
            async with asyncio.timeout(STATEMENT_TIMEOUT_S):
                await _NOTIFY_ALL.fetchval(self._conn, channel=self.channel, payloads=payloads)

        await _bridged(send)

    async def ping(self) -> None:
        """A round trip, so that a connection that died silently is noticed (Trio side)."""

        async def one_round_trip() -> None:
            async with asyncio.timeout(STATEMENT_TIMEOUT_S):
                await ping(self._conn)

        await _bridged(one_round_trip)

    async def close(self) -> None:
        """Close the connection, or cut it after ``CLOSE_TIMEOUT_S`` (Trio side); a
        connection that is already gone is not an error here."""

        async def close() -> None:
            try:
                await self._conn.close(timeout=CLOSE_TIMEOUT_S)
            finally:
                if not self._conn.is_closed():
                    self._conn.terminate()

        with contextlib.suppress(StoreUnavailableError):
            await _bridged(close)


async def _bridged(fn: Callable[[], Awaitable[T]]) -> T:
    """``fn()`` on the asyncio side, its connection failures as StoreUnavailableError."""
    try:
        return await bridge.run(fn)
    except _FAILURES as exc:
        raise StoreUnavailableError(f"wake bus connection: {exc}") from exc
