"""SDK 2.12.0 against server-owned retries, activity timeouts and lease repair.

The server runs with a 2 s default activity lease and fast timeout/repair
loops, so a lost attempt is noticed within a few seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from conftest import CP, RunningServer, StartServer

DRIVER = Path(__file__).with_name("timeouts_driver.py")
TOKEN = "dev-token-123"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_server(
        admin_token=None,
        auth_token=TOKEN,
        activity_task_timeout_s=2,
        task_repair_interval_s=0.3,
        timeout_check_interval_s=0.2,
    )


async def run_driver(server: RunningServer, scenario: str) -> Any:
    with trio.fail_after(180):
        proc = await trio.run_process(
            [sys.executable, str(DRIVER), scenario, server.url, TOKEN],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


async def history(server: RunningServer, workflow_id: str, run_id: str) -> list[dict[str, Any]]:
    async with server.client(TOKEN) as c:
        r = await c.get(
            f"/api/workflows/{workflow_id}/runs/{run_id}/history?page_size=1000", headers=CP
        )
        assert r.status_code == 200, r.text
        return r.json()["events"]  # type: ignore[no-any-return]


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in events if e["event_type"] == event_type]


async def test_retry_then_success_sees_the_attempt_number(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, "retry")
    assert out["result"] == {"attempt": 3}
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    assert [p["attempt_number"] for p in of_type(events, "ActivityStarted")] == [1, 2, 3]
    retries = of_type(events, "ActivityRetryScheduled")
    assert [p["message"] for p in retries] == ["attempt 1 failed", "attempt 2 failed"]
    assert events[-1]["event_type"] == "WorkflowCompleted"


async def test_each_timeout_kind_surfaces_as_activity_failed(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, "timeout-kinds")
    assert set(out) == {"start_to_close", "heartbeat", "schedule_to_start", "schedule_to_close"}
    for kind, run in out.items():
        result = run["result"]
        assert result["caught"] == "ActivityFailed", (kind, result)
        assert result["message"] == f"activity {kind} timeout"
        assert result["failure_category"] == "timeout"
        events = await history(sdk_server, run["workflow_id"], run["run_id"])
        [timed_out] = of_type(events, "ActivityTimedOut")
        assert timed_out["timeout_kind"] == kind
        assert events[-1]["event_type"] == "WorkflowCompleted"
    assert out["schedule_to_start"]["result"]["activity_type"] == "sleepy"


async def test_a_killed_workers_activity_is_finished_by_another(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, "killed-worker")
    assert out["killed_returncode"] == -9
    assert out["result"] == {"attempt": 2, "worker_id": out["rescuer"]}
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    started = of_type(events, "ActivityStarted")
    assert [p["attempt_number"] for p in started] == [1, 2]
    [lost] = of_type(events, "ActivityRetryScheduled")
    assert lost["message"] == "activity lease expired"
    assert lost["retry_after_attempt"] == 1
    assert events[-1]["event_type"] == "WorkflowCompleted"


async def test_a_run_timeout_raises_workflow_timed_out(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, "run-timeout")
    assert out["raised"]["type"] == "WorkflowTimedOut"
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    assert events[-1]["event_type"] == "WorkflowTimedOut"
    assert events[-1]["payload"]["timeout_kind"] == "run"
