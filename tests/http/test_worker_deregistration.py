"""Fenced worker deregistration over real HTTP: POST /api/worker/registrations/{id}/deregister.

Contract: SDK 2.12.0 ``Client.deregister_worker_registration`` with a token (its
request body and the receipt it checks), the reference's fenced deregistration
(token per registration; 404 unknown token, 409 lost authority, 410 expired receipt;
a completed receipt replays even after a newer registration of the same worker id).
The SDK worker's own shutdown through this route: tests/sdk/test_sdk_worker_deregistration.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_worker_plane import Harness, activity_cmd, register_body, strip, wbody

from dwtrio.manifest import worker_deregistration_fencing
from dwtrio.store import workers
from dwtrio.store.pool import Conn, connect_once

from conftest import WP, StartServer

TOKEN = "t"


@pytest.fixture
async def h(start_server: StartServer) -> Any:
    async with Harness.open(start_server, TOKEN, task_repair_interval_s=600) as hh:
        yield hh


async def register(h: Harness, worker_id: str = "w1") -> str:
    body = await h.post("/api/worker/register", register_body(worker_id), 201)
    return str(body["registration_token"])


async def fenced(
    h: Harness, worker_id: str, body: Any, status: int = 200, reason: str | None = None
) -> dict[str, Any]:
    r = await h.wc.post(f"/api/worker/registrations/{worker_id}/deregister", json=body)
    return wbody(r, status, reason)


def refusal(body: dict[str, Any], worker_id: str, token: str) -> None:
    assert body["worker_id"] == worker_id
    assert body["registration_token"] == token
    assert body["retryable"] is False


async def roster_status(h: Harness, worker_id: str) -> str | None:
    r = await h.cc.get(f"/api/workers/{worker_id}")
    return str(r.json()["status"]) if r.status_code == 200 else None


async def test_the_capability_is_advertised_with_the_sdk_contract(h: Harness) -> None:
    info = (await h.cc.get("/api/cluster/info")).json()
    caps = info["worker_protocol"]["server_capabilities"]
    assert caps["worker_deregistration_fencing"] == {
        "supported": True,
        "schema": "durable-workflow.v2.worker-deregistration.v1",
        "endpoint": "/worker/registrations/{workerId}/deregister",
        "receipt_retention_seconds": 600,
    }
    assert worker_deregistration_fencing() == caps["worker_deregistration_fencing"]
    # every worker response carries it too
    body = await h.post("/api/worker/heartbeat", {"worker_id": "nobody"}, 404)
    assert body["server_capabilities"]["worker_deregistration_fencing"]["supported"] is True


async def test_fenced_deregistration_releases_leases_and_replays_its_receipt(
    h: Harness,
) -> None:
    token = await register(h)
    task = await h.begin("wf-fenced", "w1")
    await h.complete_wf(task, [activity_cmd()])
    activity = await h.act_task("w1")
    held = await h.begin("wf-fenced-2", "w1")
    body = await fenced(h, "w1", {"registration_token": token})
    receipt = strip(body)
    assert receipt == {
        "worker_id": "w1",
        "registration_token": token,
        "outcome": "deregistered",
        "recovered_workflow_task_count": 1,
        "recovered_activity_task_count": 1,
    }
    assert await roster_status(h, "w1") == "deregistered"
    # The workflow task and the activity are offered again at once.
    again = await h.wf_task("w2", timeout=5)
    assert again["task_id"] == held["task_id"] and again["workflow_task_attempt"] == 2
    retried = await h.act_task("w2", timeout=5)
    assert retried["task_id"] == activity["task_id"] and retried["attempt_number"] == 2
    # The same request again (a lost answer): the same receipt, nothing more released.
    assert strip(await fenced(h, "w1", {"registration_token": token})) == receipt
    # A newer registration of the worker id does not change the old receipt, and the
    # old receipt does not touch the newer registration.
    newer = await register(h)
    assert newer != token
    assert strip(await fenced(h, "w1", {"registration_token": token})) == receipt
    assert await roster_status(h, "w1") == "active"


async def test_a_stale_token_cannot_remove_a_newer_registration(h: Harness) -> None:
    old = await register(h)
    new = await register(h)  # the same worker id registered again (a restarted process)
    held = await h.begin("wf-stale", "w1")
    body = await fenced(
        h, "w1", {"registration_token": old}, 409, "worker_registration_lost_authority"
    )
    refusal(body, "w1", old)
    # Nothing changed: the newer registration keeps its lease and its status.
    assert await roster_status(h, "w1") == "active"
    await h.wf_call(held, "heartbeat")
    # Its own token removes it.
    body = await fenced(h, "w1", {"registration_token": new})
    assert body["registration_token"] == new and body["recovered_workflow_task_count"] == 1
    # ... and the old token still has no authority (superseded, not deregistered).
    await fenced(h, "w1", {"registration_token": old}, 409, "worker_registration_lost_authority")


async def test_unfenced_deletion_takes_the_tokens_authority(h: Harness) -> None:
    token = await register(h)
    body = wbody(await h.wc.delete("/api/worker/registrations/w1"), 200)
    assert "registration_token" not in body and body["outcome"] == "deregistered"
    body = await fenced(
        h, "w1", {"registration_token": token}, 409, "worker_registration_lost_authority"
    )
    refusal(body, "w1", token)
    # The unfenced DELETE keeps its own semantics (and its 404 for the unknown).
    wbody(await h.wc.delete("/api/worker/registrations/ghost"), 404, "worker_not_found")


async def test_unknown_tokens_and_other_workers_tokens(h: Harness) -> None:
    token = await register(h, "w1")
    other = await register(h, "w2")
    unknown = "0" * 32
    body = await fenced(
        h, "w1", {"registration_token": unknown}, 404, "worker_registration_token_not_found"
    )
    refusal(body, "w1", unknown)
    # A token is scoped to its worker id: w2's token does not remove w1.
    await fenced(h, "w1", {"registration_token": other}, 404, "worker_registration_token_not_found")
    await fenced(h, "ghost", {"registration_token": token}, 404)
    assert await roster_status(h, "w1") == "active"
    assert await roster_status(h, "w2") == "active"


async def test_an_expired_receipt_is_gone_and_then_pruned(h: Harness, db_dsn: str) -> None:
    token = await register(h)
    await fenced(h, "w1", {"registration_token": token})

    async def age(conn: Conn) -> None:
        await conn.execute(
            "UPDATE worker_registration_incarnations"
            " SET finished_at = now() - interval '601 seconds' WHERE token = $1",
            token,
        )

    await connect_once(db_dsn, age)
    body = await fenced(
        h, "w1", {"registration_token": token}, 410, "worker_registration_receipt_expired"
    )
    refusal(body, "w1", token)
    # The retention loop's receipt pass (this query) deletes it; then the token is unknown.
    pruned = await connect_once(db_dsn, workers.prune_incarnations, 600, 100)
    assert pruned == 1
    await fenced(h, "w1", {"registration_token": token}, 404, "worker_registration_token_not_found")


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"registration_token": None},
        {"registration_token": 7},
        {"registration_token": "A" * 32},
        {"registration_token": "a" * 31},
        {"registration_token": "g" * 32},
        {"registration_token": "a" * 32 + "\n"},
    ],
)
async def test_bad_bodies_are_refused_422(h: Harness, body: Any) -> None:
    await register(h)
    if body is None:
        r = await h.wc.post("/api/worker/registrations/w1/deregister")
    else:
        r = await h.wc.post("/api/worker/registrations/w1/deregister", json=body)
    out = wbody(r, 422, "validation_failed")
    assert set(out["errors"]) <= {"registration_token", "body"}
    assert await roster_status(h, "w1") == "active"


async def test_only_the_worker_role_may_deregister(start_server: StartServer) -> None:
    server = await start_server(worker_token="w", operator_token="o")
    path = "/api/worker/registrations/w1/deregister"
    async with (
        server.client("w", **WP) as wc,
        server.client("o", **WP) as oc,
        server.client(None, **WP) as anonymous,
    ):
        r = await wc.post("/api/worker/register", json=register_body("w1"))
        token = r.json()["registration_token"]
        body = wbody(await oc.post(path, json={"registration_token": token}), 403, "forbidden")
        assert body["allowed_roles"] == ["worker"]
        wbody(await anonymous.post(path, json={"registration_token": token}), 401, "unauthorized")
        body = wbody(await wc.post(path, json={"registration_token": token}), 200)
        assert body["outcome"] == "deregistered"
