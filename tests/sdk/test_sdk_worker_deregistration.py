"""SDK 2.12.0 fenced worker deregistration against dwtrio (driver in a subprocess).

The SDK Worker reads ``worker_deregistration_fencing`` from cluster/info, checks its
every field (a wrong one would stop it from starting), keeps the ``registration_token``
its registration was answered with, and on shutdown deregisters with
``POST /worker/registrations/{id}/deregister``. The server side is read from the
database: only the fenced path marks an incarnation ``deregistered`` (the unfenced
DELETE marks it ``superseded``).
"""

from __future__ import annotations

from typing import Any

import pytest

from dwtrio.store.pool import Conn, connect_once

from conftest import RunningServer, StartServer
from sdk_helpers import run_driver, start_sdk_server

DRIVER = "worker_deregistration_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


async def incarnations(dsn: str, worker_id: str) -> dict[str, str]:
    """token -> status of the worker id's incarnations, as the server stored them."""

    async def read(conn: Conn) -> dict[str, str]:
        rows = await conn.fetch(
            "SELECT token, status FROM worker_registration_incarnations WHERE worker_id = $1",
            worker_id,
        )
        return {r["token"]: r["status"] for r in rows}

    return await connect_once(dsn, read)


def refusal(err: dict[str, Any] | None, status: int, reason: str, token: str) -> None:
    assert err is not None
    assert (err["type"], err["status"], err["reason"]) == ("ServerError", status, reason), err
    assert err["body"]["registration_token"] == token
    assert err["body"]["retryable"] is False


async def test_a_stopping_worker_deregisters_with_its_token(
    sdk_server: RunningServer, db_dsn: str
) -> None:
    out = await run_driver(sdk_server, DRIVER, "shutdown")
    assert out["fenced"] is True  # the SDK accepted the advertised contract
    token = out["token"]
    assert isinstance(token, str) and len(token) == 32
    assert out["result"] == "hi"
    assert out["before_stop"] == "active"
    assert out["stop_error"] is None
    assert out["after_stop"] == "deregistered"
    assert await incarnations(db_dsn, out["worker_id"]) == {token: "deregistered"}
    receipt = out["replayed"]
    assert {k: receipt[k] for k in ("worker_id", "registration_token", "outcome")} == {
        "worker_id": out["worker_id"],
        "registration_token": token,
        "outcome": "deregistered",
    }
    assert receipt["recovered_workflow_task_count"] == 0


async def test_a_stale_worker_cannot_deregister_the_newer_one(
    sdk_server: RunningServer, db_dsn: str
) -> None:
    out = await run_driver(sdk_server, DRIVER, "stale")
    older, newer = out["older_token"], out["newer_token"]
    assert older != newer
    # The older process's shutdown is refused: its registration was replaced.
    refusal(out["older_stop_error"], 409, "worker_registration_lost_authority", older)
    assert out["after_older_stop"] == "active"
    assert out["result"] == "still here"
    assert out["newer_stop_error"] is None
    assert out["after_newer_stop"] == "deregistered"
    assert await incarnations(db_dsn, out["worker_id"]) == {
        older: "superseded",
        newer: "deregistered",
    }


async def test_the_client_calls_by_hand(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "client")
    worker_id = out["worker_id"]
    refusal(out["stale"], 409, "worker_registration_lost_authority", out["first"])
    refusal(out["unknown"], 404, "worker_registration_token_not_found", "f" * 32)
    receipt = out["receipt"]
    assert receipt["registration_token"] == out["second"]
    assert receipt["worker_id"] == worker_id and receipt["outcome"] == "deregistered"
    assert out["replayed"] == receipt
    assert out["unfenced"]["outcome"] == "deregistered"
    assert "registration_token" not in out["unfenced"]
    assert out["unfenced_again"]["outcome"] == "already_deregistered"
    refusal(out["after_unfenced"], 409, "worker_registration_lost_authority", out["third"])
