"""The worker roster over real HTTP: list, describe, and the admin's deregistration.

Contract: control-plane.md §10 (the worker object, ``namespace`` and
``stale_after_seconds`` on the list, newest heartbeat first, ``stale`` computed
from the last heartbeat, ``404 worker_not_found``, the DELETE receipt), §3.5
(roles: O to read, A to delete; namespace-scoped), §2.1 (version header, no
``control_plane`` envelope), §2.6 (DELETE answers 200 with JSON);
worker-plane.md §4.2 (a deregistration gives the worker's leases back).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest
import trio

from conftest import ADMIN_TOKEN, CP, WP, RunningServer, StartServer

Q = "roster-q"
POLL_WF = "/api/worker/workflow-tasks/poll"
#: Every key of a roster entry, in wire order (describe adds updated_at).
WORKER_KEYS = [
    "worker_id",
    "namespace",
    "task_queue",
    "runtime",
    "sdk_version",
    "build_id",
    "supported_workflow_types",
    "workflow_definition_fingerprints",
    "supported_activity_types",
    "max_concurrent_workflow_tasks",
    "max_concurrent_activity_tasks",
    "status",
    "is_stale",
    "last_heartbeat_at",
    "heartbeat_expires_at",
    "heartbeat_interval_seconds",
    "task_slots",
    "process_metrics",
    "registered_at",
]
ISO_Z = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"


def body_of(r: httpx.Response, status: int, reason: str | None = None) -> dict[str, Any]:
    """A control-plane answer: status, version header, JSON object, no envelope."""
    assert r.status_code == status, r.text
    assert r.headers["X-Durable-Workflow-Control-Plane-Version"] == "2"
    assert "X-Durable-Workflow-Protocol-Version" not in r.headers
    body = r.json()
    assert isinstance(body, dict) and "control_plane" not in body, body
    assert "protocol_version" not in body and "server_capabilities" not in body
    if reason is not None:
        assert body["reason"] == reason, body
        assert isinstance(body["message"], str) and body["message"]
    return body


def register_body(worker_id: str, task_queue: str = Q, **extra: Any) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "task_queue": task_queue,
        "runtime": "python",
        "sdk_version": "durable-workflow-python/2.12.0",
        "supported_workflow_types": ["greeter"],
        "supported_activity_types": ["greet"],
        "workflow_definition_fingerprints": {"greeter": "sha256:1f8f"},
        "max_concurrent_workflow_tasks": 10,
        "max_concurrent_activity_tasks": 5,
        "task_slots": {"workflow_available": 10, "activity_available": 5},
        "process_metrics": {"process_id": 1, "host": "h"},
        **extra,
    }


@attrs.define
class Roster:
    """Operator, admin and worker clients of one server."""

    server: RunningServer
    op: httpx.AsyncClient
    admin: httpx.AsyncClient
    wc: httpx.AsyncClient

    async def register(self, worker_id: str, namespace: str | None = None, **extra: Any) -> None:
        headers = {} if namespace is None else {"X-Namespace": namespace}
        r = await self.wc.post(
            "/api/worker/register", json=register_body(worker_id, **extra), headers=headers
        )
        assert r.status_code == 201, r.text

    async def heartbeat(self, worker_id: str) -> None:
        r = await self.wc.post("/api/worker/heartbeat", json={"worker_id": worker_id})
        assert r.status_code == 200, r.text

    async def list(
        self, expect: int = 200, reason: str | None = None, **params: str
    ) -> dict[str, Any]:
        return body_of(await self.op.get("/api/workers", params=params), expect, reason)

    async def ids(self, **params: str) -> list[str]:
        return [w["worker_id"] for w in (await self.list(**params))["workers"]]

    async def describe(
        self, worker_id: str, status: int = 200, reason: str | None = None
    ) -> dict[str, Any]:
        return body_of(await self.op.get(f"/api/workers/{worker_id}"), status, reason)

    async def deregister(
        self, worker_id: str, status: int = 200, reason: str | None = None
    ) -> dict[str, Any]:
        return body_of(await self.admin.delete(f"/api/workers/{worker_id}"), status, reason)


@asynccontextmanager
async def open_roster(start_server: StartServer, **settings: Any) -> AsyncIterator[Roster]:
    server = await start_server(worker_token="w", operator_token="o", **settings)
    async with (
        server.client("o", **CP) as op,
        server.client(ADMIN_TOKEN, **CP) as admin,
        server.client("w", **WP) as wc,
    ):
        yield Roster(server, op, admin, wc)


@pytest.fixture
async def roster(start_server: StartServer) -> AsyncIterator[Roster]:
    async with open_roster(start_server) as r:
        yield r


async def test_list_shows_each_worker_as_registered(roster: Roster) -> None:
    assert await roster.list() == {"namespace": "default", "stale_after_seconds": 60, "workers": []}
    await roster.register("w-old", build_id="build-1")
    await trio.sleep(0.01)
    await roster.register("w-new", task_queue="other-q")
    body = await roster.list()
    assert body["namespace"] == "default" and body["stale_after_seconds"] == 60
    new, old = body["workers"]  # newest heartbeat first
    assert list(old) == WORKER_KEYS
    assert {k: v for k, v in old.items() if not k.endswith("_at")} == {
        "worker_id": "w-old",
        "namespace": "default",
        "task_queue": Q,
        "runtime": "python",
        "sdk_version": "durable-workflow-python/2.12.0",
        "build_id": "build-1",
        "supported_workflow_types": ["greeter"],
        "workflow_definition_fingerprints": {"greeter": "sha256:1f8f"},
        "supported_activity_types": ["greet"],
        "max_concurrent_workflow_tasks": 10,
        "max_concurrent_activity_tasks": 5,
        "status": "active",
        "is_stale": False,
        "heartbeat_interval_seconds": 15,
        "task_slots": {"workflow_available": 10, "activity_available": 5},
        "process_metrics": {"process_id": 1, "host": "h"},
    }
    for key in ("last_heartbeat_at", "heartbeat_expires_at", "registered_at"):
        assert isinstance(old[key], str)
        assert old[key].endswith("Z") and len(old[key]) == len("2026-04-22T06:24:00.000000Z")
    assert new["worker_id"] == "w-new" and new["task_queue"] == "other-q"
    assert new["build_id"] is None  # the unversioned cohort
    assert new["last_heartbeat_at"] >= old["last_heartbeat_at"]
    # A heartbeat moves a worker to the front.
    await roster.heartbeat("w-old")
    assert await roster.ids() == ["w-old", "w-new"]


async def test_list_filters_by_task_queue_and_stored_status(roster: Roster) -> None:
    await roster.register("a1")
    await roster.register("a2")
    await roster.register("b1", task_queue="other-q")
    assert sorted(await roster.ids(task_queue=Q)) == ["a1", "a2"]
    assert await roster.ids(task_queue="other-q") == ["b1"]
    assert await roster.ids(task_queue="nobody") == []
    assert sorted(await roster.ids(status="active")) == ["a1", "a2", "b1"]
    assert await roster.ids(status="draining") == []
    assert await roster.ids(status="stale") == []
    assert sorted(await roster.ids(status="active", task_queue=Q)) == ["a1", "a2"]
    # An empty parameter filters nothing.
    assert len(await roster.ids(status="", task_queue="")) == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [({"status": "bogus"}, "status"), ({"task_queue": "x" * 256}, "task_queue")],
)
async def test_bad_filters_are_422(roster: Roster, params: dict[str, str], field: str) -> None:
    body = await roster.list(422, "validation_failed", **params)
    assert list(body["errors"]) == [field]


async def test_workers_are_per_namespace(roster: Roster) -> None:
    r = await roster.admin.post("/api/namespaces", json={"name": "other"})
    assert r.status_code == 201, r.text
    await roster.register("here")
    await roster.register("there", namespace="other")
    assert await roster.ids() == ["here"]
    other = body_of(await roster.op.get("/api/workers", headers={"X-Namespace": "other"}), 200)
    assert other["namespace"] == "other"
    assert [w["worker_id"] for w in other["workers"]] == ["there"]
    await roster.describe("there", 404, "worker_not_found")
    await roster.deregister("there", 404, "worker_not_found")
    missing = await roster.op.get("/api/workers", headers={"X-Namespace": "nowhere"})
    body_of(missing, 404, "namespace_not_found")


async def test_describe_adds_updated_at_and_unknown_is_404(roster: Roster) -> None:
    await roster.register("w1", build_id="b7")
    body = await roster.describe("w1")
    assert list(body) == [*WORKER_KEYS, "updated_at"]
    assert body["build_id"] == "b7" and body["status"] == "active"
    listed = (await roster.list())["workers"][0]
    assert {k: v for k, v in body.items() if k != "updated_at"} == listed
    missing = await roster.describe("nobody", 404, "worker_not_found")
    assert missing["worker_id"] == "nobody"


async def test_a_silent_worker_is_reported_stale(start_server: StartServer) -> None:
    async with open_roster(start_server, worker_stale_after_s=2) as roster:
        await roster.register("silent")
        await roster.register("alive")
        assert (await roster.list())["stale_after_seconds"] == 2
        with trio.fail_after(10):
            while True:
                await trio.sleep(0.5)
                await roster.heartbeat("alive")
                if await roster.ids(status="stale"):
                    break
        assert await roster.ids(status="stale") == ["silent"]
        by_id = {w["worker_id"]: w for w in (await roster.list())["workers"]}
        assert (by_id["silent"]["status"], by_id["silent"]["is_stale"]) == ("stale", True)
        assert (by_id["alive"]["status"], by_id["alive"]["is_stale"]) == ("active", False)
        assert by_id["silent"]["heartbeat_expires_at"] <= by_id["alive"]["last_heartbeat_at"]
        # The filter compares the stored status: a stale worker is still stored active.
        assert sorted(await roster.ids(status="active")) == ["alive", "silent"]
        assert (await roster.describe("silent"))["status"] == "stale"
        await roster.heartbeat("silent")
        assert (await roster.describe("silent"))["status"] == "active"
        assert await roster.ids(status="stale") == []


async def test_delete_deregisters_and_gives_leases_back(roster: Roster) -> None:
    await roster.register("holder")
    r = await roster.op.post(
        "/api/workflows",
        json={"workflow_id": "wf-roster", "workflow_type": "greeter", "task_queue": Q},
    )
    assert r.status_code == 201, r.text
    poll = {"worker_id": "holder", "task_queue": Q, "timeout_seconds": 2}
    leased = (await roster.wc.post(POLL_WF, json=poll)).json()["task"]
    assert leased is not None
    assert await roster.deregister("holder") == {
        "worker_id": "holder",
        "outcome": "deregistered",
        "recovered_workflow_task_count": 1,
        "recovered_activity_task_count": 0,
    }
    # The task is offered again at once (not after its 60 s lease), as the next attempt,
    # exactly as when the worker deregisters itself.
    with trio.fail_after(3):
        poll = {"worker_id": "other", "task_queue": Q, "timeout_seconds": 2}
        again = (await roster.wc.post(POLL_WF, json=poll)).json()["task"]
    assert again["task_id"] == leased["task_id"]
    assert again["workflow_task_attempt"] == leased["workflow_task_attempt"] + 1
    late = await roster.wc.post(
        f"/api/worker/workflow-tasks/{leased['task_id']}/complete",
        json={
            "lease_owner": "holder",
            "workflow_task_attempt": leased["workflow_task_attempt"],
            "commands": [],
        },
    )
    assert late.status_code == 409 and late.json()["reason"] == "lease_owner_mismatch"
    # The deregistered worker has left the roster; asking for it by status finds it.
    assert await roster.ids() == ["other"]
    assert await roster.ids(status="deregistered") == ["holder"]
    assert (await roster.describe("holder"))["status"] == "deregistered"
    # Deregistering again gives nothing back; an unknown worker is 404.
    again_body = await roster.deregister("holder")
    assert again_body["recovered_workflow_task_count"] == 0
    await roster.deregister("nobody", 404, "worker_not_found")
    # Registering again brings it back.
    await roster.register("holder")
    assert (await roster.describe("holder"))["status"] == "active"


async def test_roles_and_version_header(roster: Roster) -> None:
    await roster.register("w1")
    # Operators read, only admins delete; workers do neither.
    body = body_of(await roster.op.delete("/api/workers/w1"), 403, "forbidden")
    assert body["allowed_roles"] == ["admin"]
    assert body_of(await roster.admin.get("/api/workers"), 200)["workers"]
    async with roster.server.client("w", **CP) as worker_cp:
        body_of(await worker_cp.get("/api/workers"), 403, "forbidden")
        body_of(await worker_cp.get("/api/workers/w1"), 403, "forbidden")
    async with roster.server.client("o") as no_header:
        r = await no_header.get("/api/workers")
        body_of(r, 400, "missing_control_plane_version")
    assert (await roster.describe("w1"))["status"] == "active"
