"""The official SDK 2.12.0 runs real workflows against dwtrio (worker and client in a subprocess)."""

from __future__ import annotations

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import history_types, run_driver, start_sdk_server

DRIVER = "workflows_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


async def test_readme_greeter(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "greeter")
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
    out = await run_driver(sdk_server, DRIVER, "pipeline")
    assert out["result"] == "value=11"  # (5 * 2) + 1
    types = await history_types(sdk_server, out["workflow_id"], out["run_id"])
    assert types.count("ActivityCompleted") == 3


async def test_parallel_fan_out_fan_in_keeps_order(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "fanout")
    assert out["result"] == {"first": 1, "squares": [0, 1, 4, 9, 16]}
    types = await history_types(sdk_server, out["workflow_id"], out["run_id"])
    assert types.count("ActivityScheduled") == 6  # no member was scheduled twice
    assert types[-1] == "WorkflowCompleted"


async def test_activity_failure_surfaces_as_typed_error(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "catches-activity-failure")
    result = out["result"]
    assert result["caught"] == "ActivityFailed"
    assert "exploded: boom" in result["message"]
    assert result["exception_type"] == "NonRetryableError"
    assert result["non_retryable"] is True
    assert result["activity_type"] == "explode"


async def test_unhandled_activity_failure_fails_the_workflow(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "activity-failure-fails-workflow")
    assert out["error"]["type"] == "WorkflowFailed"
    assert "broken: boom" in out["error"]["message"]
    types = await history_types(sdk_server, out["workflow_id"], out["run_id"])
    assert types[-2:] == ["ActivityFailed", "WorkflowFailed"]


async def test_workflow_that_raises_fails(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "raises")
    assert out["error"]["type"] == "WorkflowFailed"
    assert "workflow exploded: now" in out["error"]["message"]
    assert out["error"]["exception_class"] and "ValueError" in out["error"]["exception_class"]


async def test_two_workers_share_a_queue(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "two-workers")
    assert out["results"] == [f"value={i * 2 + 1}" for i in range(20)]
    assert len(set(out["worker_ids"])) == 2


async def test_duplicate_start_raises_workflow_already_started(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "duplicate")
    assert out["raised"] == "WorkflowAlreadyStarted"
