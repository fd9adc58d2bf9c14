"""SDK 2.12.0 durable sleeps and condition-wait timeouts against dwtrio (driver in a subprocess).

The SDK's replayer is the judge of the event payloads: a wrong ``sequence``,
``delay_seconds``, ``timer_kind`` or ``condition_wait_id`` fails replay.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import history, run_driver, start_sdk_server

DRIVER = "timers_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


def recorded(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


def only(events: list[dict[str, Any]], event_type: str) -> dict[str, Any]:
    [event] = [e for e in events if e["event_type"] == event_type]
    return event


async def test_sleep_then_activity(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "sleep")
    assert out["result"] == {"echoed": "hi"}
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    assert [e["event_type"] for e in events] == [
        "StartAccepted",
        "WorkflowStarted",
        "TimerScheduled",
        "TimerFired",
        "ActivityScheduled",
        "ActivityStarted",
        "ActivityCompleted",
        "WorkflowCompleted",
    ]
    scheduled, fired = only(events, "TimerScheduled"), only(events, "TimerFired")
    assert (recorded(fired) - recorded(scheduled)).total_seconds() >= 1.0
    assert scheduled["payload"]["sequence"] == fired["payload"]["sequence"] == 1
    assert only(events, "ActivityScheduled")["payload"]["sequence"] == 2


async def test_sleep_in_a_parallel_group(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "parallel-sleep")
    assert out["result"] == {"first": "first", "both": [None, "second"]}
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    types = [e["event_type"] for e in events]
    assert types.count("TimerScheduled") == 1 and types.count("ActivityScheduled") == 2
    timer = only(events, "TimerFired")["payload"]
    assert timer["sequence"] == 2 and timer["parallel_group_index"] == 0
    assert timer["parallel_group_base_sequence"] == 2 and timer["parallel_group_size"] == 2


async def test_condition_waits_time_out(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "condition-timeouts")
    assert out["result"] == {"already": True, "first": False, "second": False}
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    assert [e["event_type"] for e in events] == [
        "StartAccepted",
        "WorkflowStarted",
        "ConditionWaitOpened",
        "TimerScheduled",
        "TimerFired",
        "ConditionWaitOpened",
        "TimerScheduled",
        "TimerFired",
        "TimerScheduled",
        "TimerFired",
        "WorkflowCompleted",
    ]
    first, second = [e for e in events if e["event_type"] == "ConditionWaitOpened"]
    assert first["payload"]["condition_key"] == "first"
    assert "condition_key" not in second["payload"]
    assert second["payload"]["timeout_seconds"] == 1  # 0.2 s rounds up
    fired = [e for e in events if e["event_type"] == "TimerFired"]
    assert [f["payload"].get("timer_kind") for f in fired] == [
        "condition_timeout",
        "condition_timeout",
        None,
    ]
    assert [f["payload"]["sequence"] for f in fired] == [1, 2, 3]
    opened_at = recorded(first)
    assert (recorded(fired[0]) - opened_at).total_seconds() >= 1.0


async def test_signals_satisfy_a_wait_and_cancel_its_timeout(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "signal-satisfies")
    assert out["result"] == {"ok": True, "late": False, "items": ["a", "b"]}
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    assert [e["event_type"] for e in events] == [
        "StartAccepted",
        "WorkflowStarted",
        "ConditionWaitOpened",
        "TimerScheduled",
        "SignalReceived",
        "ConditionWaitSatisfied",  # the woken task closes the wait; the SDK re-opens it
        "TimerCancelled",
        "ConditionWaitOpened",
        "TimerScheduled",
        "SignalReceived",
        "ConditionWaitSatisfied",
        "TimerCancelled",
        "ConditionWaitOpened",
        "TimerScheduled",
        "TimerFired",
        "WorkflowCompleted",
    ]
    opened = [e["payload"] for e in events if e["event_type"] == "ConditionWaitOpened"]
    assert [o["sequence"] for o in opened] == [1, 2, 3]
    assert [o["condition_key"] for o in opened] == ["two-items", "two-items", "never"]
    satisfied = [e["payload"] for e in events if e["event_type"] == "ConditionWaitSatisfied"]
    cancelled = [e["payload"] for e in events if e["event_type"] == "TimerCancelled"]
    for wait, sat, cancel in zip(opened, satisfied, cancelled, strict=False):
        assert sat["condition_wait_id"] == cancel["condition_wait_id"] == wait["condition_wait_id"]
        assert sat["sequence"] == cancel["sequence"] == wait["sequence"]
    signals = [e["payload"] for e in events if e["event_type"] == "SignalReceived"]
    assert [s.get("workflow_sequence") for s in signals] == [1, 2]
    fired = only(events, "TimerFired")["payload"]
    assert fired["condition_wait_id"] == opened[2]["condition_wait_id"]
