"""Standalone activities over real HTTP: /api/activities (start, describe, list), the
activity task a worker gets for one, the host run's close, refusals and roles.

Contract: docs/standalone-activities.md (the SDK 2.12.0 calls are exercised in
tests/sdk/test_sdk_standalone_activities.py).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import pytest
import trio

from conftest import ADMIN_TOKEN, CP, WP, RunningServer, StartServer

WORKER, OPERATOR = "tok-worker", "tok-operator"
Q = "saq"
HOST = "dw.standalone_activity"


@attrs.define
class Http:
    cc: httpx.AsyncClient  # operator, control plane
    wc: httpx.AsyncClient  # worker plane
    admin: httpx.AsyncClient

    async def start(self, status: int = 201, **body: Any) -> dict[str, Any]:
        r = await self.cc.post(
            "/api/activities", json={"activity_type": "charge", "task_queue": Q, **body}
        )
        assert r.status_code == status, r.text
        return r.json()  # type: ignore[no-any-return]

    async def describe(self, activity_id: str, status: int = 200) -> dict[str, Any]:
        r = await self.cc.get(f"/api/activities/{activity_id}")
        assert r.status_code == status, r.text
        return r.json()  # type: ignore[no-any-return]

    async def poll(self, kind: str = "activity", timeout: int = 2) -> dict[str, Any] | None:
        r = await self.wc.post(
            f"/api/worker/{kind}-tasks/poll",
            json={"worker_id": "w1", "task_queue": Q, "timeout_seconds": timeout},
        )
        assert r.status_code == 200, r.text
        return r.json()["task"]  # type: ignore[no-any-return]

    async def act(
        self, task: dict[str, Any], action: str, status: int = 200, **fields: Any
    ) -> dict[str, Any]:
        r = await self.wc.post(
            f"/api/worker/activity-tasks/{task['task_id']}/{action}",
            json={
                "activity_attempt_id": task["activity_attempt_id"],
                "lease_owner": task["lease_owner"],
                **fields,
            },
        )
        assert r.status_code == status, r.text
        return r.json()  # type: ignore[no-any-return]

    async def history_types(self, activity_id: str, run_id: str) -> list[str]:
        r = await self.cc.get(
            f"/api/workflows/{activity_id}/runs/{run_id}/history", params={"page_size": 100}
        )
        assert r.status_code == 200, r.text
        return [e["event_type"] for e in r.json()["events"]]

    async def runs(self) -> dict[str, int]:
        r = await self.admin.get("/api/system/operator-metrics")
        assert r.status_code == 200, r.text
        return r.json()["operator_metrics"]["runs"]  # type: ignore[no-any-return]


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    # Deadlines are enforced by the pass a test runs, not by the loop.
    return await start_server(
        worker_token=WORKER, operator_token=OPERATOR, timeout_check_interval_s=3600.0
    )


@pytest.fixture
async def h(server: RunningServer) -> AsyncIterator[Http]:
    async with (
        server.client(OPERATOR, **CP) as cc,
        server.client(WORKER, **WP) as wc,
        server.client(ADMIN_TOKEN, **CP) as admin,
    ):
        yield Http(cc, wc, admin)


def assert_error(r: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert body["reason"] == reason and isinstance(body["message"], str) and body["message"]
    return body


# --- the whole path over HTTP ------------------------------------------------------------
async def test_start_poll_complete_describe(h: Http) -> None:
    before = await h.runs()
    started = await h.start(
        activity_id="sa-1",
        activity_class="Billing\\Charge",
        input=[{"cents": 250}],
        business_key="order-1",
        retry_policy={"max_attempts": 2, "backoff_seconds": [1]},
        start_to_close_timeout_seconds=60,
        schedule_to_close_timeout_seconds=600,
        heartbeat_timeout_seconds=30,
    )
    run_id = started["workflow_run_id"]
    assert started == {
        "activity_id": "sa-1",
        "activity_execution_id": started["activity_execution_id"],
        "workflow_id": "sa-1",
        "workflow_run_id": run_id,
        "workflow_type": HOST,
        "activity_type": "charge",
        "activity_class": "Billing\\Charge",
        "task_queue": Q,
        "namespace": "default",
        "status": "running",
        "payload_codec": "avro",
        "started_at": started["started_at"],
        "schedule_to_start_deadline_at": None,
        "schedule_to_close_deadline_at": started["schedule_to_close_deadline_at"],
        "command_status": "accepted",
        "command_source": "control_plane",
    }
    assert started["started_at"] and started["schedule_to_close_deadline_at"]
    after_start = await h.runs()
    assert after_start["running"] == before["running"] + 1

    pending = await h.describe("sa-1")
    assert pending["status"] == "running" and pending["activity_status"] == "pending"
    assert pending["attempt_count"] == 0 and pending["result"] is None

    # The host run never gets a workflow task; the activity task is an ordinary one.
    assert await h.poll("workflow", timeout=0) is None
    task = await h.poll()
    assert task is not None
    assert task["workflow_id"] == "sa-1" and task["run_id"] == run_id
    assert task["activity_execution_id"] == started["activity_execution_id"]
    assert task["activity_type"] == "charge" and task["attempt_number"] == 1
    assert task["arguments"]["codec"] == "avro" and task["arguments"]["blob"]
    assert task["retry_policy"] == {"max_attempts": 2, "backoff_seconds": [1]}
    assert set(task["deadlines"]) == {"start_to_close", "schedule_to_close", "heartbeat"}

    running = await h.describe("sa-1")
    assert running["activity_status"] == "running" and running["attempt_count"] == 1
    beat = await h.act(task, "heartbeat", details={"done": 1})
    assert beat["cancel_requested"] is False
    assert (await h.describe("sa-1"))["last_heartbeat_at"]

    done = await h.act(task, "complete", result={"receipt": "r-9"})
    assert done["outcome"] == "completed" and done["next_task_id"] is None
    d = await h.describe("sa-1")
    assert d["status"] == "completed" and d["status_bucket"] == "completed"
    assert d["closed_reason"] == "completed" and d["activity_status"] == "completed"
    assert d["closed_at"] and d["workflow_type"] == HOST and d["business_key"] == "order-1"
    assert d["result"]["codec"] == "avro" and d["result"]["blob"]
    assert await h.poll("workflow", timeout=0) is None
    # The run's output is the activity's result, as the workflow routes show it.
    r = await h.cc.get("/api/workflows/sa-1")
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert r.json()["output"] == {"receipt": "r-9"}
    assert await h.history_types("sa-1", run_id) == [
        "StartAccepted",
        "WorkflowStarted",
        "ActivityScheduled",
        "ActivityStarted",
        "ActivityCompleted",
        "WorkflowCompleted",
    ]
    final = await h.runs()
    assert final["running"] == before["running"]
    assert final["completed"] == before["completed"] + 1
    assert final["total"] == before["total"] + 1


async def test_final_failure_and_retry(h: Http) -> None:
    started = await h.start(activity_id="sa-f", retry_policy={"max_attempts": 2})
    first = await h.poll()
    assert first is not None
    retried = await h.act(first, "fail", failure={"message": "boom", "type": "Oops"})
    assert retried["outcome"] == "retry_scheduled"
    assert (await h.describe("sa-f"))["status"] == "running"
    second = await h.poll()
    assert second is not None and second["attempt_number"] == 2
    failed = await h.act(second, "fail", failure={"message": "boom again", "type": "Oops"})
    assert failed["outcome"] == "failed" and failed["next_task_id"] is None
    d = await h.describe("sa-f")
    assert d["status"] == "failed" and d["closed_reason"] == "failed"
    assert d["activity_status"] == "failed" and d["attempt_count"] == 2 and d["result"] is None
    types = await h.history_types("sa-f", started["workflow_run_id"])
    assert types[-3:] == ["ActivityStarted", "ActivityFailed", "WorkflowFailed"]
    assert await h.poll("workflow", timeout=0) is None


async def test_a_passed_deadline_fails_the_host_run(h: Http) -> None:
    await h.start(activity_id="sa-late", schedule_to_start_timeout_seconds=1)
    await trio.sleep(1.2)
    r = await h.admin.post("/api/system/activity-timeouts/pass", json={})
    assert r.status_code == 200, r.text
    assert r.json()["enforced"] == 1
    d = await h.describe("sa-late")
    assert d["status"] == "failed" and d["closed_reason"] == "timed_out"
    assert d["activity_status"] == "timed_out"
    assert await h.poll(timeout=0) is None and await h.poll("workflow", timeout=0) is None


async def test_cancel_signal_and_update_through_the_workflow_routes(h: Http) -> None:
    await h.start(activity_id="sa-c")
    task = await h.poll()
    assert task is not None
    # A signal is recorded; nothing runs the host run, so no workflow task appears.
    r = await h.cc.post("/api/workflows/sa-c/signal/nudge", json={"input": []})
    assert r.status_code in (200, 202), r.text
    assert await h.poll("workflow", timeout=0) is None
    # An update has no handler to run: refused, and no workflow task either.
    r = await h.cc.post("/api/workflows/sa-c/update/set", json={"input": []})
    err = assert_error(r, 409, "standalone_activity")
    assert err["outcome"] == "rejected_standalone_activity" and err["run_status"] == "running"
    assert await h.poll("workflow", timeout=0) is None
    r = await h.cc.post("/api/workflows/sa-c/cancel", json={"reason": "changed my mind"})
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "cancelled"
    beat = await h.act(task, "heartbeat")
    assert beat["cancel_requested"] is True and beat["can_continue"] is False
    await h.act(task, "complete", status=409, result="late")
    d = await h.describe("sa-c")
    assert d["status"] == "cancelled" and d["closed_reason"] == "cancelled"
    assert d["activity_status"] == "cancelled" and d["result"] is None


async def test_list_filters_pages_and_tokens(h: Http) -> None:
    for n in range(3):
        await h.start(activity_id=f"sa-l{n}")
    task = await h.poll()
    assert task is not None
    await h.act(task, "complete", result=1)
    # A workflow is not a standalone activity.
    r = await h.cc.post("/api/workflows", json={"workflow_type": "wf", "workflow_id": "plain"})
    assert r.status_code == 201, r.text

    async def ids(**params: Any) -> tuple[list[str], Any]:
        r = await h.cc.get("/api/activities", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["activity_count"] == len(body["activities"])
        return [a["activity_id"] for a in body["activities"]], body["next_page_token"]

    assert await ids() == (["sa-l2", "sa-l1", "sa-l0"], None)
    assert await ids(status="completed") == (["sa-l0"], None)
    assert await ids(status="running") == (["sa-l2", "sa-l1"], None)
    assert await ids(status="failed") == ([], None)
    page, token = await ids(page_size=2)
    assert page == ["sa-l2", "sa-l1"] and token
    assert await ids(page_size=2, next_page_token=token) == (["sa-l0"], None)
    # An unreadable token starts again at the first page.
    for bad in ("!!", "é", base64.b64encode(b"-1").decode(), base64.b64encode(b"9" * 40).decode()):
        assert (await ids(page_size=2, next_page_token=bad))[0] == ["sa-l2", "sa-l1"]
    r = await h.cc.get("/api/activities")
    listed = r.json()["activities"][2]
    assert listed == {
        "activity_id": "sa-l0",
        "workflow_run_id": listed["workflow_run_id"],
        "activity_type": "charge",
        "activity_class": "charge",
        "task_queue": Q,
        "status": "completed",
        "status_bucket": "completed",
        "business_key": None,
        "started_at": listed["started_at"],
        "closed_at": listed["closed_at"],
    }


# --- refusals ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "activity_type"),
        ({"activity_type": ""}, "activity_type"),
        ({"activity_type": "  "}, "activity_type"),
        ({"activity_type": 5}, "activity_type"),
        ({"activity_type": "x" * 256}, "activity_type"),
        ({"activity_type": "a", "activity_id": "no spaces"}, "activity_id"),
        ({"activity_type": "a", "activity_id": "x" * 129}, "activity_id"),
        ({"activity_type": "a", "activity_id": 7}, "activity_id"),
        ({"activity_type": "a", "task_queue": 7}, "task_queue"),
        ({"activity_type": "a", "activity_class": ["c"]}, "activity_class"),
        ({"activity_type": "a", "business_key": "k" * 256}, "business_key"),
        ({"activity_type": "a", "input": "scalar"}, "input"),
        ({"activity_type": "a", "input": {"codec": "avro", "blob": 5}}, "input.blob"),
        ({"activity_type": "a", "retry_policy": "often"}, "retry_policy"),
        ({"activity_type": "a", "retry_policy": {"max_attempts": 0}}, "retry_policy.max_attempts"),
        (
            {"activity_type": "a", "retry_policy": {"backoff_seconds": [-1]}},
            "retry_policy.backoff_seconds",
        ),
        (
            {"activity_type": "a", "retry_policy": {"non_retryable_error_types": [1]}},
            "retry_policy.non_retryable_error_types",
        ),
        (
            {"activity_type": "a", "start_to_close_timeout_seconds": 0},
            "start_to_close_timeout_seconds",
        ),
        (
            {"activity_type": "a", "schedule_to_start_timeout_seconds": "5"},
            "schedule_to_start_timeout_seconds",
        ),
        (
            {"activity_type": "a", "schedule_to_close_timeout_seconds": 2**40},
            "schedule_to_close_timeout_seconds",
        ),
        ({"activity_type": "a", "heartbeat_timeout_seconds": True}, "heartbeat_timeout_seconds"),
        ({"activity_type": "a\u0000b"}, "activity_type"),
        ([], "body"),
    ],
)
async def test_start_refuses_bad_input(h: Http, body: Any, field: str) -> None:
    r = await h.cc.post("/api/activities", json=body)
    err = assert_error(r, 422, "validation_failed")
    assert field in err["errors"], err
    # Nothing was started.
    listed = await h.cc.get("/api/activities")
    assert listed.json()["activities"] == []


async def test_start_refuses_bodies_the_gates_refuse(h: Http) -> None:
    r = await h.cc.post(
        "/api/activities", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(r, 400, "malformed_json")


async def test_taken_ids(h: Http) -> None:
    await h.start(activity_id="sa-dup")
    err = await h.start(422, activity_id="sa-dup")
    assert err["reason"] == "validation_failed"
    assert "already been started" in err["errors"]["activity_id"][0]
    r = await h.cc.post("/api/workflows", json={"workflow_type": "wf", "workflow_id": "wf-1"})
    assert r.status_code == 201, r.text
    err = await h.start(422, activity_id="wf-1")
    assert "workflow of type 'wf'" in err["errors"]["activity_id"][0]
    r = await h.admin.post("/api/namespaces", json={"name": "other"})
    assert r.status_code == 201, r.text
    r = await h.cc.post(
        "/api/activities",
        json={"activity_type": "charge", "activity_id": "sa-dup"},
        headers={"X-Namespace": "other"},
    )
    body = assert_error(r, 409, "activity_id_reserved_in_namespace")
    assert body["activity_id"] == "sa-dup" and body["command_status"] == "rejected"
    # The refused starts changed nothing.
    assert (await h.describe("sa-dup"))["activity_status"] == "pending"
    r = await h.cc.get("/api/activities", headers={"X-Namespace": "other"})
    assert r.status_code == 200 and r.json()["activities"] == []


async def test_describe_unknown_ids(h: Http) -> None:
    r = await h.cc.post("/api/workflows", json={"workflow_type": "wf", "workflow_id": "wf-2"})
    assert r.status_code == 201, r.text
    await h.start(activity_id="sa-mine")
    for unknown in ("nobody", "wf-2", "x" * 300, "bad%20id", "nul%00"):
        r = await h.cc.get(f"/api/activities/{unknown}")
        assert_error(r, 404, "activity_not_found")
    # Another namespace does not see it.
    r = await h.admin.post("/api/namespaces", json={"name": "else"})
    assert r.status_code == 201, r.text
    r = await h.cc.get("/api/activities/sa-mine", headers={"X-Namespace": "else"})
    assert_error(r, 404, "activity_not_found")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=cancelled", "status"),
        ("status=bogus", "status"),
        ("page_size=0", "page_size"),
        ("page_size=201", "page_size"),
        ("page_size=ten", "page_size"),
    ],
)
async def test_list_refuses_bad_parameters(h: Http, query: str, field: str) -> None:
    r = await h.cc.get(f"/api/activities?{query}")
    err = assert_error(r, 422, "validation_failed")
    assert field in err["errors"], err


async def test_roles(server: RunningServer) -> None:
    calls = [
        ("POST", "/api/activities", {"activity_type": "charge", "task_queue": Q}),
        ("GET", "/api/activities", None),
        ("GET", "/api/activities/none", None),
    ]
    for method, path, body in calls:
        async with server.client(WORKER, **CP, **WP) as c:
            r = await c.request(method, path, json=body)
        err = assert_error(r, 403, "forbidden")
        assert err["role"] == "worker" and err["allowed_roles"] == ["operator", "admin"]
        for token in (OPERATOR, ADMIN_TOKEN):
            async with server.client(token, **CP) as c:
                r = await c.request(method, path, json=body)
            assert r.status_code in (200, 201, 404), r.text
        async with server.client(None, **CP) as c:
            r = await c.request(method, path, json=body)
        assert_error(r, 401, "unauthorized")


async def test_a_failed_host_run_is_not_redriven(h: Http) -> None:
    started = await h.start(activity_id="sa-rd")
    task = await h.poll()
    assert task is not None
    await h.act(task, "fail", failure={"message": "no", "type": "Oops"})
    run_id = started["workflow_run_id"]
    r = await h.cc.post(f"/api/workflows/sa-rd/runs/{run_id}/redrive", json={})
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["command_status"] == "rejected"
    assert body["rejection_reason"] == "unsupported_history"
    assert "standalone activity" in body["message"]
    # Nothing new: the failed host run stays current, and no workflow task appeared.
    d = await h.describe("sa-rd")
    assert d["workflow_run_id"] == run_id and d["status"] == "failed"
    assert await h.poll("workflow", timeout=0) is None
