"""Probes of the database itself (``schema/queries/health.sql``)."""

from __future__ import annotations

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query

_PING = query("ping")


async def ping(conn: Conn) -> int:
    """1, once the database has answered."""
    return int(await _PING.fetchval(conn))
