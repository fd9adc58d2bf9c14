"""SDK 2.12.0 list_workers / describe_worker / deregister_worker / delete_namespace against
dwtrio (driver in a subprocess): what the SDK's own parsers make of the answers.

Contract: control-plane.md §10 (workers), §14 (delete_namespace's shape), §13
(how the SDK raises each refusal).
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import run_driver, start_sdk_server

DRIVER = "roster_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


async def test_a_running_worker_is_on_the_roster_with_its_build_id(
    sdk_server: RunningServer,
) -> None:
    out = await run_driver(sdk_server, DRIVER, "workers")
    assert out["result"] == "hi"
    worker_id, queue = out["worker_id"], out["task_queue"]
    listed = out["list"]
    assert listed["namespace"] == "default" and listed["stale_after_seconds"] == 60
    [me] = [w for w in listed["workers"] if w["worker_id"] == worker_id]
    assert me["build_id"] == "build-7"
    assert me["task_queue"] == queue and me["namespace"] == "default"
    assert me["runtime"] == "python" and me["sdk_version"].startswith("durable-workflow-python/")
    assert me["status"] == "active"
    assert me["supported_workflow_types"] == ["roster-echo"]
    assert me["supported_activity_types"] == []
    assert me["max_concurrent_workflow_tasks"] == 10
    assert me["max_concurrent_activity_tasks"] == 10
    assert me["last_heartbeat_at"] and me["registered_at"]
    assert me["heartbeat_interval_seconds"] == 15
    assert isinstance(me["task_slots"], dict) and isinstance(me["process_metrics"], dict)
    assert me["updated_at"] is None  # the list leaves it out; describe has it
    assert out["by_queue"] == [worker_id]
    assert worker_id not in out["stale"]
    described = out["describe"]
    assert described["updated_at"]
    assert {k: v for k, v in described.items() if k != "updated_at"} == {
        k: v for k, v in me.items() if k not in ("updated_at", "last_heartbeat_at")
    } | {"last_heartbeat_at": described["last_heartbeat_at"]}
    # The retired registration, then removed by deregister_worker.
    retired = out["retired_id"]
    assert retired in out["retired_listed"]
    assert out["deregistered"] == {
        "worker_id": retired,
        "outcome": "deregistered",
        "recovered_workflow_task_count": 0,
        "recovered_activity_task_count": 0,
    }
    assert out["after_deregister"] == [worker_id]
    for key in ("describe_unknown", "deregister_unknown"):
        err: dict[str, Any] = out[key]
        assert (err["type"], err["status"], err["reason"]) == (
            "ServerError",
            404,
            "worker_not_found",
        )
    assert out["after_stop"] == []


async def test_delete_namespace(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "namespaces")
    name = out["name"]
    refused = out["refused"]
    assert (refused["type"], refused["status"], refused["reason"]) == (
        "ServerError",
        409,
        "namespace_has_open_runs",
    )
    assert refused["body"]["open_run_count"] == 1
    deleted = out["deleted"]
    assert deleted["name"] == name and deleted["status"] == "deleted"
    assert deleted["description"] == "to be deleted" and deleted["retention_days"] == 30
    assert deleted["deleted"] == {
        "workflow_runs": 1,
        "workflow_schedules": 0,
        "search_attribute_definitions": 0,
        "workflow_worker_registrations": 0,
    }
    assert deleted["created_at"] and deleted["updated_at"]
    for key in ("describe_after", "delete_again"):
        assert out[key]["type"] == "NamespaceNotFound", out[key]
    protected = out["delete_default"]
    assert (protected["type"], protected["status"], protected["reason"]) == (
        "ServerError",
        409,
        "default_namespace_protected",
    )
    assert name not in out["listed"] and "default" in out["listed"]
