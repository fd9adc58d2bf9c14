"""SDK 2.12.0 signals, cancels and terminates workflows on dwtrio (worker and client in a subprocess)."""

from __future__ import annotations

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import history, run_driver, start_sdk_server

DRIVER = "workflow_commands_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


async def test_signals_sent_before_the_worker_reach_the_workflow(
    sdk_server: RunningServer,
) -> None:
    out = await run_driver(sdk_server, DRIVER, "signal-before-worker")
    assert out["result"] == [["alice", 1], ["bob", 2]]
    assert out["first"]["outcome"] == "signal_received" and out["first"]["retained"] is False
    # The SDK's retried key got the first receipt back, not a second signal.
    assert out["retried"]["retained"] is True
    assert out["retried"]["command_id"] == out["first"]["command_id"]
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    types = [e["event_type"] for e in events]
    assert types.count("SignalReceived") == 2
    assert types[-1] == "WorkflowCompleted"


async def test_a_waiting_workflow_returns_the_signal_payload(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "signal-while-waiting")
    assert out["result"] == [["carol", 3]]
    assert out["receipt"]["outcome"] == "signal_received"
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    types = [e["event_type"] for e in events]
    opened = types.index("ConditionWaitOpened")
    received = types.index("SignalReceived")
    assert opened < received < types.index("WorkflowCompleted")
    # The signal names the wait it arrived during (history-events.md §4.4 hint).
    assert events[received]["payload"]["workflow_sequence"] == events[opened]["payload"]["sequence"]


async def test_a_signal_during_an_activity_is_seen_after_it(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "signal-from-activity")
    assert out["result"] == {"sent": "sent", "approvals": [["from-activity", 2]]}
    types = [e["event_type"] for e in await history(sdk_server, out["workflow_id"], out["run_id"])]
    assert types.index("SignalReceived") < types.index("ActivityCompleted")
    assert types.count("ActivityScheduled") == 1  # the signal's task did not reschedule it
    assert types[-1] == "WorkflowCompleted"


async def test_cancel_reaches_the_client_and_the_heartbeating_activity(
    sdk_server: RunningServer,
) -> None:
    out = await run_driver(sdk_server, DRIVER, "cancel")
    assert out["activity"] == "cancelled"
    assert out["error"] == {"type": "WorkflowCancelled", "message": "customer asked"}
    assert out["status"] == "cancelled"
    assert out["late_signal"] == {"type": "SignalFailed", "reason": "run_not_active"}
    assert out["missing_signal"] == "WorkflowNotFound"
    types = [e["event_type"] for e in await history(sdk_server, out["workflow_id"], out["run_id"])]
    assert types[-2:] == ["CancelRequested", "WorkflowCancelled"]


async def test_terminate_reaches_the_client_and_the_heartbeating_activity(
    sdk_server: RunningServer,
) -> None:
    out = await run_driver(sdk_server, DRIVER, "terminate")
    assert out["activity"] == "cancelled"
    assert out["error"] == {"type": "WorkflowTerminated", "message": "workflow was terminated"}
    assert out["status"] == "terminated"
    assert out["late_signal"] == {"type": "SignalFailed", "reason": "run_not_active"}
    types = [e["event_type"] for e in await history(sdk_server, out["workflow_id"], out["run_id"])]
    assert types[-2:] == ["TerminateRequested", "WorkflowTerminated"]
