"""bench task-queues: its loader writes a queue the server describes as loaded, and every
timed request answers.

A small load (2,000 ready and 100 leased tasks, 30 workers, 3 other queues) against an
in-process server on the test database; the figures are not checked, only what the
deep queue's description and the list say of the load.
"""

from __future__ import annotations

import argparse
import asyncio

import trio

from bench.task_queues import _check, _load, _measure, requests

from conftest import StartServer

LOAD = argparse.Namespace(ready=2_000, leased=100, workers=30, queues=3, batch=700)


async def test_load_then_every_request(start_server: StartServer, db_dsn: str) -> None:
    server = await start_server(auth_driver="none")
    await trio.to_thread.run_sync(lambda: asyncio.run(_load(db_dsn, LOAD)))
    measured = await trio.to_thread.run_sync(lambda: asyncio.run(_measure(server.url, db_dsn, 2)))
    assert list(measured) == [*requests(), "stats statement alone (asyncpg)"]
    for name, m in measured.items():
        assert len(m["ms"]) == 2, name
    seen = _check(measured, LOAD)
    assert seen["backlog"] == 2_000
    assert seen["pollers"] == {"active_count": 25, "stale_count": 5, "stale_after_seconds": 60}
    # Due over the last hour: all but the last few seconds' tasks are overdue.
    assert 1_900 < seen["dispatch_overdue"] <= 2_000
    assert seen["workflow_admission"] == "accepting"
    assert seen["backlog_age"].startswith("59m") or seen["backlog_age"].startswith("1h")
