"""SDK 2.12.0 workers that die, and workers that live through a long activity.

The server keeps the default 300 s activity lease but a 3 s stale window
(advertised heartbeat cadence: 1 s) and repairs every 0.3 s, so a worker killed
mid-activity is noticed within a few seconds, while a live worker keeps an
activity that runs for several stale windows.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import history, run_driver, start_sdk_server

DRIVER = "lost_worker_driver.py"
STALE_AFTER_S = 3

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(
        start_server, worker_stale_after_s=STALE_AFTER_S, task_repair_interval_s=0.3
    )


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in events if e["event_type"] == event_type]


async def test_a_killed_workers_activity_is_retried_within_the_stale_window(
    sdk_server: RunningServer,
) -> None:
    out = await run_driver(sdk_server, DRIVER, "killed-worker")
    assert out["killed_returncode"] == -9
    assert out["result"] == {"attempt": 2, "worker_id": out["rescuer"]}
    # The stale window and a repair tick (plus a worker start), not the 300 s lease.
    assert out["recovered_after_s"] < STALE_AFTER_S + 7, out
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    assert [p["attempt_number"] for p in of_type(events, "ActivityStarted")] == [1, 2]
    [lost] = of_type(events, "ActivityRetryScheduled")
    assert lost["message"].endswith(f"lost (no heartbeat for {STALE_AFTER_S} s)")
    assert lost["timeout_kind"] == "start_to_close"
    assert lost["retry_after_attempt"] == 1
    assert events[-1]["event_type"] == "WorkflowCompleted"


async def test_a_live_worker_keeps_an_activity_longer_than_the_stale_window(
    sdk_server: RunningServer,
) -> None:
    out = await run_driver(sdk_server, DRIVER, "long-activity")
    assert out["heartbeat_interval_s"] == 1.0  # adopted from the server's ack
    assert out["result"] == {"attempt": 1, "worker_id": out["worker_id"]}
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    assert of_type(events, "ActivityRetryScheduled") == []
    assert [p["attempt_number"] for p in of_type(events, "ActivityStarted")] == [1]
    assert events[-1]["event_type"] == "WorkflowCompleted"
