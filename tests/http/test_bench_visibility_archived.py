"""bench visibility-archived: on a small load its three modes list what they should.

2,000 runs with half of the closed ones archived; two rounds per mode. The
figures are not checked, only the rows each mode finds and that a plan is read.
"""

from __future__ import annotations

import asyncio

import trio

from bench.visibility import _load, _register
from bench.visibility_archived import _time

from conftest import StartServer


async def test_modes_and_plans(start_server: StartServer, db_dsn: str) -> None:
    server = await start_server(auth_driver="none")
    await trio.to_thread.run_sync(lambda: asyncio.run(_register(server.url)))
    await trio.to_thread.run_sync(lambda: asyncio.run(_load(db_dsn, 2_000, 700)))
    out = await trio.to_thread.run_sync(lambda: asyncio.run(_time(db_dsn, 2, 50)))
    assert out["archived"].startswith("UPDATE ") and int(out["archived"].split()[1]) > 0
    running = out["running"]
    assert "archived_at IS NULL" in running["plan"]
    assert len(running["ms"]["off"]) == len(running["ms"]["archived=false"]) == 2
    # Open runs are never archived; closed ones are, about half of them.
    assert running["ms"]["archived=true rows"] == [0.0]
    assert running["ms"]["off rows"] == running["ms"]["archived=false rows"] == [51.0]
    failed = out["type+failed"]["ms"]
    assert failed["archived=true rows"][0] > 0
