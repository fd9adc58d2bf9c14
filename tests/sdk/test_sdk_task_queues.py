"""SDK 2.12.0 list_task_queues / describe_task_queue against dwtrio (driver in a
subprocess): what the SDK's own dataclasses (TaskQueueDescription, TaskQueueAdmission,
TaskQueueTaskAdmission, TaskQueueQueryAdmission) make of the answers.

Contract: control-plane.md §9; schedules-and-admission.md §2.5.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import run_driver, start_sdk_server

DRIVER = "task_queues_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


def backlog(described: dict[str, Any]) -> int:
    return int(described["stats"]["approximate_backlog_count"])


async def test_a_running_worker_and_a_growing_backlog(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "queues")
    assert out["result"] == "hi"
    queue, idle, worker_id = out["task_queue"], out["idle_queue"], out["worker_id"]

    described = out["described"]
    assert (described["name"], described["namespace"]) == (queue, "default")
    [me] = [p for p in described["pollers"] if p["worker_id"] == worker_id]
    assert me["build_id"] == "build-tq"
    assert (me["status"], me["is_stale"]) == ("active", False)
    assert me["runtime"] == "python" and me["sdk_version"].startswith("durable-workflow-python/")
    assert me["supported_workflow_types"] == ["tq-echo"]
    assert me["max_concurrent_workflow_tasks"] == 4
    assert me["last_heartbeat_at"] and me["heartbeat_expires_at"]
    assert described["stats"]["pollers"]["active_count"] >= 1
    assert described["stats"]["pollers"]["stale_after_seconds"] == 60
    assert isinstance(described["current_leases"], list)
    workflow_admission = described["admission"]["workflow_tasks"]
    assert workflow_admission["status"] == "accepting"
    assert workflow_admission["active_worker_count"] == 1
    assert workflow_admission["configured_slot_count"] == 4
    assert workflow_admission["budget_source"] == (
        "worker_registration.max_concurrent_workflow_tasks"
    )
    assert workflow_admission["server_lock_supported"] is True
    assert workflow_admission["server_lock_required"] is False
    assert described["admission"]["activity_tasks"]["active_worker_count"] == 1
    query = described["admission"]["query_tasks"]
    assert (query["status"], query["max_pending_per_queue"]) == ("accepting", 1024)
    assert query["approximate_pending_count"] == 0

    # Nobody polls the idle queue: its backlog only grows.
    assert (backlog(out["idle_3"]), backlog(out["idle_5"])) == (3, 5)
    stats = out["idle_5"]["stats"]
    assert stats["workflow_tasks"] == {
        "ready_count": 5,
        "leased_count": 0,
        "expired_lease_count": 0,
    }
    assert (
        stats["oldest_ready_task"]["task_id"]
        == out["idle_3"]["stats"]["oldest_ready_task"]["task_id"]
    )
    assert stats["approximate_backlog_age"].endswith("s")
    assert out["idle_5"]["pollers"] == []
    assert out["idle_5"]["admission"]["workflow_tasks"]["status"] == "no_active_workers"
    assert out["idle_5"]["admission"]["workflow_tasks"]["ready_count"] == 5

    listed = out["list"]
    assert listed["namespace"] == "default"
    by_name = {q["name"]: q for q in listed["task_queues"]}
    assert {queue, idle} <= set(by_name)
    assert by_name[queue]["pollers"] is None  # the list leaves pollers out
    assert by_name[queue]["admission"]["workflow_tasks"]["active_worker_count"] == 1
    assert backlog(by_name[idle]) == 5

    unknown = out["unknown"]
    assert unknown["pollers"] == [] and unknown["current_leases"] == []
    assert backlog(unknown) == 0 and unknown["stats"]["oldest_ready_task"] is None
    assert unknown["admission"]["workflow_tasks"]["status"] == "no_active_workers"
