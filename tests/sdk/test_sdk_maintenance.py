"""SDK 2.12.0 ``repair_workflow`` and ``archive_workflow`` on dwtrio (client and worker in a
subprocess), asserted on what the SDK parsed. SDK 2.12.0 has no debug call."""

from __future__ import annotations

import pytest

from dwtrio.store.pool import Conn, connect_once

from conftest import RunningServer, StartServer
from sdk_helpers import history, run_driver, start_sdk_server

DRIVER = "maintenance_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server, task_repair_interval_s=3600.0)


async def test_repair_workflow_recreates_a_lost_task(
    sdk_server: RunningServer, db_dsn: str
) -> None:
    started = await run_driver(sdk_server, DRIVER, "repair-start")
    first = started["first"]
    assert first["type"] == "WorkflowCommandResult"
    assert first["outcome"] == "repair_not_needed" and first["command_status"] == "accepted"
    assert first["workflow_id"] == started["workflow_id"]
    assert first["run_id"] == started["run_id"] and first["command_id"]

    async def lose_task(conn: Conn) -> None:
        await conn.execute("DELETE FROM workflow_tasks WHERE run_id = $1", started["run_id"])

    await connect_once(db_dsn, lose_task)
    out = await run_driver(
        sdk_server, DRIVER, f"repair-run:{started['workflow_id']}:{started['queue']}"
    )
    repaired = out["repaired"]
    assert repaired["outcome"] == "repair_dispatched" and repaired["command_status"] == "accepted"
    assert repaired["command_id"] != first["command_id"]
    assert repaired["repair"]["missing_workflow_task"] == "not_started"
    assert out["result"] == "hello ann"
    types = [
        e["event_type"]
        for e in await history(sdk_server, started["workflow_id"], started["run_id"])
    ]
    assert types.count("RepairRequested") == 1 and types[-1] == "WorkflowCompleted"


async def test_archive_workflow(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "archive")
    assert out["result"] == "hello bo"
    archived = out["archived"]
    assert archived["type"] == "WorkflowCommandResult"
    assert archived["outcome"] == "archived" and archived["command_status"] == "accepted"
    assert archived["workflow_id"] == out["workflow_id"] and archived["run_id"] == out["run_id"]
    assert archived["reason"] == "tidy" and archived["archived_at"]
    again = out["again"]
    assert again["outcome"] == "archive_not_needed" and again["command_status"] == "accepted"
    assert again["archived_at"] == archived["archived_at"]
    assert out["open"] == {"type": "ServerError", "status": 409, "reason": "run_not_closed"}
    # Hidden from the default list, still described.
    assert out["workflow_id"] not in out["listed"]
    assert any(w.startswith("archive-open-") for w in out["listed"])
    assert out["described"] == {"status": "completed", "run_id": out["run_id"]}
