"""Signal, cancel and terminate over real HTTP, and what workers holding leases then see.

Contract: control-plane.md §2.4, §5.6, §5.7, §5.10; history-events.md §4.1, §4.4;
worker-plane.md §7.4, §7.5, §9, §9.3.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import pytest
import trio

from dwtrio.manifest import OPERATIONS
from dwtrio.payloads import decode

from conftest import CP, WP, RunningServer, StartServer

TOKEN = "t"
Q = "cmdq"
ARGS = {"codec": "avro", "blob": "wwHioz3/VYAiNwwCCgp3b3JsZAA="}  # ["world"]
EMPTY_LIST_BLOB = "wwHioz3/VYAiNwwA"
COMMAND_KEYS = {
    "outcome",
    "workflow_id",
    "run_id",
    "requested_run_id",
    "resolved_run_id",
    "command_id",
    "command_sequence",
    "target_scope",
    "workflow_type",
    "command_status",
    "command_source",
    "reason",
    "rejection_reason",
    "validation_errors",
    "request_id",
    "retained",
    "control_plane",
}


def envelope_of(body: dict[str, Any], operation: str, status: int) -> dict[str, Any]:
    """The control_plane envelope, with the fields the dw CLI insists on."""
    cp = body["control_plane"]
    assert cp["operation"] == operation
    assert cp["workflow_id"] == body["workflow_id"]
    if status < 300:
        for field in OPERATIONS[operation].success_fields:
            assert field in cp, (field, cp)
    assert "signal" not in body  # a legacy key the CLI refuses
    return cp  # type: ignore[no-any-return]


@attrs.define
class Client:
    cc: httpx.AsyncClient
    wc: httpx.AsyncClient

    async def start(self, workflow_id: str) -> str:
        r = await self.cc.post(
            "/api/workflows",
            json={
                "workflow_id": workflow_id,
                "workflow_type": "greeter",
                "task_queue": Q,
                "input": ARGS,
            },
        )
        assert r.status_code == 201, r.text
        return str(r.json()["run_id"])

    async def command(
        self, path: str, body: dict[str, Any] | None = None, status: int = 200
    ) -> dict[str, Any]:
        r = await self.cc.post(path, json={} if body is None else body)
        assert r.status_code == status, r.text
        return r.json()  # type: ignore[no-any-return]

    async def worker(self, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        r = await self.wc.post(path, json=body)
        assert r.status_code == status, r.text
        return r.json()  # type: ignore[no-any-return]

    async def poll(self, kind: str, timeout: int = 2) -> dict[str, Any] | None:
        body = await self.worker(
            f"/api/worker/{kind}-tasks/poll",
            {"worker_id": "w1", "task_queue": Q, "timeout_seconds": timeout},
        )
        return body["task"]  # type: ignore[no-any-return]

    async def wf_task(self) -> dict[str, Any]:
        task = await self.poll("workflow")
        assert task is not None
        return task

    async def complete_wf(
        self, task: dict[str, Any], commands: list[dict[str, Any]], status: int = 200
    ) -> dict[str, Any]:
        return await self.worker(
            f"/api/worker/workflow-tasks/{task['task_id']}/complete",
            {
                "lease_owner": task["lease_owner"],
                "workflow_task_attempt": task["workflow_task_attempt"],
                "commands": commands,
            },
            status,
        )

    async def settle(self, task: dict[str, Any]) -> dict[str, Any]:
        """End a task with no commands, as the SDK does when replay is blocked."""
        return await self.worker(
            f"/api/worker/workflow-tasks/{task['task_id']}/fail",
            {
                "lease_owner": task["lease_owner"],
                "workflow_task_attempt": task["workflow_task_attempt"],
                "failure": {"message": "waiting", "type": "WorkflowTaskWaitingForHistory"},
            },
        )

    async def act_call(
        self, task: dict[str, Any], action: str, status: int = 200, **fields: Any
    ) -> dict[str, Any]:
        return await self.worker(
            f"/api/worker/activity-tasks/{task['task_id']}/{action}",
            {
                "activity_attempt_id": task["activity_attempt_id"],
                "lease_owner": task["lease_owner"],
                **fields,
            },
            status,
        )

    async def history(self, workflow_id: str, run_id: str) -> list[dict[str, Any]]:
        r = await self.cc.get(
            f"/api/workflows/{workflow_id}/runs/{run_id}/history", params={"page_size": 1000}
        )
        assert r.status_code == 200, r.text
        return r.json()["events"]  # type: ignore[no-any-return]

    async def describe(self, workflow_id: str) -> dict[str, Any]:
        r = await self.cc.get(f"/api/workflows/{workflow_id}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def waiting(self, workflow_id: str) -> str:
        """Start a workflow and settle its first task with no commands: no task is open."""
        run_id = await self.start(workflow_id)
        await self.settle(await self.wf_task())
        return run_id


@pytest.fixture
async def c(start_server: StartServer) -> AsyncIterator[Client]:
    server: RunningServer = await start_server(admin_token=None, auth_token=TOKEN)
    async with server.client(TOKEN, **CP) as cc, server.client(TOKEN, **WP) as wc:
        yield Client(cc, wc)


# --- signal --------------------------------------------------------------------------------
async def test_signal_is_recorded_and_wakes_the_run(c: Client) -> None:
    run_id = await c.waiting("sig-1")
    assert await c.poll("workflow", timeout=0) is None
    body = await c.command(
        "/api/workflows/sig-1/signal/approve", {"input": [7, "x"], "request_id": "k1"}, 202
    )
    assert set(body) == COMMAND_KEYS | {"signal_name"}
    assert body["outcome"] == "signal_received"
    assert body["command_status"] == "accepted" and body["command_source"] == "control_plane"
    assert body["run_id"] == body["resolved_run_id"] == run_id
    assert body["requested_run_id"] is None and body["target_scope"] == "instance"
    assert body["signal_name"] == "approve" and body["workflow_type"] == "greeter"
    assert body["reason"] is None and body["rejection_reason"] is None
    assert body["request_id"] == "k1" and body["retained"] is False
    assert body["command_sequence"] == 2  # the start was command 1
    cp = envelope_of(body, "signal", 202)
    assert cp["operation_name"] == "approve" and cp["operation_name_field"] == "signal_name"
    assert cp["outcome"] == "signal_received" and cp["command_id"] == body["command_id"]

    task = await c.wf_task()  # the signal created a workflow task
    assert task["run_id"] == run_id
    event = task["history_events"][-1]
    assert event["event_type"] == "SignalReceived"
    assert event["workflow_command_id"] == body["command_id"]
    payload = event["payload"]
    assert payload["signal_name"] == "approve" and payload["payload_codec"] == "avro"
    assert decode(payload["arguments"]["blob"]) == [7, "x"]
    assert payload["workflow_command_id"] == body["command_id"]
    assert payload["workflow_instance_id"] == "sig-1" and payload["workflow_run_id"] == run_id
    assert "workflow_sequence" not in payload  # no open condition wait


async def test_signal_without_input_has_empty_arguments(c: Client) -> None:
    await c.waiting("sig-empty")
    await c.command("/api/workflows/sig-empty/signal/go", {}, 202)
    task = await c.wf_task()
    payload = task["history_events"][-1]["payload"]
    assert payload["arguments"] == {"codec": "avro", "blob": EMPTY_LIST_BLOB}


async def test_signal_names_may_contain_slashes(c: Client) -> None:
    await c.waiting("sig-slash")
    body = await c.command("/api/workflows/sig-slash/signal/a%2Fb", {}, 202)
    assert body["signal_name"] == "a/b"
    assert body["control_plane"]["operation_name"] == "a/b"


async def test_signal_while_a_task_is_leased_defers_the_wake(c: Client) -> None:
    run_id = await c.start("sig-2")
    task = await c.wf_task()
    await c.command("/api/workflows/sig-2/signal/go", {"input": ARGS}, 202)
    # The signal is in history at once, but no second task while this one is leased.
    types = [e["event_type"] for e in await c.history("sig-2", run_id)]
    assert types[-1] == "SignalReceived"
    assert await c.poll("workflow", timeout=0) is None
    done = await c.settle(task)
    assert done["next_task_id"]
    follow_up = await c.wf_task()
    assert follow_up["task_id"] == done["next_task_id"]
    assert follow_up["history_events"][-1]["event_type"] == "SignalReceived"


async def test_a_repeated_request_id_returns_the_retained_receipt(c: Client) -> None:
    run_id = await c.waiting("sig-dup")
    body = {"input": [1], "request_id": "sdk-python-signal-abc"}
    first = await c.command("/api/workflows/sig-dup/signal/go", body, 202)
    again = await c.command("/api/workflows/sig-dup/signal/go", body, 202)
    assert again["command_id"] == first["command_id"]
    assert again["command_sequence"] == first["command_sequence"]
    assert again["retained"] is True and again["intent_verified"] is True
    types = [e["event_type"] for e in await c.history("sig-dup", run_id)]
    assert types.count("SignalReceived") == 1

    for changed in ({"input": [2]}, {"input": [1], "_name": "other"}):
        name = changed.pop("_name", "go")
        conflict = await c.command(
            f"/api/workflows/sig-dup/signal/{name}", {**body, **changed}, 409
        )
        assert conflict["reason"] == "request_id_conflict"
        assert conflict["request_id"] == body["request_id"]
        assert conflict["retained_command_id"] == first["command_id"]
        assert conflict["retained_command_type"] == "signal"
        assert conflict["retained_outcome"] == "signal_received"
        assert conflict["conflict"] == (["arguments"] if name == "go" else ["signal_name"])
        assert conflict["control_plane"]["operation"] == "signal"
    # The key is per command type: a cancel may reuse it.
    await c.command("/api/workflows/sig-dup/cancel", {"request_id": body["request_id"]})


async def test_concurrent_retries_of_one_request_id_record_one_signal(c: Client) -> None:
    run_id = await c.waiting("sig-race")
    receipts: list[dict[str, Any]] = []

    async def send() -> None:
        body = {"input": [1], "request_id": "same-key"}
        receipts.append(await c.command("/api/workflows/sig-race/signal/go", body, 202))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(send)
    assert len({r["command_id"] for r in receipts}) == 1
    assert sorted(r["retained"] for r in receipts) == [False, True, True, True, True]
    types = [e["event_type"] for e in await c.history("sig-race", run_id)]
    assert types.count("SignalReceived") == 1


async def test_signal_to_a_closed_run_is_rejected(c: Client) -> None:
    run_id = await c.waiting("sig-closed")
    await c.command("/api/workflows/sig-closed/terminate")
    body = await c.command(
        "/api/workflows/sig-closed/signal/go", {"request_id": "late"}, status=409
    )
    assert body["reason"] == "run_not_active" and body["rejection_reason"] == "run_not_active"
    assert body["outcome"] == "rejected_not_active" and body["command_status"] == "rejected"
    assert body["message"] and body["run_id"] == run_id
    assert envelope_of(body, "signal", 409)["reason"] == "run_not_active"
    again = await c.command("/api/workflows/sig-closed/signal/go", {"request_id": "late"}, 409)
    assert again["command_id"] == body["command_id"] and again["retained"] is True
    types = [e["event_type"] for e in await c.history("sig-closed", run_id)]
    assert "SignalReceived" not in types


async def test_signal_to_an_unknown_workflow_is_404(c: Client) -> None:
    for path in (
        "/api/workflows/nope/signal/go",
        "/api/workflows/nope/runs/r1/signal/go",
        "/api/workflows/nope/cancel",
        "/api/workflows/nope/terminate",
    ):
        body = await c.command(path, {}, 404)
        assert body["reason"] == "instance_not_found" and body["workflow_id"] == "nope"
        assert "control_plane" in body


async def test_another_namespace_never_sees_the_workflow(c: Client) -> None:
    await c.waiting("sig-ns")
    r = await c.cc.post("/api/namespaces", json={"name": "other"})
    assert r.status_code == 201, r.text
    for path in ("signal/go", "cancel", "terminate"):
        r = await c.cc.post(
            f"/api/workflows/sig-ns/{path}", json={}, headers={"X-Namespace": "other"}
        )
        assert r.status_code == 404 and r.json()["reason"] == "instance_not_found"
    assert (await c.describe("sig-ns"))["status"] == "waiting"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/workflows/sig-v/signal/go", {"input": 5}, "input"),
        ("/api/workflows/sig-v/signal/go", {"input": {"codec": "avro", "blob": "!"}}, "input"),
        ("/api/workflows/sig-v/signal/go", {"request_id": "r" * 256}, "request_id"),
        ("/api/workflows/sig-v/signal/go", {"request_id": 12}, "request_id"),
        ("/api/workflows/sig-v/signal/" + "n" * 257, {}, "signal_name"),
        ("/api/workflows/sig-v/signal/bad%01name", {}, "signal_name"),
        ("/api/workflows/sig-v/cancel", {"reason": 5}, "reason"),
        ("/api/workflows/sig-v/terminate", {"reason": "x" * 1001}, "reason"),
    ],
)
async def test_validation(c: Client, path: str, body: dict[str, Any], field: str) -> None:
    await c.waiting("sig-v")
    out = await c.command(path, body, 422)
    assert out["reason"] == "validation_failed"
    assert any(key == field or key.startswith(f"{field}.") for key in out["errors"]), out
    assert "control_plane" in out


async def test_run_targeted_signal(c: Client) -> None:
    run_id = await c.waiting("sig-run")
    body = await c.command(f"/api/workflows/sig-run/runs/{run_id}/signal/go", {}, 202)
    assert body["target_scope"] == "run" and body["requested_run_id"] == run_id
    assert body["run_id"] == run_id and body["control_plane"]["run_id"] == run_id
    other = await c.command("/api/workflows/sig-run/runs/01old/signal/go", {}, 409)
    assert other["reason"] == "historical_run_command_rejected"
    assert other["target_scope"] == "run" and other["run_id"] == "01old"
    assert other["control_plane"]["run_id"] == "01old"


# --- cancel and terminate --------------------------------------------------------------------
async def test_cancel_closes_the_run_and_fences_its_workflow_task(c: Client) -> None:
    run_id = await c.start("can-1")
    task = await c.wf_task()
    body = await c.command("/api/workflows/can-1/cancel", {"reason": "customer asked"})
    assert set(body) == COMMAND_KEYS
    assert body["outcome"] == "cancelled" and body["reason"] == "customer asked"
    assert body["command_status"] == "accepted" and body["run_id"] == run_id
    envelope_of(body, "cancel", 200)

    described = await c.describe("can-1")
    assert described["status"] == "cancelled" and described["closed_reason"] == "cancelled"
    assert described["is_terminal"] is True and described["closed_at"]
    events = await c.history("can-1", run_id)
    assert [e["event_type"] for e in events[-2:]] == ["CancelRequested", "WorkflowCancelled"]
    closing = events[-1]["payload"]
    assert closing["reason"] == "customer asked" and closing["closed_reason"] == "cancelled"
    assert closing["workflow_command_id"] == body["command_id"]

    # The worker still holding the task learns the run closed.
    refused = await c.complete_wf(task, [{"type": "complete_workflow"}], status=409)
    assert refused["reason"] == "run_closed" and refused["run_status"] == "cancelled"
    assert refused["can_continue"] is False and refused["task_id"] == task["task_id"]
    lease = {"lease_owner": task["lease_owner"], "workflow_task_attempt": 1}
    hb = await c.worker(f"/api/worker/workflow-tasks/{task['task_id']}/heartbeat", lease, 409)
    assert hb["reason"] == "run_closed" and hb["renewed"] is False
    failure = {"message": "replay failed", "type": "NonDeterministicReplayError"}
    failed = await c.worker(
        f"/api/worker/workflow-tasks/{task['task_id']}/fail", {**lease, "failure": failure}, 409
    )
    assert failed["reason"] == "run_closed"
    assert await c.poll("workflow", timeout=0) is None

    again = await c.command("/api/workflows/can-1/cancel", {}, 409)
    assert again["outcome"] == "rejected_not_active" and again["reason"] == "run_not_active"
    envelope_of(again, "cancel", 409)


async def test_cancel_without_reason_leaves_the_reason_out_of_history(c: Client) -> None:
    run_id = await c.waiting("can-2")
    body = await c.command("/api/workflows/can-2/cancel", {"reason": None})
    assert body["reason"] is None
    events = await c.history("can-2", run_id)
    assert events[-1]["event_type"] == "WorkflowCancelled"
    assert "reason" not in events[-1]["payload"]
    assert "reason" not in events[-2]["payload"]


async def test_terminate_cancels_activities_and_answers_their_worker(c: Client) -> None:
    run_id = await c.start("term-1")
    await c.complete_wf(
        await c.wf_task(),
        [{"type": "schedule_activity", "activity_type": "greet", "queue": Q, "arguments": ARGS}],
    )
    act = await c.poll("activity")
    assert act is not None
    hb = await c.act_call(act, "heartbeat")
    assert hb["cancel_requested"] is False and hb["can_continue"] is True

    body = await c.command("/api/workflows/term-1/terminate", {"request_id": "t-1"})
    assert body["outcome"] == "terminated" and body["reason"] is None
    envelope_of(body, "terminate", 200)
    described = await c.describe("term-1")
    assert described["status"] == "terminated" and described["closed_reason"] == "terminated"
    events = await c.history("term-1", run_id)
    assert [e["event_type"] for e in events[-2:]] == ["TerminateRequested", "WorkflowTerminated"]
    assert "reason" not in events[-1]["payload"]

    hb = await c.act_call(act, "heartbeat")
    assert hb["cancel_requested"] is True and hb["can_continue"] is False
    assert hb["reason"] == "run_closed" and hb["run_status"] == "terminated"
    failure = {"message": "activity cancelled", "type": "ActivityCancelled", "non_retryable": True}
    refused = await c.act_call(act, "fail", 409, failure=failure)
    assert refused["reason"] == "run_closed" and refused["cancel_requested"] is True
    refused = await c.act_call(act, "complete", 409, result=ARGS)
    assert refused["reason"] == "run_closed"
    assert await c.poll("activity", timeout=0) is None
    assert await c.poll("workflow", timeout=0) is None
    # The SDK-style retry of the same terminate gets the original receipt, not a 409.
    again = await c.command("/api/workflows/term-1/terminate", {"request_id": "t-1"})
    assert again["command_id"] == body["command_id"] and again["retained"] is True
    conflict = await c.command(
        "/api/workflows/term-1/terminate", {"request_id": "t-1", "reason": "x"}, 409
    )
    assert conflict["reason"] == "request_id_conflict" and conflict["conflict"] == ["reason"]


async def test_run_targeted_terminate_and_cancel(c: Client) -> None:
    run_id = await c.waiting("term-run")
    other = await c.command("/api/workflows/term-run/runs/01old/cancel", {}, 409)
    assert other["reason"] == "historical_run_command_rejected"
    body = await c.command(f"/api/workflows/term-run/runs/{run_id}/terminate", {"reason": "r"})
    assert body["outcome"] == "terminated" and body["target_scope"] == "run"
    assert body["requested_run_id"] == run_id and body["reason"] == "r"
    assert (await c.describe("term-run"))["status"] == "terminated"
