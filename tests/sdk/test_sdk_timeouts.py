"""SDK 2.12.0 against server-owned retries, activity timeouts and lease repair.

The server runs with a 2 s default activity lease and fast timeout/repair
loops, so a lost attempt is noticed within a few seconds.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import history, run_driver, start_sdk_server

DRIVER = "timeouts_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(
        start_server,
        activity_task_timeout_s=2,
        task_repair_interval_s=0.3,
        timeout_check_interval_s=0.2,
    )


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in events if e["event_type"] == event_type]


async def test_retry_then_success_sees_the_attempt_number(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "retry")
    assert out["result"] == {"attempt": 3}
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    assert [p["attempt_number"] for p in of_type(events, "ActivityStarted")] == [1, 2, 3]
    retries = of_type(events, "ActivityRetryScheduled")
    assert [p["message"] for p in retries] == ["attempt 1 failed", "attempt 2 failed"]
    assert events[-1]["event_type"] == "WorkflowCompleted"


async def test_each_timeout_kind_surfaces_as_activity_failed(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "timeout-kinds")
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
    out = await run_driver(sdk_server, DRIVER, "killed-worker")
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
    out = await run_driver(sdk_server, DRIVER, "run-timeout")
    assert out["raised"]["type"] == "WorkflowTimedOut"
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    assert events[-1]["event_type"] == "WorkflowTimedOut"
    assert events[-1]["payload"]["timeout_kind"] == "run"
