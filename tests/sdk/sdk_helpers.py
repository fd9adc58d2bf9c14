"""What every SDK test module needs: a server the SDK can reach, a driver run, history reads.

This is a plain module, not ``tests/sdk/conftest.py``: test modules import the root
conftest as ``conftest``, and a second conftest module would take that name over.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import trio

from conftest import CP, RunningServer, StartServer

TOKEN = "dev-token-123"
DRIVER_TIMEOUT_S = 180


async def start_sdk_server(start_server: StartServer, **settings: Any) -> RunningServer:
    """One shared legacy token and no role tokens: valid on both planes, as the quickstart needs."""
    return await start_server(admin_token=None, auth_token=TOKEN, **settings)


async def run_driver(server: RunningServer, driver: str, scenario: str) -> Any:
    """Run one scenario of ``tests/sdk/<driver>`` in a subprocess (the SDK is asyncio, this
    process runs Trio); the driver prints its result as the last stdout line."""
    with trio.fail_after(DRIVER_TIMEOUT_S):
        proc = await trio.run_process(
            [sys.executable, str(Path(__file__).with_name(driver)), scenario, server.url, TOKEN],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


async def history(server: RunningServer, workflow_id: str, run_id: str) -> list[dict[str, Any]]:
    """A run's whole history, checked to be gapless from sequence 1."""
    async with server.client(TOKEN) as c:
        r = await c.get(
            f"/api/workflows/{workflow_id}/runs/{run_id}/history?page_size=1000", headers=CP
        )
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    return events


async def history_types(server: RunningServer, workflow_id: str, run_id: str) -> list[str]:
    return [e["event_type"] for e in await history(server, workflow_id, run_id)]
