"""SDK 2.12.0 ``Client.redrive_workflow`` and ``WorkflowHandle.redrive`` on dwtrio (client and
worker in a subprocess), asserted on what the SDK parsed, on the worker's activity counts
and on the two runs' histories."""

from __future__ import annotations

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import history, run_driver, start_sdk_server

DRIVER = "redrive_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


async def test_redrive_retries_only_the_failed_activity(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "activity")
    wf, failed = out["workflow_id"], out["failed_run_id"]
    assert "card declined for book" in out["failure"]
    assert out["calls_before"] == {"reserve": 1, "charge": 1}
    redriven = out["redriven"]
    assert redriven["type"] == "WorkflowCommandResult"
    assert redriven["outcome"] == "redriven" and redriven["command_status"] == "accepted"
    assert redriven["workflow_id"] == wf and redriven["command_id"]
    new_run = redriven["run_id"]
    assert new_run and new_run != failed
    assert redriven["redrive"]["source_run_id"] == failed
    assert redriven["redrive"]["run_id"] == new_run and redriven["redrive"]["run_number"] == 2
    assert redriven["redrive"]["reused_steps"] == 1
    assert redriven["redrive"]["retried_step_sequence"] == 2
    assert out["result"] == "reserved book, charged book"
    # The completed reservation was reused, not run again; the charge ran once more.
    assert out["calls_after"] == {"reserve": 1, "charge": 2}
    # The same request id gets the same receipt back, and starts nothing.
    again = out["again"]
    assert again["retained"] is True
    assert (again["command_id"], again["run_id"], again["outcome"]) == (
        redriven["command_id"],
        new_run,
        "redriven",
    )
    assert out["not_current"] == {
        "type": "ServerError",
        "status": 409,
        "reason": "historical_run_command_rejected",
    }
    assert out["completed"] == {"type": "ServerError", "status": 409, "reason": "run_not_failed"}
    assert out["described"] == {"status": "completed", "run_id": new_run}
    assert out["runs"] == [
        {"run_id": failed, "status": "failed"},
        {"run_id": new_run, "status": "completed"},
    ]
    assert out["listed"] == sorted([[failed, "failed"], [new_run, "completed"]])

    old = await history(sdk_server, wf, failed)
    assert old[-1]["event_type"] == "WorkflowFailed"  # the failed run's history is final
    new = await history(sdk_server, wf, new_run)
    types = [e["event_type"] for e in new]
    assert types[0] == "WorkflowStarted"
    started = new[0]["payload"]
    assert started["redriven_from_run_id"] == failed and started["run_number"] == 2
    assert started["workflow_run_id"] == new_run
    reused = [e for e in new if e["payload"].get("reused_from_run_id") == failed]
    assert [e["event_type"] for e in reused] == [
        "ActivityScheduled",
        "ActivityStarted",
        "ActivityCompleted",
    ]
    assert {e["payload"]["sequence"] for e in reused} == {1}
    charge = [e for e in new if e["payload"].get("activity_type") == "charge"]
    assert [e["payload"]["sequence"] for e in charge] == [2, 2, 2]
    assert "reused_from_run_id" not in charge[0]["payload"]
    assert types[-1] == "WorkflowCompleted" and "WorkflowFailed" not in types


async def test_handle_redrive_after_the_workflow_code_failed(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "code")
    assert "a bug after the reservation" in out["failure"]
    redriven = out["redriven"]
    assert redriven["outcome"] == "redriven" and redriven["run_id"] != out["failed_run_id"]
    assert redriven["redrive"]["reused_steps"] == 1
    assert redriven["redrive"]["retried_step_sequence"] is None
    assert out["result"] == "reserved book, shipped"
    assert out["calls_after"] == {"reserve": 1}


async def test_timers_and_side_effects_replay_from_the_failed_run(
    sdk_server: RunningServer,
) -> None:
    out = await run_driver(sdk_server, DRIVER, "steps")
    assert "card declined for book" in out["failure"]
    details = out["redriven"]["redrive"]
    assert details["reused_steps"] == 3 and details["retried_step_sequence"] == 4
    # The side effect's recorded value is reused, not evaluated again.
    assert out["result"] == "reserved book, tok-1, charged book"
    assert out["effects"] == 1
    assert out["calls_after"] == {"reserve": 1, "charge": 2}
    new = await history(sdk_server, out["workflow_id"], out["redriven"]["run_id"])
    reused = [e["event_type"] for e in new if e["payload"].get("reused_from_run_id")]
    assert "TimerFired" in reused and "SideEffectRecorded" in reused
