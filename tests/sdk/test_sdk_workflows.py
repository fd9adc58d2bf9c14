"""The official SDK 2.12.0 runs real workflows against dwtrio (worker and client in a subprocess)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from conftest import CP, RunningServer, StartServer

DRIVER = Path(__file__).with_name("workflows_driver.py")
TOKEN = "dev-token-123"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    # One shared legacy token with no role tokens: valid on both planes, as the quickstart needs.
    return await start_server(admin_token=None, auth_token=TOKEN)


async def run_driver(server: RunningServer, scenario: str) -> dict[str, Any]:
    with trio.fail_after(180):
        proc = await trio.run_process(
            [sys.executable, str(DRIVER), scenario, server.url, TOKEN],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


async def history_types(server: RunningServer, workflow_id: str, run_id: str) -> list[str]:
    async with server.client(TOKEN) as c:
        r = await c.get(
            f"/api/workflows/{workflow_id}/runs/{run_id}/history?page_size=1000", headers=CP
        )
        assert r.status_code == 200, r.text
        events = r.json()["events"]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    return [e["event_type"] for e in events]


async def test_readme_greeter(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, "greeter")
    assert out["result"] == "hello, world"
    assert await history_types(sdk_server, out["workflow_id"], out["run_id"]) == [
        "StartAccepted",
        "WorkflowStarted",
        "ActivityScheduled",
        "ActivityStarted",
        "ActivityCompleted",
        "WorkflowCompleted",
    ]


async def test_three_sequential_activities_pass_data(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, "pipeline")
    assert out["result"] == "value=11"  # (5 * 2) + 1
    types = await history_types(sdk_server, out["workflow_id"], out["run_id"])
    assert types.count("ActivityCompleted") == 3


async def test_parallel_fan_out_fan_in_keeps_order(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, "fanout")
    assert out["result"] == {"first": 1, "squares": [0, 1, 4, 9, 16]}
    types = await history_types(sdk_server, out["workflow_id"], out["run_id"])
    assert types.count("ActivityScheduled") == 6  # no member was scheduled twice
    assert types[-1] == "WorkflowCompleted"


async def test_activity_failure_surfaces_as_typed_error(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, "catches-activity-failure")
    result = out["result"]
    assert result["caught"] == "ActivityFailed"
    assert "exploded: boom" in result["message"]
    assert result["exception_type"] == "NonRetryableError"
    assert result["non_retryable"] is True
    assert result["activity_type"] == "explode"


async def test_unhandled_activity_failure_fails_the_workflow(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, "activity-failure-fails-workflow")
    assert out["error"]["type"] == "WorkflowFailed"
    assert "broken: boom" in out["error"]["message"]
    types = await history_types(sdk_server, out["workflow_id"], out["run_id"])
    assert types[-2:] == ["ActivityFailed", "WorkflowFailed"]


async def test_workflow_that_raises_fails(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, "raises")
    assert out["error"]["type"] == "WorkflowFailed"
    assert "workflow exploded: now" in out["error"]["message"]
    assert out["error"]["exception_class"] and "ValueError" in out["error"]["exception_class"]


async def test_two_workers_share_a_queue(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, "two-workers")
    assert out["results"] == [f"value={i * 2 + 1}" for i in range(20)]
    assert len(set(out["worker_ids"])) == 2


async def test_duplicate_start_raises_workflow_already_started(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, "duplicate")
    assert out["raised"] == "WorkflowAlreadyStarted"
