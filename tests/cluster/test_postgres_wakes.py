"""The Postgres wake bus (``DW_WAKE_BUS=postgres``): wakes cross nodes through
LISTEN/NOTIFY on the shared database, with no Redis anywhere, and the bus rides
through its connection being cut (``matching/wakebus.py``, ``store/notify.py``).

Every node here rechecks only every 20 s, so a poll answered within a couple of
seconds was woken by the bus.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import trio
from test_redis_wakes import cross_node_wake

from dwtrio.matching.waiters import WaiterSet, history_key
from dwtrio.matching.wakebus import PostgresWakeBus
from dwtrio.store.notify import APPLICATION_NAME
from dwtrio.store.pool import Conn, connect_once

from cluster_nodes import TOKEN, start_two_nodes
from conftest import CP, RunningServer, StartServer

RECHECK_MS = 20_000


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


async def listen_pids(admin_dsn: str, dsn: str) -> set[int]:
    """The backends of the wake buses' LISTEN connections on the database of ``dsn``."""

    async def op(conn: Conn) -> set[int]:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
            database_name(dsn),
            APPLICATION_NAME,
        )
        return {r["pid"] for r in rows}

    return await connect_once(admin_dsn, op)


async def terminate(admin_dsn: str, pids: set[int]) -> None:
    async def op(conn: Conn) -> None:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(pids)
        )

    await connect_once(admin_dsn, op)


async def allow_connections(admin_dsn: str, dsn: str, allowed: bool) -> None:
    """Let the database of ``dsn`` take new connections, or refuse them (existing ones
    stay), through the server's admin database."""

    async def op(conn: Conn) -> None:
        name = database_name(dsn)
        await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')

    await connect_once(admin_dsn, op)


async def wait_for(condition: object, timeout_s: float) -> None:
    with trio.fail_after(timeout_s):
        while not condition():  # type: ignore[operator]
            await trio.sleep(0.01)


async def ready_cache(server: RunningServer) -> dict[str, object]:
    async with server.client(TOKEN) as c:
        r = await c.get("/api/ready")
    assert r.status_code == 200, r.text
    return r.json()["checks"]["cache"]  # type: ignore[no-any-return]


@pytest.fixture
async def nodes(start_server: StartServer) -> tuple[RunningServer, RunningServer]:
    return await start_two_nodes(
        start_server, None, poll_interval_ms=RECHECK_MS, wake_bus="postgres"
    )


async def test_a_start_on_one_node_wakes_a_poll_on_another_without_redis(
    nodes: tuple[RunningServer, RunningServer],
) -> None:
    a, b = nodes
    assert a.settings.redis_url is None and b.settings.redis_url is None
    assert await ready_cache(a) == {"status": "ok", "store": "postgres"}
    for parked, starter in ((a, b), (b, a)):
        _, elapsed = await cross_node_wake(parked, starter)
        assert elapsed < 2.0
    async with a.client(TOKEN) as c:
        r = await c.get("/api/system/metrics", headers=CP)
    assert r.status_code == 200, r.text
    bus = r.json()["metrics"]["wake_bus"]
    assert bus["kind"] == "postgres"
    assert bus["published"] >= 1 and bus["received"] >= 1


async def test_the_bus_reconnects_after_its_backend_is_terminated(
    nodes: tuple[RunningServer, RunningServer],
    pg_admin_dsn: str,
    db_dsn: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="dwtrio.matching.wakebus")
    a, b = nodes
    before = await listen_pids(pg_admin_dsn, db_dsn)
    assert len(before) == 2  # one LISTEN connection per node, outside the pools
    await terminate(pg_admin_dsn, before)
    # Both buses notice, connect again on fresh backends and say so once each.
    with trio.fail_after(10):
        while True:
            after = await listen_pids(pg_admin_dsn, db_dsn)
            if len(after) == 2 and not after & before:
                break
            await trio.sleep(0.05)
    await wait_for(lambda: caplog.text.count("reconnected to the database") == 2, 10)
    assert caplog.text.count("falling back to rechecks") == 2  # one outage each
    assert await ready_cache(a) == {"status": "ok", "store": "postgres"}
    _, elapsed = await cross_node_wake(a, b)
    assert elapsed < 2.0


@pytest.fixture
async def closable_database(pg_admin_dsn: str, db_dsn: str) -> AsyncIterator[str]:
    """This test's database, open to connections again after the test whatever it did."""
    try:
        yield db_dsn
    finally:
        await allow_connections(pg_admin_dsn, db_dsn, True)


async def test_while_the_connection_is_down_the_bus_is_degraded_and_wakes_resume_after(
    aio_loop: None, pg_admin_dsn: str, closable_database: str
) -> None:
    dsn = closable_database
    here, there = WaiterSet(), WaiterSet()
    bus = PostgresWakeBus(here, dsn, backoff_max_s=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        assert bus.connected and bus.health() == {"status": "ok", "store": "postgres"}
        (pid,) = await listen_pids(pg_admin_dsn, dsn)
        other = PostgresWakeBus(there, dsn)
        await nursery.start(other.run)

        # The database refuses new connections: the cut bus cannot come back.
        await allow_connections(pg_admin_dsn, dsn, False)
        await terminate(pg_admin_dsn, {pid})
        await wait_for(lambda: not bus.connected, 5)
        await trio.sleep(1.0)  # several attempts, each refused
        health = bus.health()
        assert health["degraded"] is True and health["store"] == "postgres"
        assert "connect" in health["message"] or "listen" in health["message"]
        with here.watch_history("run-1") as wakeup:
            other.publish([history_key("run-1")])  # sent, but `here` does not listen
            await trio.sleep(0.5)
            assert not wakeup.is_set()

        await allow_connections(pg_admin_dsn, dsn, True)
        await wait_for(lambda: bus.connected, 5)
        assert bus.health() == {"status": "ok", "store": "postgres"}
        with here.watch_history("run-2") as wakeup:
            other.publish([history_key("run-2")])
            await wait_for(wakeup.is_set, 2)
        nursery.cancel_scope.cancel()
