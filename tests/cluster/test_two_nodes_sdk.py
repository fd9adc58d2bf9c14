"""Two nodes on one database with the real SDK: the worker polls node A, the client
uses node B. Timers, signals, condition waits and activities all cross nodes; with
Redis the wakes cross at once, without it the periodic recheck still delivers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from conftest import CP, RunningServer, StartServer

DRIVER = Path(__file__).with_name("signal_flow_driver.py")
TOKEN = "two-node-token"
COUNT = 5

pytestmark = pytest.mark.sdk


async def run_driver(a: RunningServer, b: RunningServer) -> dict[str, Any]:
    with trio.fail_after(150):
        proc = await trio.run_process(
            [sys.executable, str(DRIVER), a.url, b.url, TOKEN, str(COUNT)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def expected() -> list[dict[str, Any]]:
    return [{"loud": f"N{i}", "items": [f"s{i}"], "ok": True} for i in range(COUNT)]


async def test_sdk_workflows_across_two_nodes_with_redis(
    start_server: StartServer, redis_url: str
) -> None:
    common = {"admin_token": None, "auth_token": TOKEN, "redis_url": redis_url}
    a = await start_server(**common)
    b = await start_server(**common)
    out = await run_driver(a, b)
    assert out["results"] == expected()


async def test_sdk_workflows_across_two_nodes_without_redis(start_server: StartServer) -> None:
    # No wake bus between the nodes: every cross-node wake comes from a recheck.
    common = {"admin_token": None, "auth_token": TOKEN, "worker_poll_interval_ms": 200}
    a = await start_server(**common)
    b = await start_server(**common)
    out = await run_driver(a, b)
    assert out["results"] == expected()


async def bus_counters(server: RunningServer) -> dict[str, Any]:
    async with server.client(TOKEN) as c:
        r = await c.get("/api/system/metrics", headers=CP)
    assert r.status_code == 200, r.text
    return r.json()["metrics"]["wake_bus"]  # type: ignore[no-any-return]


async def test_sdk_workflows_across_two_nodes_on_the_postgres_wake_bus(
    start_server: StartServer,
) -> None:
    # No Redis: wakes cross through LISTEN/NOTIFY, and the 20 s recheck is no help.
    common = {
        "admin_token": None,
        "auth_token": TOKEN,
        "wake_bus": "postgres",
        "worker_poll_interval_ms": 20_000,
    }
    a = await start_server(**common)
    b = await start_server(**common)
    out = await run_driver(a, b)
    assert out["results"] == expected()
    # The worker's polls on node A were woken by work node B created (starts, signals).
    on_a, on_b = await bus_counters(a), await bus_counters(b)
    assert on_a["kind"] == on_b["kind"] == "postgres"
    assert on_b["published"] >= COUNT and on_a["received"] >= COUNT
