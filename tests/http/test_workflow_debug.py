"""The debug snapshot of a run over real HTTP, in several run states.

Contract: control-plane.md §2.4 (operation ``debug_workflow``: ``run_id`` and
``diagnostic_status`` are its success fields), §5.5; docs/workflow-maintenance.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_worker_plane import activity_cmd
from test_workflow_commands import TOKEN, Client, Q, envelope_of
from test_workflow_maintenance import NO_BACKGROUND_REPAIR, finish, sql

from conftest import CP, WP, RunningServer, StartServer

TOP_KEYS = {
    "generated_at",
    "workflow_id",
    "run_id",
    "namespace",
    "diagnostic_status",
    "execution",
    "pending_workflow_tasks",
    "pending_activities",
    "task_queue",
    "recent_failures",
    "compatibility",
    "findings",
    "last_event",
    "limits",
    "control_plane",
}


@pytest.fixture
async def c(start_server: StartServer) -> AsyncIterator[Client]:
    server: RunningServer = await start_server(
        admin_token=None, auth_token=TOKEN, **NO_BACKGROUND_REPAIR
    )
    async with server.client(TOKEN, **CP) as cc, server.client(TOKEN, **WP) as wc:
        yield Client(cc, wc)


async def debug(c: Client, path: str, status: int = 200, **params: str) -> dict[str, Any]:
    r = await c.cc.get(path, params=params)
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    if status == 200:
        assert set(body) == TOP_KEYS
        cp = envelope_of(body, "debug_workflow", 200)
        assert cp["run_id"] == body["run_id"]
        assert cp["diagnostic_status"] == body["diagnostic_status"]
    return body


def codes(body: dict[str, Any]) -> list[str]:
    return [f["code"] for f in body["findings"]]


async def test_a_started_run_without_pollers_needs_attention(c: Client) -> None:
    run_id = await c.start("dbg-new")
    body = await debug(c, "/api/workflows/dbg-new/debug")
    assert body["run_id"] == run_id and body["workflow_id"] == "dbg-new"
    assert body["namespace"] == "default" and body["generated_at"].endswith("Z")
    assert body["diagnostic_status"] == "needs_attention"
    assert codes(body) == ["no_active_pollers"]
    assert body["findings"][0]["severity"] == "error"
    ex = body["execution"]
    assert ex["status"] == "pending" and ex["task_queue"] == Q and ex["is_terminal"] is False
    assert ex["wait"]["workflow_task"] == "ready"
    (task,) = body["pending_workflow_tasks"]
    assert task["status"] == "ready" and task["task_type"] == "workflow"
    assert task["lease_owner"] is None and task["lease_expired"] is False
    assert body["task_queue"]["name"] == Q
    assert body["task_queue"]["stats"]["workflow_tasks"]["ready_count"] == 1
    assert body["last_event"]["event_type"] == "WorkflowStarted"
    assert "payload" not in body["last_event"]
    assert body["limits"] == {
        "pending_workflow_tasks": 25,
        "pending_activities": 25,
        "recent_failures": 10,
    }
    with_payload = await debug(
        c, f"/api/workflows/dbg-new/runs/{run_id}/debug", include_last_event_payload="true"
    )
    assert with_payload["last_event"]["payload"]["workflow_instance_id"] == "dbg-new"


async def test_a_leased_task_is_running_and_an_expired_lease_needs_attention(
    c: Client, db_dsn: str
) -> None:
    run_id = await c.start("dbg-lease")
    await c.wf_task()
    body = await debug(c, "/api/workflows/dbg-lease/debug")
    assert body["diagnostic_status"] == "running" and codes(body) == []
    (task,) = body["pending_workflow_tasks"]
    assert task["status"] == "leased" and task["lease_owner"] == "w1"
    assert task["workflow_task_attempt"] == 1
    await sql(
        db_dsn,
        "UPDATE workflow_tasks SET lease_expires_at = now() - interval '1 second'"
        " WHERE run_id = $1",
        run_id,
    )
    body = await debug(c, "/api/workflows/dbg-lease/debug")
    assert body["diagnostic_status"] == "needs_attention"
    assert "expired_leases" in codes(body)
    assert body["pending_workflow_tasks"][0]["lease_expired"] is True
    await c.command("/api/workflows/dbg-lease/repair")
    body = await debug(c, "/api/workflows/dbg-lease/debug")
    assert "expired_leases" not in codes(body)


async def test_a_run_waiting_on_an_activity_and_on_a_signal(c: Client) -> None:
    await c.start("dbg-act")
    await c.complete_wf(await c.wf_task(), [activity_cmd(queue=Q)])
    body = await debug(c, "/api/workflows/dbg-act/debug")
    (act,) = body["pending_activities"]
    assert act["activity_type"] == "greet" and act["task_status"] == "ready"
    assert body["execution"]["wait"]["pending_activities"] == 1
    assert body["pending_workflow_tasks"] == []
    await c.poll("activity")
    body = await debug(c, "/api/workflows/dbg-act/debug")
    assert body["diagnostic_status"] == "running"
    assert body["pending_activities"][0]["lease_owner"] == "w1"

    await c.waiting("dbg-sig")
    body = await debug(c, "/api/workflows/dbg-sig/debug")
    assert body["diagnostic_status"] == "waiting" and codes(body) == []
    assert body["execution"]["status"] == "waiting"
    assert body["execution"]["wait"]["workflow_task"] is None


async def test_a_lost_workflow_task_is_a_finding(c: Client, db_dsn: str) -> None:
    run_id = await c.start("dbg-lost")
    await sql(db_dsn, "DELETE FROM workflow_tasks WHERE run_id = $1", run_id)
    body = await debug(c, "/api/workflows/dbg-lost/debug")
    assert body["diagnostic_status"] == "needs_attention"
    assert codes(body) == ["missing_workflow_task"]
    assert "not_started" in body["findings"][0]["message"]


async def test_a_failing_workflow_task_is_listed_in_recent_failures(c: Client) -> None:
    await c.start("dbg-fail")
    task = await c.wf_task()
    await c.worker(
        f"/api/worker/workflow-tasks/{task['task_id']}/fail",
        {
            "lease_owner": task["lease_owner"],
            "workflow_task_attempt": task["workflow_task_attempt"],
            "failure": {"message": "boom", "type": "RuntimeError"},
        },
    )
    body = await debug(c, "/api/workflows/dbg-fail/debug")
    assert "workflow_task_failing" in codes(body)
    (failure,) = body["recent_failures"]
    assert failure["source"] == "workflow_task" and failure["message"] == "boom"
    assert failure["source_id"] == task["task_id"]


async def test_a_closed_and_archived_run(c: Client) -> None:
    run_id = await finish(c, "dbg-done")
    body = await debug(c, f"/api/workflows/dbg-done/runs/{run_id}/debug")
    assert body["diagnostic_status"] == "terminal" and codes(body) == []
    assert body["execution"]["is_terminal"] is True
    assert body["execution"]["status"] == "completed"
    await c.command("/api/workflows/dbg-done/archive", {"reason": "old"})
    body = await debug(c, "/api/workflows/dbg-done/debug")
    assert body["diagnostic_status"] == "terminal" and codes(body) == ["archived"]
    assert body["execution"]["archived_at"] and body["execution"]["archive_reason"] == "old"


async def test_debug_refusals(c: Client) -> None:
    body = await debug(c, "/api/workflows/nope/debug", 404)
    assert body["reason"] == "instance_not_found"
    assert body["control_plane"]["operation"] == "debug_workflow"
    await c.start("dbg-ref")
    body = await debug(c, "/api/workflows/dbg-ref/runs/missing/debug", 404)
    assert body["reason"] == "run_not_found"
    body = await debug(c, "/api/workflows/dbg-ref/debug", 422, include_last_event_payload="maybe")
    assert "include_last_event_payload" in body["errors"]
