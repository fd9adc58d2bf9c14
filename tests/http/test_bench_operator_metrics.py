"""bench operator-metrics: its loader writes runs, tasks, workers and schedules that the
operator metrics report as loaded, and every timed request answers.

A small load (5,000 runs, 300 of the open ones with a workflow task on 3 queues)
against an in-process server without a scheduler on the test database; the figures are
not checked, only what the metrics and the health say of the load.
"""

from __future__ import annotations

import argparse
import asyncio

import trio

from bench.operator_metrics import _check, _load, _measure, requests

from conftest import StartServer

LOAD = argparse.Namespace(runs_count=5_000, tasks=300, queues=3, batch=2_000)


async def test_load_then_every_request(start_server: StartServer, db_dsn: str) -> None:
    server = await start_server(auth_driver="none", scheduler_enabled=False)
    await trio.to_thread.run_sync(lambda: asyncio.run(_load(db_dsn, LOAD)))
    measured = await trio.to_thread.run_sync(lambda: asyncio.run(_measure(server.url, db_dsn, 2)))
    assert list(measured) == [
        *requests(),
        "run counters alone (asyncpg)",
        "count(*) by status over the runs (asyncpg, ref)",
    ]
    for name, m in measured.items():
        assert len(m["ms"]) >= 2, name
    seen = _check(measured, LOAD)
    assert seen["runs"] == {
        "total": 5_000,
        "running": 500,
        "completed": 4_000,
        "failed": 250,
        "cancelled": 150,
        "terminated": 100,
    }
    assert seen["tasks"]["task_queues"] == 3
    assert seen["tasks"]["ready"] + seen["tasks"]["leased"] == 300
    # The tasks are due over the last hour, and 20 schedules are an hour late.
    assert seen["health_warnings"] == ["task_backlog_age", "schedule_lag"]
