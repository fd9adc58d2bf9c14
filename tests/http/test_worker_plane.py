"""The worker plane over real HTTP: registration, long polls, fencing, commands, wakes, activities.

Contract: worker-plane.md §1-§9, §12-§13; commands.md §1-§3, §6;
history-events.md §2, §5. Every worker response (success and error) must carry
``protocol_version``, ``server_capabilities`` and the protocol header; every
error a stable ``reason``.

These tests use real time (long polls, leases, backoffs): timeouts are kept
to a few seconds and elapsed times are measured with ``trio.current_time()``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import pytest
import trio

from dwtrio.engine.outcome import Verdict
from dwtrio.engine.workflows import StartCommand, start_workflow
from dwtrio.payloads import value_blob
from dwtrio.store.pool import Conn, connect_once

from conftest import WP, StartServer
from http_clients import Clients

TOKEN = "t"
Q = "wq"
PROTOCOL = "1.20"
ARGS = {"codec": "avro", "blob": "wwHioz3/VYAiNwwCCgp3b3JsZAA="}  # ["world"]
WAITING = "WorkflowTaskWaitingForHistory"
POLL_WF = "/api/worker/workflow-tasks/poll"
POLL_ACT = "/api/worker/activity-tasks/poll"
ENVELOPE_KEYS = ("protocol_version", "server_capabilities")


def wbody(r: httpx.Response, status: int, reason: str | None = None) -> dict[str, Any]:
    """A worker-plane response: status, protocol header and body fields, error reason."""
    assert r.status_code == status, r.text
    assert r.headers["X-Durable-Workflow-Protocol-Version"] == PROTOCOL
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["protocol_version"] == PROTOCOL, body
    caps = body["server_capabilities"]
    assert isinstance(caps, dict) and caps["workflow_task_poll_request_idempotency"] is True
    if reason is not None:
        assert body["reason"] == reason, body
        assert isinstance(body["message"], str) and body["message"]
        assert body["error"] == body["message"]
    elif status < 400:
        assert "error" not in body, body
    return body


def strip(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ENVELOPE_KEYS}


def activity_cmd(activity_type: str = "greet", **extra: Any) -> dict[str, Any]:
    return {
        "type": "schedule_activity",
        "activity_type": activity_type,
        "queue": Q,
        "arguments": ARGS,
        **extra,
    }


def parallel_fields(index: int, size: int = 3, base: int = 1) -> dict[str, Any]:
    entry = {
        "parallel_group_id": f"parallel-activities:{base}:{size}",
        "parallel_group_kind": "activity",
        "parallel_group_base_sequence": base,
        "parallel_group_size": size,
        "parallel_group_index": index,
    }
    return {**entry, "parallel_group_path": [dict(entry)]}


@attrs.define
class Harness(Clients):
    """Every worker-plane call, with the status and reason each test expects."""

    async def start(
        self,
        workflow_id: str,
        *,
        workflow_type: str = "greeter",
        task_queue: str = Q,
        input: list[Any] | None = None,
    ) -> dict[str, Any]:
        return await self.start_workflow(
            workflow_id, workflow_type, task_queue, ["world"] if input is None else input
        )

    async def post(
        self, path: str, body: dict[str, Any], status: int = 200, reason: str | None = None
    ) -> dict[str, Any]:
        return wbody(await self.wc.post(path, json=body), status, reason)

    async def poll(
        self,
        path: str,
        worker: str,
        timeout: int,
        queue: str,
        status: int = 200,
        reason: str | None = None,
        **extra: Any,
    ) -> dict[str, Any] | None:
        body = {"worker_id": worker, "task_queue": queue, "timeout_seconds": timeout, **extra}
        out = await self.post(path, body, status, reason)
        if status != 200:
            return out
        if out["task"] is None:
            assert out["poll_status"] == "empty"
        return out["task"]  # type: ignore[no-any-return]

    async def poll_wf(
        self, worker: str = "w1", *, timeout: int = 0, queue: str = Q, **extra: Any
    ) -> dict[str, Any] | None:
        return await self.poll(POLL_WF, worker, timeout, queue, **extra)

    async def poll_act(
        self, worker: str = "w1", *, timeout: int = 0, queue: str = Q, **extra: Any
    ) -> dict[str, Any] | None:
        return await self.poll(POLL_ACT, worker, timeout, queue, **extra)

    async def wf_task(self, worker: str = "w1", timeout: int = 2) -> dict[str, Any]:
        task = await self.poll_wf(worker, timeout=timeout)
        assert task is not None
        return task

    async def act_task(self, worker: str = "w1", timeout: int = 2) -> dict[str, Any]:
        task = await self.poll_act(worker, timeout=timeout)
        assert task is not None
        return task

    async def wf_call(
        self,
        task: dict[str, Any],
        action: str,
        status: int = 200,
        reason: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        body = {
            "lease_owner": task["lease_owner"],
            "workflow_task_attempt": task["workflow_task_attempt"],
            **fields,
        }
        return await self.post(
            f"/api/worker/workflow-tasks/{task['task_id']}/{action}", body, status, reason
        )

    async def complete_wf(
        self,
        task: dict[str, Any],
        commands: list[dict[str, Any]],
        status: int = 200,
        reason: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        return await self.wf_call(task, "complete", status, reason, commands=commands, **fields)

    async def fail_wf(
        self,
        task: dict[str, Any],
        failure: dict[str, Any],
        status: int = 200,
        reason: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        return await self.wf_call(task, "fail", status, reason, failure=failure, **fields)

    async def act_call(
        self,
        task: dict[str, Any],
        action: str,
        status: int = 200,
        reason: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        body = {
            "activity_attempt_id": task["activity_attempt_id"],
            "lease_owner": task["lease_owner"],
            **fields,
        }
        return await self.post(
            f"/api/worker/activity-tasks/{task['task_id']}/{action}", body, status, reason
        )

    async def event_types(self, workflow_id: str, run_id: str) -> list[str]:
        return [e["event_type"] for e in await self.history(workflow_id, run_id)]

    async def begin(self, workflow_id: str, worker: str = "w1") -> dict[str, Any]:
        """Start a workflow and lease its first workflow task."""
        await self.start(workflow_id)
        task = await self.wf_task(worker)
        assert task["workflow_id"] == workflow_id
        return task


@pytest.fixture
async def h(start_server: StartServer) -> AsyncIterator[Harness]:
    async with Harness.open(start_server, TOKEN) as hh:
        yield hh


def register_body(worker_id: str = "w1", **extra: Any) -> dict[str, Any]:
    """What SDK 2.12.0 sends (worker-plane.md §3.1), trimmed."""
    return {
        "worker_id": worker_id,
        "task_queue": Q,
        "runtime": "python",
        "sdk_version": "durable-workflow-python/2.12.0",
        "supported_workflow_types": ["greeter"],
        "supported_activity_types": ["greet"],
        "capability_manifest": {"local_activities": {"supported": True}},
        "workflow_definition_fingerprints": {"greeter": "sha256:1f8f"},
        "capabilities": ["local_activities"],
        "max_concurrent_workflow_tasks": 10,
        "max_concurrent_activity_tasks": 10,
        "task_slots": {"workflow_available": 10, "activity_available": 10},
        "process_metrics": {"process_id": 1, "host": "h"},
        "some_future_field": {"ignored": True},
        **extra,
    }


# --- 1. registration, heartbeat, deregistration ----------------------------------------
async def test_register_and_reregister_update_the_supported_types(h: Harness) -> None:
    body = await h.post("/api/worker/register", register_body(), 201)
    token = body.pop("registration_token")
    assert re.fullmatch("[0-9a-f]{32}", token)  # this registration's incarnation
    assert strip(body) == {
        "worker_id": "w1",
        "registered": True,
        "heartbeat_interval_seconds": 15,  # a quarter of the stale window (60 s)
        "stale_after_seconds": 60,
    }
    await h.start("wf-b", workflow_type="b")
    assert await h.poll_wf("w1") is None  # registered for greeter only
    body = await h.post(
        "/api/worker/register", register_body(supported_workflow_types=["a", "b"]), 201
    )
    assert body["registered"] is True
    assert body["registration_token"] != token  # every registration is a new one
    task = await h.poll_wf("w1")
    assert task is not None and task["workflow_type"] == "b"


async def test_register_validation(h: Harness) -> None:
    raw = register_body()
    del raw["task_queue"]
    body = await h.post("/api/worker/register", raw, 422, "validation_failed")
    assert "task_queue" in body["errors"]
    assert body["validation_errors"] == body["errors"]
    body = await h.post("/api/worker/register", register_body(worker_id=""), 422)
    assert "worker_id" in body["errors"]


async def test_heartbeat(h: Harness) -> None:
    await h.post("/api/worker/register", register_body(), 201)
    body = await h.post(
        "/api/worker/heartbeat", {"worker_id": "w1", "task_slots": {"workflow_available": 9}}
    )
    assert strip(body) == {
        "worker_id": "w1",
        "acknowledged": True,
        "heartbeat_interval_seconds": 15,
        "stale_after_seconds": 60,
    }
    body = await h.post(
        "/api/worker/heartbeat", {"worker_id": "ghost"}, 404, "worker_not_registered"
    )
    assert body["worker_id"] == "ghost"


async def test_deregister_releases_leased_workflow_tasks(h: Harness) -> None:
    await h.post("/api/worker/register", register_body("w1"), 201)
    task = await h.begin("wf-dereg", "w1")
    assert task["workflow_task_attempt"] == 1
    r = await h.wc.delete("/api/worker/registrations/w1")
    body = wbody(r, 200)
    assert strip(body) == {
        "worker_id": "w1",
        "outcome": "deregistered",
        "recovered_workflow_task_count": 1,
        "recovered_activity_task_count": 0,
    }
    # Another worker gets the same task at once, with the next attempt.
    start = trio.current_time()
    again = await h.wf_task("w2", timeout=5)
    assert trio.current_time() - start < 1.5
    assert again["task_id"] == task["task_id"]
    assert again["workflow_task_attempt"] == 2
    assert again["lease_owner"] == "w2"
    # The deregistered worker's late completion is fenced off.
    body = await h.complete_wf(task, [activity_cmd()], 409, "lease_owner_mismatch")
    assert body["lease_owner"] == "w2"
    # Deregistering again (nothing held) and a never-seen worker.
    body = wbody(await h.wc.delete("/api/worker/registrations/w1"), 200)
    assert body["recovered_workflow_task_count"] == 0
    body = wbody(await h.wc.delete("/api/worker/registrations/ghost"), 404, "worker_not_found")
    assert body["worker_id"] == "ghost"


async def test_deregister_without_leases_recovers_nothing(h: Harness) -> None:
    await h.post("/api/worker/register", register_body("w1"), 201)
    body = wbody(await h.wc.delete("/api/worker/registrations/w1"), 200)
    assert strip(body) == {
        "worker_id": "w1",
        "outcome": "deregistered",
        "recovered_workflow_task_count": 0,
        "recovered_activity_task_count": 0,
    }


# --- 2. polls -----------------------------------------------------------------------------
async def test_an_unknown_worker_polling_is_treated_as_registered(h: Harness) -> None:
    started = await h.start("wf-implicit")
    task = await h.wf_task("never-registered")
    assert task["workflow_id"] == "wf-implicit"
    assert task["run_id"] == started["run_id"]
    assert task["workflow_task_attempt"] == 1
    assert task["workflow_type"] == "greeter"
    assert task["payload_codec"] == "avro"
    assert task["arguments"] == ARGS
    assert task["task_queue"] == Q
    assert task["lease_owner"] == "never-registered"
    assert task["lease_expires_at"].endswith("Z")
    assert task["next_history_page_token"] is None
    events = task["history_events"]
    assert [e["event_type"] for e in events] == ["StartAccepted", "WorkflowStarted"]
    assert [e["sequence"] for e in events] == [1, 2]
    assert all(e["recorded_at"].endswith("Z") for e in events)
    assert task["last_history_sequence"] == task["total_history_events"] == 2
    # The implicit registration is real: heartbeats are accepted.
    await h.post("/api/worker/heartbeat", {"worker_id": "never-registered"})
    assert (await h.describe("wf-implicit"))["status"] == "running"


async def test_an_empty_poll_waits_for_its_timeout(h: Harness) -> None:
    start = trio.current_time()
    assert await h.poll_wf(timeout=1) is None
    elapsed = trio.current_time() - start
    assert 1.0 <= elapsed < 2.5
    start = trio.current_time()
    assert await h.poll_act(timeout=1) is None
    assert 1.0 <= trio.current_time() - start < 2.5


async def test_timeout_zero_probes_immediately(h: Harness) -> None:
    start = trio.current_time()
    assert await h.poll_wf(timeout=0) is None
    assert await h.poll_act(timeout=0) is None
    assert trio.current_time() - start < 0.5


@pytest.mark.parametrize("path", [POLL_WF, POLL_ACT])
@pytest.mark.parametrize("timeout", [61, -1, "soon", 1.5])
async def test_poll_timeout_out_of_range(h: Harness, path: str, timeout: Any) -> None:
    body = await h.poll(path, "w1", timeout, Q, 422, "validation_failed")
    assert body is not None and "timeout_seconds" in body["errors"]


@pytest.mark.parametrize("path", [POLL_WF, POLL_ACT])
async def test_poll_needs_worker_and_queue(h: Harness, path: str) -> None:
    body = await h.post(path, {"timeout_seconds": 0}, 422, "validation_failed")
    assert {"worker_id", "task_queue"} <= set(body["errors"])


async def test_a_parked_poll_is_woken_by_a_start(h: Harness) -> None:
    got: list[dict[str, Any] | None] = []
    start = trio.current_time()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def parked() -> None:
                got.append(await h.poll_wf("w1", timeout=20))

            nursery.start_soon(parked)
            await trio.sleep(0.3)
            await h.start("wf-wake")
    assert trio.current_time() - start < 2.0
    [task] = got
    assert task is not None and task["workflow_id"] == "wf-wake"


async def test_poll_request_id_returns_the_same_lease(h: Harness) -> None:
    await h.start("wf-dedupe")
    first = await h.poll_wf("w1", poll_request_id="wf-poll-aaaa")
    assert first is not None
    again = await h.poll_wf("w1", poll_request_id="wf-poll-aaaa", timeout=2)
    assert again is not None
    assert again["task_id"] == first["task_id"]
    assert again["workflow_task_attempt"] == first["workflow_task_attempt"] == 1
    assert again["history_events"] == first["history_events"]
    # Another poll id, or another worker with the same id, gets nothing new.
    assert await h.poll_wf("w1", poll_request_id="wf-poll-bbbb") is None
    assert await h.poll_wf("w2", poll_request_id="wf-poll-aaaa") is None
    # Once completed, the poll id no longer maps to anything deliverable.
    await h.complete_wf(first, [activity_cmd()])
    assert await h.poll_wf("w1", poll_request_id="wf-poll-aaaa") is None


async def test_activity_poll_request_id_returns_the_same_attempt(h: Harness) -> None:
    task = await h.begin("wf-act-dedupe")
    await h.complete_wf(task, [activity_cmd()])
    first = await h.poll_act("w1", poll_request_id="activity-poll-1", timeout=2)
    assert first is not None
    again = await h.poll_act("w1", poll_request_id="activity-poll-1")
    assert again is not None
    assert again["activity_attempt_id"] == first["activity_attempt_id"]
    assert again["attempt_number"] == 1
    types = await h.event_types("wf-act-dedupe", task["run_id"])
    assert types.count("ActivityStarted") == 1


async def test_parked_pollers_are_served_in_fifo_order(start_server: StartServer) -> None:
    # A long recheck interval: only wakes move tasks, so the order is the waiters' order.
    async with Harness.open(start_server, TOKEN, worker_poll_interval_ms=60_000) as h:
        send, receive = trio.open_memory_channel[tuple[int, dict[str, Any] | None]](3)
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:

                async def poller(i: int) -> None:
                    await send.send((i, await h.poll_wf(f"p{i}", timeout=20)))

                for i in range(3):
                    nursery.start_soon(poller, i)
                    await trio.sleep(0.25)
                for i in range(3):
                    start = trio.current_time()
                    await h.start(f"wf-fifo-{i}")
                    who, task = await receive.receive()
                    assert trio.current_time() - start < 2.0
                    assert who == i
                    assert task is not None and task["workflow_id"] == f"wf-fifo-{i}"
                    assert task["lease_owner"] == f"p{i}"


async def test_workers_only_get_their_workflow_types(h: Harness) -> None:
    await h.post("/api/worker/register", register_body("wa", supported_workflow_types=["a"]), 201)
    await h.start("wf-type-b", workflow_type="b")
    assert await h.poll_wf("wa") is None
    assert await h.poll_wf("wa", timeout=1) is None  # parked, woken or not: never "b"
    await h.start("wf-type-a", workflow_type="a")
    task = await h.wf_task("wa")
    assert task["workflow_type"] == "a"
    other = await h.wf_task("anyone")  # no declared types: takes anything
    assert other["workflow_type"] == "b"


async def test_activity_types_filter(h: Harness) -> None:
    task = await h.begin("wf-act-types")
    await h.complete_wf(task, [activity_cmd("other")])
    await h.post(
        "/api/worker/register", register_body("aw", supported_activity_types=["greet"]), 201
    )
    assert await h.poll_act("aw") is None
    act = await h.act_task("anyone")
    assert act["activity_type"] == "other"


# --- 3. disconnects and drain -------------------------------------------------------------
async def test_a_disconnected_poller_is_never_given_a_task(h: Harness) -> None:
    async with h.server.client(TOKEN, **WP) as gone:
        with trio.move_on_after(0.5) as scope:
            await gone.post(
                POLL_WF, json={"worker_id": "gone", "task_queue": Q, "timeout_seconds": 20}
            )
        assert scope.cancelled_caught
    await trio.sleep(0.5)  # the server notices the closed connection
    await h.start("wf-gone")
    await trio.sleep(0.3)
    task = await h.wf_task("w2", timeout=2)
    assert task["workflow_id"] == "wf-gone"
    assert task["workflow_task_attempt"] == 1
    assert task["lease_owner"] == "w2"


async def test_drain_answers_a_parked_poll_at_once(h: Harness) -> None:
    result: dict[str, Any] = {}

    async def parked() -> None:
        start = trio.current_time()
        result["response"] = await h.wc.post(
            POLL_WF, json={"worker_id": "w1", "task_queue": Q, "timeout_seconds": 30}
        )
        result["elapsed"] = trio.current_time() - start

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(parked)
            await trio.sleep(0.5)
            h.server.stop.set()
        await h.server.stopped.wait()
    body = wbody(result["response"], 200)
    assert body["task"] is None
    assert result["elapsed"] < 4.0


# --- 4. workflow-task fencing, idempotency, leases, history --------------------------------
async def test_workflow_task_fencing(h: Harness) -> None:
    task = await h.begin("wf-fence")
    ghost = {**task, "task_id": "01jghostghostghostghostghos"}
    calls = [
        ("complete", {"commands": [activity_cmd()]}),
        ("fail", {"failure": {"message": "m"}}),
        ("heartbeat", {}),
        ("history", {"next_history_page_token": "MA=="}),
    ]
    for action, fields in calls:
        body = await h.wf_call(ghost, action, 404, "task_not_found", **fields)
        assert body["task_id"] == ghost["task_id"]
        body = await h.wf_call(
            task, action, 409, "lease_owner_mismatch", **{**fields, "lease_owner": "w-other"}
        )
        assert body["lease_owner"] == "w1"
        assert body["task_id"] == task["task_id"]
        body = await h.wf_call(
            task,
            action,
            409,
            "workflow_task_attempt_mismatch",
            **{**fields, "workflow_task_attempt": 2},
        )
        assert body["current_attempt"] == 1
        assert body["workflow_task_attempt"] == 2
    # None of the refused calls changed anything.
    assert await h.event_types("wf-fence", task["run_id"]) == ["StartAccepted", "WorkflowStarted"]

    done = await h.complete_wf(task, [activity_cmd()])
    assert strip(done) == {
        "task_id": task["task_id"],
        "workflow_task_attempt": 1,
        "outcome": "completed",
        "recorded": True,
        "run_id": task["run_id"],
        "run_status": "waiting",
        "created_task_ids": done["created_task_ids"],
        "reason": None,
    }
    assert len(done["created_task_ids"]) == 1
    # The identical completion again: the same answer, applied once.
    assert await h.complete_wf(task, [activity_cmd()]) == done
    types = await h.event_types("wf-fence", task["run_id"])
    assert types == ["StartAccepted", "WorkflowStarted", "ActivityScheduled"]
    assert await h.act_task() is not None
    assert await h.poll_act() is None
    # Anything else on the completed task is refused as not leased.
    await h.complete_wf(task, [activity_cmd()], 409, "task_not_leased", lease_owner="w-other")
    await h.wf_call(task, "heartbeat", 409, "task_not_leased")
    await h.wf_call(task, "history", 409, "task_not_leased", next_history_page_token="MA==")
    assert (await h.describe("wf-fence"))["status"] == "waiting"


async def test_an_expired_lease_is_refused_then_repaired(start_server: StartServer) -> None:
    async with Harness.open(start_server, TOKEN, workflow_task_timeout_s=1) as h:
        task = await h.begin("wf-expire")
        await trio.sleep(1.5)
        body = await h.complete_wf(task, [activity_cmd()], 409, "lease_expired")
        assert body["lease_owner"] == "w1"
        assert body["lease_expires_at"] == task["lease_expires_at"]
        assert body["task_id"] == task["task_id"]
        # The repair loop (3 s cadence) makes it ready again, and wakes the pollers.
        start = trio.current_time()
        again = await h.wf_task("w2", timeout=6)
        assert trio.current_time() - start < 4.5
        assert again["task_id"] == task["task_id"]
        assert again["workflow_task_attempt"] == 2
        await h.complete_wf(task, [activity_cmd()], 409, "lease_owner_mismatch")
        await h.complete_wf(again, [activity_cmd()])
        types = await h.event_types("wf-expire", task["run_id"])
        assert types.count("ActivityScheduled") == 1


async def test_heartbeat_renews_the_lease(h: Harness) -> None:
    task = await h.begin("wf-hb")
    await trio.sleep(0.05)
    body = await h.wf_call(task, "heartbeat")
    assert strip(body) == {
        "task_id": task["task_id"],
        "lease_owner": "w1",
        "workflow_task_attempt": 1,
        "renewed": True,
        "lease_expires_at": body["lease_expires_at"],
        "run_status": "running",
        "task_status": "leased",
        "reason": None,
    }
    assert body["lease_expires_at"] > task["lease_expires_at"]
    await h.complete_wf(task, [activity_cmd()])  # still owned


async def test_history_paging(h: Harness) -> None:
    await h.start("wf-pages")
    task = await h.poll_wf("w1", timeout=2, history_page_size=1)
    assert task is not None
    assert [e["event_type"] for e in task["history_events"]] == ["StartAccepted"]
    token = task["next_history_page_token"]
    assert token == base64.b64encode(b"1").decode()
    assert task["total_history_events"] == 2
    body = await h.wf_call(task, "history", next_history_page_token=token)
    assert body["task_id"] == task["task_id"]
    assert body["workflow_task_attempt"] == 1
    assert body["total_history_events"] == 2
    assert body["next_history_page_token"] is None
    [event] = body["history_events"]
    assert event["event_type"] == "WorkflowStarted" and event["sequence"] == 2
    assert set(event) >= {
        "id",
        "sequence",
        "event_type",
        "payload",
        "workflow_task_id",
        "workflow_command_id",
        "recorded_at",
    }
    # From the start ("MA==" is after 0), and past the end.
    body = await h.wf_call(task, "history", next_history_page_token="MA==")
    assert [e["sequence"] for e in body["history_events"]] == [1, 2]
    body = await h.wf_call(task, "history", next_history_page_token="Mg==")
    assert body["history_events"] == [] and body["next_history_page_token"] is None
    for bad in ("!!!", "bm90LWEtbnVtYmVy", "LTE="):  # not base64, "not-a-number", "-1"
        await h.wf_call(task, "history", 400, "invalid_page_token", next_history_page_token=bad)
    body = await h.wf_call(task, "history", 422, "validation_failed")
    assert "next_history_page_token" in body["errors"]


async def test_a_closed_run_is_refused(h: Harness, db_dsn: str) -> None:
    task = await h.begin("wf-closed")

    async def close(conn: Conn) -> None:
        await conn.execute(
            "UPDATE workflow_runs SET status = 'terminated', closed_at = now() WHERE id = $1",
            task["run_id"],
        )

    await connect_once(db_dsn, close)
    body = await h.complete_wf(task, [activity_cmd()], 409, "run_closed")
    assert body["run_status"] == "terminated"
    assert body["can_continue"] is False
    assert body["task_id"] == task["task_id"]
    body = await h.wf_call(task, "heartbeat", 409, "run_closed")
    assert body["renewed"] is False and body["run_status"] == "terminated"
    await h.fail_wf(task, {"message": "m"}, 409, "run_closed")
    await h.wf_call(task, "history", 409, "run_closed", next_history_page_token="MA==")
    types = await h.event_types("wf-closed", task["run_id"])
    assert types == ["StartAccepted", "WorkflowStarted"]


async def test_an_activity_left_ready_on_a_closed_run_is_retired_by_the_claim(
    h: Harness, db_dsn: str
) -> None:
    """The claim statement records ActivityStarted only on an open run; otherwise what
    it claimed is retired and the poll looks on (here it finds another run's activity)."""
    task = await h.begin("wf-closed-act")
    await h.complete_wf(task, [activity_cmd()])
    other = await h.begin("wf-open-act")
    await h.complete_wf(other, [activity_cmd(activity_type="later")])

    async def close(conn: Conn) -> None:
        # A run closed without its ready activity task (close_run would cancel it; a
        # claim racing a close is skipped or deadlocks and retries): only a leftover.
        await conn.execute(
            "UPDATE workflow_runs SET status = 'terminated', closed_at = now() WHERE id = $1",
            task["run_id"],
        )

    await connect_once(db_dsn, close)
    act = await h.act_task()
    assert (act["workflow_id"], act["activity_type"]) == ("wf-open-act", "later")

    async def rows(conn: Conn) -> list[Any]:
        return await conn.fetch(  # type: ignore[no-any-return]
            "SELECT t.state, e.status AS execution, a.status AS attempt"
            "  FROM workflow_tasks t JOIN activity_executions e ON e.id = t.activity_execution_id"
            "  JOIN activity_attempts a ON a.activity_execution_id = e.id"
            " WHERE t.run_id = $1 AND t.kind = 'activity'",
            task["run_id"],
        )

    found = await connect_once(db_dsn, rows)
    assert [tuple(r) for r in found] == [("completed", "cancelled", "cancelled")]
    types = await h.event_types("wf-closed-act", task["run_id"])
    assert "ActivityStarted" not in types and types.count("ActivityScheduled") == 1
    assert (await h.event_types("wf-open-act", other["run_id"]))[-1] == "ActivityStarted"


async def test_a_retried_poll_is_not_handed_a_lease_on_a_closed_run(
    h: Harness, db_dsn: str
) -> None:
    task = await h.begin("wf-closed-replay")
    await h.complete_wf(task, [activity_cmd()])
    act = await h.poll_act(poll_request_id="act-poll-1")
    assert act is not None

    async def close(conn: Conn) -> None:
        await conn.execute(
            "UPDATE workflow_runs SET status = 'terminated', closed_at = now() WHERE id = $1",
            task["run_id"],
        )

    await connect_once(db_dsn, close)
    # The same poll sent again would replay its lease; on a closed run it finds nothing.
    assert await h.poll_act(poll_request_id="act-poll-1") is None


# --- 5. command grammar over HTTP ---------------------------------------------------------
async def test_rejected_commands_leave_the_task_leased(h: Harness) -> None:
    task = await h.begin("wf-grammar")
    rejections: list[tuple[list[dict[str, Any]], int, str]] = [
        ([], 409, "invalid_commands"),
        ([{"type": "complete_workflow", "result": "x"}, activity_cmd()], 409, "invalid_commands"),
        ([{"type": "start_service_operation"}], 409, "invalid_commands"),
        ([{"type": "no_such_command"}], 409, "invalid_commands"),
        ([activity_cmd(), "not-an-object"], 409, "invalid_commands"),  # type: ignore[list-item]
        ([activity_cmd(**parallel_fields(0, base=5))], 409, "invalid_commands"),
        ([activity_cmd(activity_type="")], 422, "validation_failed"),
        ([activity_cmd(arguments={"codec": "json", "blob": "x"})], 422, "validation_failed"),
    ]
    for commands, status, reason in rejections:
        body = await h.complete_wf(task, commands, status, reason)
        assert body["task_id"] == task["task_id"], body
        assert body["workflow_task_attempt"] == 1
    for bad in ("schedule_activity", {"type": "complete_workflow"}, None):
        await h.complete_wf(task, bad, 409, "invalid_commands")  # type: ignore[arg-type]
    body = {"lease_owner": "w1", "workflow_task_attempt": 1}  # no commands at all
    path = f"/api/worker/workflow-tasks/{task['task_id']}/complete"
    await h.post(path, body, 409, "invalid_commands")
    body = await h.complete_wf(
        task,
        [activity_cmd(), activity_cmd(activity_type="", start_to_close_timeout=0)],
        422,
        "validation_failed",
    )
    assert set(body["errors"]) == {"commands.1.activity_type", "commands.1.start_to_close_timeout"}
    assert body["validation_errors"] == body["errors"]
    body = await h.complete_wf(task, [activity_cmd(arguments={"codec": "json"})], 422)
    assert all(k.startswith("commands.0.arguments") for k in body["errors"]), body
    body = await h.complete_wf(
        task, [activity_cmd(**parallel_fields(0)), activity_cmd(**parallel_fields(0))], 409
    )
    assert "parallel" in body["message"]
    # Nothing was applied: no history, no activity work.
    assert await h.event_types("wf-grammar", task["run_id"]) == ["StartAccepted", "WorkflowStarted"]
    assert await h.poll_act() is None
    # Still leased: the SDK reports the rejection through fail, which is accepted.
    await h.wf_call(task, "heartbeat")
    body = await h.fail_wf(
        task,
        {
            "message": "workflow task completion failed after commands were produced: bad",
            "type": "ServerError",
        },
    )
    assert body["outcome"] == "failed" and body["recorded"] is True
    await h.complete_wf(task, [activity_cmd()], 409, "task_not_leased")


# --- 6. workflow-task failures ------------------------------------------------------------
async def test_waiting_for_history_is_a_no_op_completion(h: Harness) -> None:
    task = await h.begin("wf-waiting")
    failure = {"message": "Workflow task waiting for scheduled history.", "type": WAITING}
    body = await h.fail_wf(task, failure)
    assert strip(body) == {
        "task_id": task["task_id"],
        "workflow_task_attempt": 1,
        "outcome": "waiting_for_history",
        "recorded": True,
        "reason": None,
        "next_task_id": None,
    }
    assert await h.fail_wf(task, failure) == body  # a re-send: same answer
    assert await h.event_types("wf-waiting", task["run_id"]) == ["StartAccepted", "WorkflowStarted"]
    assert (await h.describe("wf-waiting"))["status"] == "waiting"
    assert await h.poll_wf(timeout=1) is None  # not retried
    await h.wf_call(task, "heartbeat", 409, "task_not_leased")


async def test_a_genuine_failure_is_reoffered_after_a_backoff(h: Harness) -> None:
    task = await h.begin("wf-retry-task")
    failure = {"message": "replay failed", "type": "NonDeterministicReplayError"}
    body = await h.fail_wf(task, failure)
    failed_at = trio.current_time()
    assert strip(body) == {
        "task_id": task["task_id"],
        "workflow_task_attempt": 1,
        "outcome": "failed",
        "recorded": True,
        "reason": None,
        "next_task_id": task["task_id"],
        "retry_after_seconds": 1,
    }
    assert (await h.describe("wf-retry-task"))["status"] == "waiting"
    assert await h.poll_wf() is None  # backing off: never a tight loop
    again = await h.wf_task("w1", timeout=3)
    assert 0.8 <= trio.current_time() - failed_at < 3.0
    assert again["task_id"] == task["task_id"]
    assert again["workflow_task_attempt"] == 2
    await h.complete_wf(task, [activity_cmd()], 409, "workflow_task_attempt_mismatch")
    body = await h.fail_wf(again, failure)
    assert body["retry_after_seconds"] == 2  # exponential
    assert await h.event_types("wf-retry-task", task["run_id"]) == [
        "StartAccepted",
        "WorkflowStarted",
    ]


# --- 7. wake rules ------------------------------------------------------------------------
@pytest.mark.parametrize("finish", ["waiting_for_history", "complete"])
async def test_one_open_workflow_task_and_a_deferred_wake(h: Harness, finish: str) -> None:
    t1 = await h.begin("wf-defer")
    done = await h.complete_wf(t1, [activity_cmd("a1"), activity_cmd("a2")])
    assert len(done["created_task_ids"]) == 2
    x = await h.act_task()
    body = await h.act_call(x, "complete", result="x")
    assert body["next_task_id"] is not None  # no open task: a new one is created
    t2 = await h.wf_task()
    assert t2["task_id"] == body["next_task_id"]
    assert (await h.describe("wf-defer"))["status"] == "running"
    y = await h.act_task()
    assert y["task_id"] != x["task_id"]
    body = await h.act_call(y, "complete", result="y")
    assert body["next_task_id"] is None  # t2 is leased: the wake is deferred
    assert await h.poll_wf(timeout=1) is None
    if finish == "waiting_for_history":
        body = await h.fail_wf(t2, {"message": "waiting", "type": WAITING})
        next_id = body["next_task_id"]
    else:
        body = await h.complete_wf(t2, [activity_cmd("a3")])
        assert len(body["created_task_ids"]) == 2
        next_id = body["created_task_ids"][-1]
    assert next_id is not None
    t3 = await h.wf_task()
    assert t3["task_id"] == next_id
    types = [e["event_type"] for e in t3["history_events"]]
    assert types.count("ActivityCompleted") == 2
    assert await h.poll_wf(timeout=0) is None  # still just one


async def test_a_reoffered_task_covers_a_deferred_wake(h: Harness) -> None:
    """A wake deferred while a task was leased is satisfied by that task's re-offer.

    The re-leased task carries the whole history, so its completion must not
    create a second, spurious workflow task.
    """
    t1 = await h.begin("wf-reoffer-wake")
    await h.complete_wf(t1, [activity_cmd("a1"), activity_cmd("a2")])
    x, y = await h.act_task(), await h.act_task()
    await h.act_call(x, "complete", result="x")
    t2 = await h.wf_task()
    body = await h.act_call(y, "complete", result="y")
    assert body["next_task_id"] is None  # deferred: t2 is leased
    await h.fail_wf(t2, {"message": "boom", "type": "RuntimeError"})
    again = await h.wf_task(timeout=3)
    assert (again["task_id"], again["workflow_task_attempt"]) == (t2["task_id"], 2)
    types = [e["event_type"] for e in again["history_events"]]
    assert types.count("ActivityCompleted") == 2
    body = await h.complete_wf(again, [activity_cmd("a3")])
    assert len(body["created_task_ids"]) == 1  # the activity task only
    assert await h.poll_wf() is None


async def test_a_wake_on_a_ready_task_creates_nothing(h: Harness) -> None:
    t1 = await h.begin("wf-ready")
    await h.complete_wf(t1, [activity_cmd("a1"), activity_cmd("a2")])
    x, y = await h.act_task(), await h.act_task()
    first = await h.act_call(x, "complete", result=1)
    second = await h.act_call(y, "complete", result=2)
    assert first["next_task_id"] is not None
    assert second["next_task_id"] is None  # the ready task will see both results
    t2 = await h.wf_task()
    assert t2["task_id"] == first["next_task_id"]
    assert [e["event_type"] for e in t2["history_events"]].count("ActivityCompleted") == 2
    assert await h.poll_wf() is None


async def test_a_parallel_group_wakes_once_every_member_settled(h: Harness) -> None:
    t1 = await h.begin("wf-parallel")
    commands = [activity_cmd(f"p{i}", **parallel_fields(i)) for i in range(3)]
    await h.complete_wf(t1, commands)
    acts = {}
    for _ in range(3):
        act = await h.act_task()
        acts[act["activity_type"]] = act
    assert set(acts) == {"p0", "p1", "p2"}
    body = await h.act_call(acts["p1"], "complete", result="one")
    assert body["next_task_id"] is None
    body = await h.act_call(
        acts["p0"], "fail", failure={"message": "no", "type": "E", "non_retryable": True}
    )
    assert body["outcome"] == "failed" and body["next_task_id"] is None
    assert await h.poll_wf() is None
    body = await h.act_call(acts["p2"], "complete", result="two")
    assert body["next_task_id"] is not None
    t2 = await h.wf_task()
    assert t2["task_id"] == body["next_task_id"]
    steps = [e for e in t2["history_events"] if e["event_type"].startswith("Activity")]
    scheduled = [e["payload"] for e in steps if e["event_type"] == "ActivityScheduled"]
    assert [p["sequence"] for p in scheduled] == [1, 2, 3]
    for e in steps:
        p = e["payload"]
        index = int(p["activity_type"][1])
        assert p["sequence"] == index + 1
        for key, value in parallel_fields(index).items():
            assert p[key] == value, (e["event_type"], key)
    # ActivityStarted (written by the claim statement in SQL) and ActivityCompleted
    # (written with the completion in one statement), exactly.
    executions = {p["sequence"]: p["activity_execution_id"] for p in scheduled}

    def attempt_fields(kind: str) -> dict[str, Any]:
        index = int(kind[1])
        return {
            "sequence": index + 1,
            "activity_type": kind,
            "activity_class": kind,
            "activity_execution_id": executions[index + 1],
            **parallel_fields(index),
            "activity_attempt_id": acts[kind]["activity_attempt_id"],
            "attempt_number": 1,
        }

    for p in (e["payload"] for e in steps if e["event_type"] == "ActivityStarted"):
        assert p == attempt_fields(p["activity_type"])
    completed = [e["payload"] for e in steps if e["event_type"] == "ActivityCompleted"]
    by_sequence = sorted(completed, key=lambda p: p["sequence"])
    assert [p["activity_type"] for p in by_sequence] == ["p1", "p2"]
    for p, result in zip(by_sequence, ("one", "two"), strict=True):
        expected = {**attempt_fields(p["activity_type"]), "payload_codec": "avro"}
        assert p == {**expected, "result": value_blob(result)}
    sequences = [e["sequence"] for e in t2["history_events"]]
    assert sequences == list(range(1, len(sequences) + 1))
    assert sorted(e["event_type"] for e in steps) == sorted(
        ["ActivityScheduled"] * 3
        + ["ActivityStarted"] * 3
        + ["ActivityCompleted"] * 2
        + ["ActivityFailed"]
    )


# --- 8. activities: task body, fencing, retries, heartbeats -------------------------------
async def test_activity_task_fencing(h: Harness) -> None:
    t1 = await h.begin("wf-act-fence")
    await h.complete_wf(t1, [activity_cmd("one"), activity_cmd("two")])
    act = await h.act_task("aw")
    other = await h.act_task("aw")
    assert act["activity_type"] == "one"
    assert set(act) >= {
        "task_id",
        "workflow_id",
        "run_id",
        "activity_execution_id",
        "activity_attempt_id",
        "attempt_number",
        "activity_type",
        "payload_codec",
        "arguments",
        "task_queue",
        "lease_owner",
        "lease_expires_at",
    }
    assert act["attempt_number"] == 1
    assert act["payload_codec"] == "avro"
    assert act["arguments"] == ARGS
    assert (act["workflow_id"], act["run_id"]) == ("wf-act-fence", t1["run_id"])
    assert act["lease_owner"] == "aw" and act["task_queue"] == Q
    assert "retry_policy" not in act

    r = await h.cc.post("/api/namespaces", json={"name": "elsewhere"})
    assert r.status_code == 201, r.text
    ghost = {**act, "task_id": "01jghostghostghostghostghos"}
    for action, fields in [
        ("complete", {"result": "x"}),
        ("fail", {"failure": {"message": "m"}}),
        ("heartbeat", {}),
    ]:
        await h.act_call(ghost, action, 404, "task_not_found", **fields)
        body = await h.act_call(
            act, action, 404, "attempt_not_found", **{**fields, "activity_attempt_id": "nope"}
        )
        assert body["activity_attempt_id"] == "nope"
        await h.act_call(
            act,
            action,
            409,
            "task_mismatch",
            **{**fields, "activity_attempt_id": other["activity_attempt_id"]},
        )
        body = await h.act_call(
            act, action, 409, "lease_owner_mismatch", **{**fields, "lease_owner": "intruder"}
        )
        assert body["lease_owner"] == "aw"
        # The same call from another namespace does not see the task.
        call = {"activity_attempt_id": act["activity_attempt_id"], "lease_owner": "aw", **fields}
        r = await h.wc.post(
            f"/api/worker/activity-tasks/{act['task_id']}/{action}",
            json=call,
            headers={"X-Namespace": "elsewhere"},
        )
        assert (r.status_code, r.json()["reason"]) == (404, "task_not_found"), r.text

    await trio.sleep(0.05)
    body = await h.act_call(act, "heartbeat", details={"progress": 50})
    assert body["cancel_requested"] is False
    assert body["can_continue"] is True
    assert body["heartbeat_recorded"] is True
    assert body["reason"] is None
    assert body["lease_expires_at"] > act["lease_expires_at"]
    assert body["last_heartbeat_at"].endswith("Z")
    assert (body["task_id"], body["activity_attempt_id"]) == (
        act["task_id"],
        act["activity_attempt_id"],
    )

    done = await h.act_call(act, "complete", result="hello")
    assert strip(done) == {
        "task_id": act["task_id"],
        "activity_attempt_id": act["activity_attempt_id"],
        "outcome": "completed",
        "recorded": True,
        "reason": None,
        "next_task_id": done["next_task_id"],
    }
    assert done["next_task_id"] is not None
    for action, fields in [
        ("complete", {"result": "x"}),
        ("fail", {"failure": {"message": "m"}}),
        ("heartbeat", {}),
    ]:
        await h.act_call(act, action, 409, "stale_attempt", **fields)
    history = await h.history("wf-act-fence", t1["run_id"])
    [completed] = [e["payload"] for e in history if e["event_type"] == "ActivityCompleted"]
    assert completed["sequence"] == 1
    assert completed["payload_codec"] == "avro"
    assert isinstance(completed["result"], str) and completed["result"]
    assert completed["activity_attempt_id"] == act["activity_attempt_id"]
    [started] = [
        e["payload"]
        for e in history
        if e["event_type"] == "ActivityStarted" and e["payload"]["activity_type"] == "one"
    ]
    assert started["attempt_number"] == 1 and started["sequence"] == 1


async def test_activity_retries_until_the_policy_is_exhausted(h: Harness) -> None:
    t1 = await h.begin("wf-act-retry")
    policy = {"max_attempts": 3, "backoff_seconds": [0, 0]}
    await h.complete_wf(t1, [activity_cmd(retry_policy=policy)])
    failure = {"message": "transient", "type": "RuntimeError", "class": "builtins.RuntimeError"}
    seen: list[str] = []
    for number in (1, 2):
        act = await h.act_task()
        assert act["attempt_number"] == number
        assert act["retry_policy"] == policy
        seen.append(act["activity_attempt_id"])
        body = await h.act_call(act, "fail", failure=failure)
        assert body["outcome"] == "retry_scheduled"
        assert body["next_task_id"] is None
        assert await h.poll_wf() is None  # a retry does not wake the workflow
        await h.act_call(act, "complete", 409, "stale_attempt", result="late")
    act = await h.act_task()
    assert act["attempt_number"] == 3
    assert act["activity_attempt_id"] not in seen
    body = await h.act_call(act, "fail", failure=failure)
    assert body["outcome"] == "failed"
    t2 = await h.wf_task()
    assert t2["task_id"] == body["next_task_id"]
    events = [e for e in t2["history_events"] if e["event_type"].startswith("Activity")]
    assert [e["event_type"] for e in events] == [
        "ActivityScheduled",
        "ActivityStarted",
        "ActivityRetryScheduled",
        "ActivityStarted",
        "ActivityRetryScheduled",
        "ActivityStarted",
        "ActivityFailed",
    ]
    started = [e["payload"] for e in events if e["event_type"] == "ActivityStarted"]
    assert [p["attempt_number"] for p in started] == [1, 2, 3]
    assert len({p["activity_attempt_id"] for p in started}) == 3
    retries = [e["payload"] for e in events if e["event_type"] == "ActivityRetryScheduled"]
    assert [p["retry_after_attempt"] for p in retries] == [1, 2]
    for p in retries:
        assert p["sequence"] == 1 and p["activity_type"] == "greet"
        assert p["max_attempts"] == 3 and p["retry_backoff_seconds"] == 0
        assert p["exception_type"] == "RuntimeError" and p["message"] == "transient"
    final = events[-1]["payload"]
    assert final["sequence"] == 1
    assert final["attempt_number"] == 3
    assert final["non_retryable"] is False
    assert final["exception_type"] == "RuntimeError"
    assert final["exception_class"] == "builtins.RuntimeError"
    assert final["message"] == "transient"
    assert final["exception"]["message"] == "transient"


async def test_a_retry_backoff_delays_the_next_attempt(h: Harness) -> None:
    t1 = await h.begin("wf-act-backoff")
    await h.complete_wf(
        t1, [activity_cmd(retry_policy={"max_attempts": 2, "backoff_seconds": [1]})]
    )
    act = await h.act_task()
    body = await h.act_call(act, "fail", failure={"message": "again"})
    failed_at = trio.current_time()
    assert body["outcome"] == "retry_scheduled" and body["retry_available_at"].endswith("Z")
    assert await h.poll_act() is None
    again = await h.act_task(timeout=3)
    assert 0.8 <= trio.current_time() - failed_at < 3.0
    assert again["attempt_number"] == 2 and again["task_id"] == act["task_id"]


@pytest.mark.parametrize(
    ("policy", "failure"),
    [
        (None, {"message": "once", "type": "RuntimeError"}),  # default: a single attempt
        ({"max_attempts": 3}, {"message": "fatal", "type": "RuntimeError", "non_retryable": True}),
        (
            {"max_attempts": 3, "non_retryable_error_types": ["ValueError"]},
            {"message": "bad", "type": "ValueError"},
        ),
        (
            {"max_attempts": 3, "non_retryable_error_types": ["app.errors.Fatal"]},
            {"message": "bad", "type": "Fatal", "class": "app.errors.Fatal"},
        ),
    ],
)
async def test_final_activity_failures(
    h: Harness, policy: dict[str, Any] | None, failure: dict[str, Any]
) -> None:
    t1 = await h.begin("wf-act-final")
    extra = {} if policy is None else {"retry_policy": policy}
    await h.complete_wf(t1, [activity_cmd(**extra)])
    act = await h.act_task()
    body = await h.act_call(act, "fail", failure=failure)
    assert body["outcome"] == "failed"
    assert body["next_task_id"] is not None
    types = await h.event_types("wf-act-final", t1["run_id"])
    assert "ActivityRetryScheduled" not in types
    assert types[-1] == "ActivityFailed"
    final = (await h.history("wf-act-final", t1["run_id"]))[-1]["payload"]
    assert final["non_retryable"] is bool(failure.get("non_retryable", False))
    assert final["exception_type"] == failure["type"]
    assert final["message"] == failure["message"]
    assert await h.poll_act() is None


# --- 9. a lost wake only delays ------------------------------------------------------------
async def test_a_task_inserted_without_a_wake_is_found_by_the_recheck(
    start_server: StartServer, db_dsn: str
) -> None:
    async with Harness.open(start_server, TOKEN, worker_poll_interval_ms=200) as h:
        got: list[tuple[dict[str, Any] | None, float]] = []

        async def parked() -> None:
            task = await h.poll_wf("w1", timeout=10)
            got.append((task, trio.current_time()))

        with trio.fail_after(8):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(parked)
                await trio.sleep(0.5)
                command = StartCommand(
                    namespace="default",
                    workflow_id="wf-silent",
                    workflow_type="greeter",
                    task_queue=Q,
                    input_blob=ARGS["blob"],
                )
                outcome = await connect_once(db_dsn, start_workflow, command)
                inserted_at = trio.current_time()
                assert (
                    outcome.verdict is Verdict.CREATED
                )  # its wakes are dropped: nobody publishes them
        [(task, returned_at)] = got
        assert task is not None and task["workflow_id"] == "wf-silent"
        assert returned_at - inserted_at < 1.0
