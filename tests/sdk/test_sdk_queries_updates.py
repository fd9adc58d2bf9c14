"""Queries and updates through the official SDK 2.12.0 (worker and client in a subprocess)."""

from __future__ import annotations

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import history, history_types, run_driver, start_sdk_server

DRIVER = "queries_updates_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server, query_task_timeout_s=10)


async def test_query_reads_live_workflow_state(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "query")
    assert out["held"] == {"count": 6, "stage": "holding"}
    assert out["held_query_name"] == "state"
    assert out["times"] == 18
    assert out["unknown"]["raised"] == "QueryFailed"
    assert out["unknown"]["reason"] == "rejected_unknown_query"
    assert out["final"] == {"count": 6}
    types = await history_types(sdk_server, out["workflow_id"], out["run_id"])
    assert not [t for t in types if "Query" in t]  # queries never write history
    assert types[-1] == "WorkflowCompleted"


async def test_updates_return_values_and_a_failing_update_raises(
    sdk_server: RunningServer,
) -> None:
    out = await run_driver(sdk_server, DRIVER, "update")
    added = out["added"]
    assert added["result"] == 16 and added["update_status"] == "completed"
    assert added["outcome"] == "update_completed" and added["update_id"]
    assert out["failed"]["raised"] == "UpdateFailed"
    assert "negative not allowed: -1" in out["failed"]["message"]
    assert out["accepted"]["update_status"] == "accepted" and out["accepted"]["update_id"]
    # The failed update did not fail the run; the others were applied on replay.
    assert out["after"] == {"count": 116, "stage": "holding"}
    assert out["final"] == {"count": 116}
    types = await history_types(sdk_server, out["workflow_id"], out["run_id"])
    assert types.count("UpdateAccepted") == 3
    assert types.count("UpdateApplied") == 2
    assert types.count("UpdateCompleted") == 3
    assert "WorkflowFailed" not in types and types[-1] == "WorkflowCompleted"


async def test_updates_satisfy_a_condition_wait(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "update-condition")
    assert out["results"] == [15, 25]
    assert out["final"] == {"count": 25}
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    types = [e["event_type"] for e in events]
    assert types.count("UpdateApplied") == 2
    assert "ConditionWaitSatisfied" in types and types[-1] == "WorkflowCompleted"
    # Each update was applied inside the open wait's window and carries its sequence.
    opened = {e["payload"]["sequence"] for e in events if e["event_type"] == "ConditionWaitOpened"}
    applied = [e["payload"].get("sequence") for e in events if e["event_type"] == "UpdateApplied"]
    assert applied and all(seq in opened for seq in applied)
