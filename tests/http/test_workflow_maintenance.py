"""Repair and archive of a workflow run over real HTTP, and archived runs in the list.

Contract: control-plane.md §2.4 (operations ``repair``, ``archive``), §5.6
(command rules, ``request_id``), §5.11; docs/workflow-maintenance.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_worker_plane import activity_cmd
from test_workflow_commands import COMMAND_KEYS, TOKEN, Client, Q, envelope_of

from dwtrio.store.pool import Conn, connect_once

from conftest import CP, WP, RunningServer, StartServer

#: Task repair never runs on its own here: what is repaired, the command repaired.
NO_BACKGROUND_REPAIR = {"task_repair_interval_s": 3600.0}


@pytest.fixture
async def c(start_server: StartServer) -> AsyncIterator[Client]:
    server: RunningServer = await start_server(
        admin_token=None, auth_token=TOKEN, **NO_BACKGROUND_REPAIR
    )
    async with server.client(TOKEN, **CP) as cc, server.client(TOKEN, **WP) as wc:
        yield Client(cc, wc)


async def sql(dsn: str, statement: str, *args: Any) -> None:
    async def run(conn: Conn) -> None:
        await conn.execute(statement, *args)

    await connect_once(dsn, run)


async def event_types(c: Client, wf: str, run_id: str) -> list[str]:
    return [e["event_type"] for e in await c.history(wf, run_id)]


async def finish(c: Client, wf: str) -> str:
    """Start a workflow and complete it; its run id."""
    run_id = await c.start(wf)
    await c.complete_wf(await c.wf_task(), [{"type": "complete_workflow", "result": None}])
    return run_id


# --- repair ------------------------------------------------------------------------------
async def test_repair_of_a_healthy_run_is_not_needed(c: Client) -> None:
    run_id = await c.start("rp-ok")
    body = await c.command("/api/workflows/rp-ok/repair", {"request_id": "r1"})
    assert set(body) == COMMAND_KEYS | {"repair"}
    assert body["outcome"] == "repair_not_needed" and body["command_status"] == "accepted"
    assert body["run_id"] == run_id and body["target_scope"] == "instance"
    assert body["repair"] == {
        "workflow_leases_released": 0,
        "activity_leases_released": 0,
        "missing_workflow_task": None,
        "created_task_id": None,
    }
    cp = envelope_of(body, "repair", 200)
    assert cp["outcome"] == "repair_not_needed" and cp["command_status"] == "accepted"
    assert "RepairRequested" not in await event_types(c, "rp-ok", run_id)
    # A settled run waiting for a signal needs no task either.
    await c.settle(await c.wf_task())
    again = await c.command("/api/workflows/rp-ok/repair")
    assert again["outcome"] == "repair_not_needed"
    assert await c.poll("workflow", timeout=0) is None


async def test_repair_recreates_a_workflow_task_deleted_by_hand(c: Client, db_dsn: str) -> None:
    run_id = await c.start("rp-lost")
    await sql(db_dsn, "DELETE FROM workflow_tasks WHERE run_id = $1", run_id)
    assert await c.poll("workflow", timeout=0) is None
    body = await c.command("/api/workflows/rp-lost/repair")
    assert body["outcome"] == "repair_dispatched" and body["command_status"] == "accepted"
    assert body["repair"]["missing_workflow_task"] == "not_started"
    created = body["repair"]["created_task_id"]
    assert created
    task = await c.wf_task()
    assert task["task_id"] == created and task["run_id"] == run_id
    assert "RepairRequested" in [e["event_type"] for e in task["history_events"]]
    # Repaired: a second repair has nothing to do (the task is leased now).
    assert (await c.command("/api/workflows/rp-lost/repair"))["outcome"] == "repair_not_needed"


async def test_repair_recreates_the_task_of_a_signal_whose_task_was_lost(
    c: Client, db_dsn: str
) -> None:
    run_id = await c.waiting("rp-sig")
    await c.command("/api/workflows/rp-sig/signal/go", {}, 202)
    await sql(db_dsn, "DELETE FROM workflow_tasks WHERE run_id = $1 AND state = 'ready'", run_id)
    body = await c.command(f"/api/workflows/rp-sig/runs/{run_id}/repair")
    assert body["outcome"] == "repair_dispatched" and body["target_scope"] == "run"
    assert body["repair"]["missing_workflow_task"] == "unseen_signal"
    task = await c.wf_task()
    assert "SignalReceived" in [e["event_type"] for e in task["history_events"]]


async def test_repair_releases_an_expired_workflow_task_lease(c: Client, db_dsn: str) -> None:
    run_id = await c.start("rp-lease")
    first = await c.wf_task()
    await sql(
        db_dsn,
        "UPDATE workflow_tasks SET lease_expires_at = now() - interval '1 second'"
        " WHERE run_id = $1",
        run_id,
    )
    body = await c.command("/api/workflows/rp-lease/repair")
    assert body["outcome"] == "repair_dispatched"
    assert body["repair"]["workflow_leases_released"] == 1
    assert body["repair"]["created_task_id"] is None  # the same task, ready again
    second = await c.wf_task()
    assert second["task_id"] == first["task_id"]
    assert second["workflow_task_attempt"] == first["workflow_task_attempt"] + 1


async def test_repair_releases_an_expired_activity_lease(c: Client, db_dsn: str) -> None:
    run_id = await c.start("rp-act")
    await c.complete_wf(await c.wf_task(), [activity_cmd(queue=Q)])
    act = await c.poll("activity")
    assert act is not None
    await sql(
        db_dsn,
        "UPDATE workflow_tasks SET lease_expires_at = now() - interval '1 second'"
        " WHERE run_id = $1 AND kind = 'activity'",
        run_id,
    )
    body = await c.command("/api/workflows/rp-act/repair")
    assert body["outcome"] == "repair_dispatched"
    assert body["repair"]["activity_leases_released"] == 1
    # No business deadline passed: the activity is delivered again, even with one attempt.
    types = await event_types(c, "rp-act", run_id)
    assert "ActivityRetryScheduled" in types and types[-1] == "RepairRequested"
    assert "ActivityTimedOut" not in types
    again = await c.poll("activity")
    assert again is not None and again["attempt_number"] == 2


async def test_repair_of_a_closed_run_is_not_needed(c: Client) -> None:
    await finish(c, "rp-done")
    body = await c.command("/api/workflows/rp-done/repair")
    assert body["outcome"] == "repair_not_needed" and body["command_status"] == "accepted"


async def test_repair_request_id_is_idempotent(c: Client, db_dsn: str) -> None:
    run_id = await c.start("rp-dup")
    await sql(db_dsn, "DELETE FROM workflow_tasks WHERE run_id = $1", run_id)
    first = await c.command("/api/workflows/rp-dup/repair", {"request_id": "k"})
    again = await c.command("/api/workflows/rp-dup/repair", {"request_id": "k"})
    assert first["outcome"] == again["outcome"] == "repair_dispatched"
    assert again["command_id"] == first["command_id"] and again["retained"] is True
    assert (await event_types(c, "rp-dup", run_id)).count("RepairRequested") == 1
    conflict = await c.command(
        f"/api/workflows/rp-dup/runs/{run_id}/repair", {"request_id": "k"}, 409
    )
    assert conflict["reason"] == "request_id_conflict"
    assert conflict["retained_command_type"] == "repair"
    assert conflict["control_plane"]["operation"] == "repair"


async def test_repair_refusals(c: Client) -> None:
    unknown = await c.command("/api/workflows/nope/repair", {}, 404)
    assert unknown["reason"] == "instance_not_found"
    assert unknown["control_plane"]["operation"] == "repair"
    await c.start("rp-ref")
    old = await c.command("/api/workflows/rp-ref/runs/someotherrun/repair", {}, 409)
    assert old["reason"] == "historical_run_command_rejected" and old["target_scope"] == "run"
    bad = await c.command("/api/workflows/rp-ref/repair", {"request_id": "x" * 256}, 422)
    assert "request_id" in bad["errors"]


# --- archive -----------------------------------------------------------------------------
async def test_archive_a_closed_run(c: Client, db_dsn: str) -> None:
    run_id = await finish(c, "ar-1")
    body = await c.command("/api/workflows/ar-1/archive", {"reason": "done with it"})
    assert set(body) == COMMAND_KEYS | {"archived_at"}
    assert body["outcome"] == "archived" and body["command_status"] == "accepted"
    assert body["reason"] == "done with it" and body["archived_at"].endswith("Z")
    envelope_of(body, "archive", 200)

    async def stamp(conn: Conn) -> tuple[Any, ...]:
        row = await conn.fetchrow(
            "SELECT archived_at IS NOT NULL, archive_command_id, archive_reason"
            " FROM workflow_runs WHERE id = $1",
            run_id,
        )
        return tuple(row)

    assert await connect_once(db_dsn, stamp) == (True, body["command_id"], "done with it")
    again = await c.command(f"/api/workflows/ar-1/runs/{run_id}/archive")
    assert again["outcome"] == "archive_not_needed" and again["command_status"] == "accepted"
    assert again["archived_at"] == body["archived_at"]
    assert await connect_once(db_dsn, stamp) == (True, body["command_id"], "done with it")
    # Still readable: describe, history.
    described = await c.describe("ar-1")
    assert described["run_id"] == run_id and described["actions"]["can_archive"] is False
    assert (await event_types(c, "ar-1", run_id))[-1] == "WorkflowCompleted"


async def test_archive_of_an_open_run_is_refused(c: Client) -> None:
    await c.start("ar-open")
    body = await c.command("/api/workflows/ar-open/archive", {"request_id": "a1"}, 409)
    assert body["outcome"] == "rejected_run_not_closed"
    assert body["reason"] == body["rejection_reason"] == "run_not_closed"
    assert body["command_status"] == "rejected"
    assert "only a closed run" in body["message"]
    cp = envelope_of(body, "archive", 409)
    assert cp["rejection_reason"] == "run_not_closed"
    again = await c.command("/api/workflows/ar-open/archive", {"request_id": "a1"}, 409)
    assert again["retained"] is True and again["command_id"] == body["command_id"]


async def test_archive_request_id_and_refusals(c: Client) -> None:
    await finish(c, "ar-dup")
    first = await c.command("/api/workflows/ar-dup/archive", {"request_id": "k", "reason": "a"})
    again = await c.command("/api/workflows/ar-dup/archive", {"request_id": "k", "reason": "a"})
    assert again["retained"] is True and again["outcome"] == "archived"
    assert again["command_id"] == first["command_id"]
    conflict = await c.command(
        "/api/workflows/ar-dup/archive", {"request_id": "k", "reason": "b"}, 409
    )
    assert conflict["reason"] == "request_id_conflict" and conflict["conflict"] == ["reason"]
    unknown = await c.command("/api/workflows/nope/runs/r/archive", {}, 404)
    assert unknown["reason"] == "instance_not_found"
    assert unknown["control_plane"]["operation"] == "archive"
    old = await c.command("/api/workflows/ar-dup/runs/other/archive", {}, 409)
    assert old["reason"] == "historical_run_command_rejected"
    bad = await c.command("/api/workflows/ar-dup/archive", {"reason": "x" * 1001}, 422)
    assert "reason" in bad["errors"]


async def test_archived_runs_leave_the_default_list(c: Client) -> None:
    await finish(c, "ls-archived")
    await finish(c, "ls-kept")
    await c.start("ls-open")
    await c.command("/api/workflows/ls-archived/archive")

    async def listed(**params: str) -> list[str]:
        r = await c.cc.get("/api/workflows", params=params)
        assert r.status_code == 200, r.text
        return sorted(w["workflow_id"] for w in r.json()["workflows"])

    assert await listed() == ["ls-kept", "ls-open"]
    assert await listed(archived="false") == ["ls-kept", "ls-open"]
    assert await listed(archived="true") == ["ls-archived"]
    assert await listed(archived="any") == ["ls-archived", "ls-kept", "ls-open"]
    assert await listed(archived="true", status="completed") == ["ls-archived"]
    assert await listed(archived="true", query="WorkflowId = 'ls-kept'") == []
    r = await c.cc.get("/api/workflows", params={"archived": "yes"})
    assert r.status_code == 422 and "archived" in r.json()["errors"]
