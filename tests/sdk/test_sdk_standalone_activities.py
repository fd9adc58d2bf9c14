"""SDK 2.12.0 standalone activities on dwtrio (``start_activity``, ``describe_activity``,
``list_activities``, ``get_activity_result`` and the handle's ``cancel``), client and an
unmodified SDK worker in a subprocess, asserted on what the SDK parsed and on the host
run's history."""

from __future__ import annotations

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import history, run_driver, start_sdk_server

DRIVER = "standalone_activities_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


async def test_start_activity_returns_the_result(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "result")
    started = out["started"]
    activity_id = started["activity_id"]
    assert activity_id.startswith("sa-add-")
    assert started["workflow_type"] == "dw.standalone_activity"
    assert started["activity_type"] == "sa-add"
    assert started["workflow_run_id"] and started["activity_execution_id"]
    assert out["result"] == {"sum": 5, "attempt": 1}
    assert out["unnamed_result"] == {"sum": 2, "attempt": 1} and out["unnamed_id"]

    d = out["described"]
    assert d["activity_id"] == activity_id and d["workflow_run_id"] == started["workflow_run_id"]
    assert d["activity_execution_id"] == started["activity_execution_id"]
    assert d["workflow_type"] == "dw.standalone_activity" and d["activity_type"] == "sa-add"
    assert d["activity_class"] == "Billing\\AddNumbers" and d["business_key"] == "order-7"
    assert d["status"] == "completed" and d["activity_status"] == "completed"
    assert d["closed_reason"] == "completed" and d["attempt_count"] == 1
    assert d["namespace"] == "default" and d["payload_codec"] == "avro"
    assert d["started_at"] and d["closed_at"] and d["result"] == {"sum": 5, "attempt": 1}

    listed = out["listed"]
    assert activity_id in listed["ids"] and out["unnamed_id"] in listed["ids"]
    assert listed["count"] == len(listed["ids"])
    assert listed["ids"].index(out["unnamed_id"]) < listed["ids"].index(activity_id)  # newest first
    mine = listed["mine"]
    assert mine["status"] == "completed" and mine["activity_class"] == "Billing\\AddNumbers"
    assert mine["workflow_run_id"] == started["workflow_run_id"]
    assert activity_id in out["completed_ids"] and activity_id not in out["running_ids"]
    pages = out["pages"]
    assert len(pages["first"]) == 1 and pages["first_token"]
    assert len(pages["second"]) == 1 and pages["second"] != pages["first"]
    # The host run is a workflow run like any other: listed and described as one.
    assert activity_id in out["workflow_ids"]
    assert out["as_workflow"] == {"status": "completed", "type": "dw.standalone_activity"}

    events = await history(sdk_server, activity_id, started["workflow_run_id"])
    assert [e["event_type"] for e in events] == [
        "StartAccepted",
        "WorkflowStarted",
        "ActivityScheduled",
        "ActivityStarted",
        "ActivityCompleted",
        "WorkflowCompleted",
    ]


async def test_failing_activity_retries_then_fails(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "failure")
    assert out["raised"]["type"] == "WorkflowFailed"
    assert out["activity_id"] in out["raised"]["message"]
    assert out["attempts_seen"] == [1, 2, 3]
    d = out["described"]
    assert d["status"] == "failed" and d["activity_status"] == "failed"
    assert d["closed_reason"] == "failed" and d["attempt_count"] == 3 and d["result"] is None
    events = await history(sdk_server, out["activity_id"], out["run_id"])
    types = [e["event_type"] for e in events]
    assert types.count("ActivityStarted") == 3 and types.count("ActivityRetryScheduled") == 2
    assert types[-2:] == ["ActivityFailed", "WorkflowFailed"]
    failed = events[-1]["payload"]
    assert failed["source_kind"] == "activity_execution"
    assert failed["source_id"] == d["activity_execution_id"]
    assert "gizmo broke on attempt 3" in failed["message"]


async def test_cancel_through_the_handle(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "cancel")
    assert out["running_status"] == "running"
    assert out["raised"]["type"] == "WorkflowCancelled"
    d = out["described"]
    assert d["status"] == "cancelled" and d["closed_reason"] == "cancelled"
    assert d["activity_status"] == "cancelled" and d["result"] is None
    types = [e["event_type"] for e in await history(sdk_server, out["activity_id"], out["run_id"])]
    assert types[:4] == ["StartAccepted", "WorkflowStarted", "ActivityScheduled", "ActivityStarted"]
    assert types[-2:] == ["CancelRequested", "WorkflowCancelled"]


async def test_unknown_and_taken_ids(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "refusals")
    assert out["unknown"] == {"type": "ServerError", "status": 404, "reason": "activity_not_found"}
    assert out["taken"]["type"] == "InvalidArgument"
    assert "already been started" in out["taken"]["errors"]["activity_id"][0]
    # Nobody polls its queue: it waits, and the refused duplicate changed nothing.
    assert out["pending"] == {"status": "running", "activity_status": "pending"}
