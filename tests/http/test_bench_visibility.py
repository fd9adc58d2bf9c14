"""bench visibility: its loader writes runs the server lists, and its six lists answer.

A small load (2,000 runs) against an in-process server on the test database;
the figures are not checked, only that every list finds rows through the
visibility filters and that the loader's runs carry the typed rows.
"""

from __future__ import annotations

import asyncio

import trio

from bench.visibility import _load, _measure, _register
from dwtrio.store.pool import Conn, connect_once

from conftest import StartServer

RUNS = 2_000


async def test_load_then_every_list(start_server: StartServer, db_dsn: str) -> None:
    server = await start_server(auth_driver="none")
    await trio.to_thread.run_sync(lambda: asyncio.run(_register(server.url)))
    await trio.to_thread.run_sync(lambda: asyncio.run(_load(db_dsn, RUNS, 700)))

    async def counts(conn: Conn) -> list[int]:
        return [
            int(await conn.fetchval("SELECT count(*) FROM workflow_runs")),
            int(await conn.fetchval("SELECT count(*) FROM workflow_search_attributes")),
        ]

    assert await connect_once(db_dsn, counts) == [RUNS, RUNS]  # one OrderTotal row per run
    measured = await trio.to_thread.run_sync(lambda: asyncio.run(_measure(server.url, 2)))
    assert list(measured) == [
        "running",
        "type+failed",
        "customer",
        "total>990+completed",
        "vip+queue+week",
        "gold+queue+week (correlated)",
    ]
    for name, m in measured.items():
        assert m["first_page"] > 0, (name, m)
        assert len(m["ms"]) == 2
    assert measured["running"]["first_page"] == 50 and measured["running"]["second_page"] == 50
