"""DELETE /api/namespaces/{ns} over real HTTP.

Contract: control-plane.md §14 (a namespace object with ``status: "deleted"``
and the ``deleted`` counts), §3.2 (role A, version header, no namespace gate),
§4 (lowercased names), §2.5 (``namespace_not_found`` afterwards, everywhere);
data-model.md §1.1 (soft delete) and §8 (the default namespace must exist).
Refusals: ``409 namespace_has_open_runs`` while a run is open,
``409 default_namespace_protected`` for ``DW_DEFAULT_NAMESPACE``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import pytest

from dwtrio.store.pool import Conn, connect_once

from conftest import ADMIN_TOKEN, CP, WP, RunningServer, StartServer

NS = "doomed"
NAMESPACE_KEYS = [
    "name",
    "description",
    "retention_days",
    "status",
    "external_payload_storage",
    "created_at",
    "updated_at",
    "deleted",
]
NOTHING = {
    "workflow_runs": 0,
    "workflow_schedules": 0,
    "search_attribute_definitions": 0,
    "workflow_worker_registrations": 0,
}


def body_of(
    r: httpx.Response, status: int, reason: str | None = None, *, envelope: bool = False
) -> dict[str, Any]:
    """A control-plane answer (with the ``control_plane`` envelope on workflow routes)."""
    assert r.status_code == status, r.text
    assert r.headers["X-Durable-Workflow-Control-Plane-Version"] == "2"
    body = r.json()
    assert isinstance(body, dict) and ("control_plane" in body) is envelope, body
    if reason is not None:
        assert body["reason"] == reason, body
        assert isinstance(body["message"], str) and body["message"]
    return body


@attrs.define
class Admin:
    server: RunningServer
    admin: httpx.AsyncClient
    op: httpx.AsyncClient
    wc: httpx.AsyncClient
    dsn: str

    async def create(self, name: str = NS, **fields: Any) -> dict[str, Any]:
        r = await self.admin.post("/api/namespaces", json={"name": name, **fields})
        return body_of(r, 201)

    async def delete(
        self, name: str = NS, status: int = 200, reason: str | None = None
    ) -> dict[str, Any]:
        return body_of(await self.admin.delete(f"/api/namespaces/{name}"), status, reason)

    async def in_ns(self, method: str, path: str, name: str = NS, **kwargs: Any) -> httpx.Response:
        return await self.admin.request(method, path, headers={"X-Namespace": name}, **kwargs)

    async def start(self, workflow_id: str, name: str = NS) -> dict[str, Any]:
        body = {"workflow_id": workflow_id, "workflow_type": "greeter", "task_queue": "q"}
        r = await self.in_ns("POST", "/api/workflows", name, json=body)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def count(self, sql: str, *args: Any) -> int:
        async def op(conn: Conn) -> int:
            return int(await conn.fetchval(sql, *args))

        return await connect_once(self.dsn, op)


@pytest.fixture
async def a(start_server: StartServer, db_dsn: str) -> AsyncIterator[Admin]:
    server = await start_server(operator_token="o", worker_token="w")
    async with (
        server.client(ADMIN_TOKEN, **CP) as admin,
        server.client("o", **CP) as op,
        server.client("w", **WP) as wc,
    ):
        yield Admin(server, admin, op, wc, db_dsn)


async def test_an_empty_namespace_is_deleted_and_then_unknown_everywhere(a: Admin) -> None:
    created = await a.create(description="short-lived", retention_days=7)
    # The gate has seen it (and cached it) before the delete.
    body_of(await a.in_ns("GET", "/api/search-attributes"), 200)
    body = await a.delete()
    assert list(body) == NAMESPACE_KEYS
    assert body["name"] == NS and body["status"] == "deleted"
    assert body["description"] == "short-lived" and body["retention_days"] == 7
    assert body["created_at"] == created["created_at"]
    assert body["deleted"] == NOTHING
    # Gone from the namespace routes...
    body_of(await a.admin.get(f"/api/namespaces/{NS}"), 404, "namespace_not_found")
    listed = body_of(await a.admin.get("/api/namespaces"), 200)["namespaces"]
    assert [n["name"] for n in listed] == ["default"]
    r = await a.admin.put(f"/api/namespaces/{NS}", json={"description": "x"})
    body_of(r, 404, "namespace_not_found")
    r = await a.admin.put(f"/api/namespaces/{NS}/external-storage", json={"driver": "local"})
    body_of(r, 404, "namespace_not_found")
    await a.delete(status=404, reason="namespace_not_found")
    # ...and at once from every namespace-scoped route (the cache was dropped).
    for method, path in [
        ("GET", "/api/search-attributes"),
        ("GET", "/api/workflows"),
        ("GET", "/api/workers"),
        ("GET", "/api/schedules"),
        ("POST", "/api/workflows"),
    ]:
        r = await a.in_ns(method, path)
        body = body_of(r, 404, "namespace_not_found", envelope=path == "/api/workflows")
        assert body["namespace"] == NS
    r = await a.wc.post(
        "/api/worker/register",
        json={"worker_id": "w1", "task_queue": "q"},
        headers={"X-Namespace": NS},
    )
    assert r.status_code == 404 and r.json()["reason"] == "namespace_not_found"
    # The row stays, soft-deleted.
    assert await a.count("SELECT count(*) FROM namespaces WHERE status = 'deleted'") == 1


async def test_open_runs_refuse_the_delete_and_closed_ones_go_with_it(a: Admin) -> None:
    await a.create()
    started = await a.start("ns-wf-1")
    r = await a.in_ns("POST", "/api/search-attributes", json={"name": "Tier", "type": "keyword"})
    assert r.status_code == 201, r.text
    r = await a.wc.post(
        "/api/worker/register",
        json={"worker_id": "w-ns", "task_queue": "q", "build_id": "b1"},
        headers={"X-Namespace": NS},
    )
    assert r.status_code == 201, r.text
    schedule = {
        "schedule_id": "nightly",
        "spec": {"cron_expressions": ["0 3 * * *"]},
        "action": {"workflow_type": "greeter", "task_queue": "q"},
    }
    assert (await a.in_ns("POST", "/api/schedules", json=schedule)).status_code == 201

    body = await a.delete(status=409, reason="namespace_has_open_runs")
    assert body["open_run_count"] == 1 and body["namespace"] == NS
    # Nothing was touched.
    assert (await a.in_ns("GET", "/api/workflows/ns-wf-1")).status_code == 200
    assert (await a.in_ns("GET", "/api/schedules/nightly")).status_code == 200
    workers = body_of(await a.in_ns("GET", "/api/workers"), 200)["workers"]
    assert [w["worker_id"] for w in workers] == ["w-ns"]

    r = await a.in_ns("POST", "/api/workflows/ns-wf-1/terminate", json={"reason": "cleanup"})
    assert r.status_code == 200, r.text
    body = await a.delete()
    assert body["status"] == "deleted"
    assert body["deleted"] == {
        "workflow_runs": 1,
        "workflow_schedules": 1,
        "search_attribute_definitions": 1,
        "workflow_worker_registrations": 1,
    }
    run_id = started["run_id"]
    for table, column, value in [
        ("workflow_instances", "namespace", NS),
        ("workflow_runs", "namespace", NS),
        ("history_events", "run_id", run_id),
        ("workflow_tasks", "run_id", run_id),
        ("search_attribute_definitions", "namespace", NS),
        ("worker_registrations", "namespace", NS),
        ("build_id_rollouts", "namespace", NS),
    ]:
        n = await a.count(f"SELECT count(*) FROM {table} WHERE {column} = $1", value)
        assert n == 0, table
    # Schedules are soft-deleted by their own rules, so their history stays.
    sql = "SELECT count(*) FROM schedules WHERE namespace = $1 AND status = 'deleted'"
    assert await a.count(sql, NS) == 1
    sql = "SELECT count(*) FROM schedule_history_events WHERE namespace = $1"
    assert await a.count(sql, NS) == 2  # ScheduleCreated, ScheduleDeleted
    # The workflow id (global across namespaces) is free again.
    await a.start("ns-wf-1", name="default")


async def test_the_default_namespace_cannot_be_deleted(a: Admin) -> None:
    for name in ("default", "DEFAULT"):
        body = await a.delete(name, 409, "default_namespace_protected")
        assert body["namespace"] == "default"
    body_of(await a.admin.get("/api/namespaces/default"), 200)
    async with a.server.client(None) as anonymous:
        r = await anonymous.get("/api/ready")
    assert r.status_code == 200, r.text


async def test_another_default_namespace_is_the_protected_one(
    start_server: StartServer,
) -> None:
    server = await start_server(default_namespace="main", bootstrap=True)
    async with server.client(ADMIN_TOKEN, **CP) as c:
        body_of(await c.delete("/api/namespaces/main"), 409, "default_namespace_protected")
        body = body_of(await c.delete("/api/namespaces/default"), 200)
        assert body["status"] == "deleted"


async def test_names_are_lowercased_and_unknown_ones_are_404(a: Admin) -> None:
    await a.create("Mixed.Case")
    body = await a.delete("MIXED.case")
    assert body["name"] == "mixed.case"
    body = await a.delete("never-was", 404, "namespace_not_found")
    assert body["namespace"] == "never-was"


async def test_a_deleted_name_can_be_created_again_empty(a: Admin) -> None:
    await a.create(description="first")
    r = await a.in_ns("POST", "/api/search-attributes", json={"name": "Tier", "type": "int"})
    assert r.status_code == 201, r.text
    r = await a.admin.put(f"/api/namespaces/{NS}/external-storage", json={"driver": "local"})
    assert r.status_code == 200, r.text
    await a.delete()
    again = await a.create(description="second")
    assert again["status"] == "active" and again["description"] == "second"
    assert again["retention_days"] == 30 and again["external_payload_storage"] is None
    custom = body_of(await a.in_ns("GET", "/api/search-attributes"), 200)["custom_attributes"]
    assert custom == {}
    listed = body_of(await a.admin.get("/api/namespaces"), 200)["namespaces"]
    assert [n["name"] for n in listed] == ["default", NS]
    # A live name is still taken.
    r = await a.admin.post("/api/namespaces", json={"name": NS})
    body_of(r, 409, "namespace_already_exists")


async def test_only_admins_delete_and_the_version_header_is_required(a: Admin) -> None:
    await a.create()
    body = body_of(await a.op.delete(f"/api/namespaces/{NS}"), 403, "forbidden")
    assert body["allowed_roles"] == ["admin"]
    async with a.server.client(ADMIN_TOKEN) as no_header:
        r = await no_header.delete(f"/api/namespaces/{NS}")
        body_of(r, 400, "missing_control_plane_version")
    body_of(await a.admin.get(f"/api/namespaces/{NS}"), 200)


async def test_a_start_that_reaches_the_store_after_the_delete_is_refused(a: Admin) -> None:
    """A start whose gate still saw the namespace (another node's cache, or a start in
    flight) is refused by the database: workflow instances only exist in live namespaces."""
    await a.create()
    body_of(await a.in_ns("GET", "/api/search-attributes"), 200)  # cached as existing

    async def delete_behind_the_cache(conn: Conn) -> None:
        await conn.execute("UPDATE namespaces SET status = 'deleted' WHERE name = $1", NS)

    await connect_once(a.dsn, delete_behind_the_cache)
    body = {"workflow_id": "too-late", "workflow_type": "greeter", "task_queue": "q"}
    r = await a.in_ns("POST", "/api/workflows", json=body)
    body_of(r, 404, "namespace_not_found", envelope=True)
    assert await a.count("SELECT count(*) FROM workflow_instances WHERE namespace = $1", NS) == 0
    # A namespace cannot be marked deleted while it still holds instances.
    await a.create("holds-one")
    await a.start("kept", name="holds-one")

    async def mark(conn: Conn) -> str:
        try:
            await conn.execute("UPDATE namespaces SET status = 'deleted' WHERE name = 'holds-one'")
        except Exception as exc:
            return type(exc).__name__
        return "updated"

    assert await connect_once(a.dsn, mark) == "ForeignKeyViolationError"


async def test_a_schedule_created_after_the_delete_is_refused(a: Admin) -> None:
    """A schedule whose gate still saw the namespace is refused by the database too, and
    the schedules the deletion soft-deleted stay with their history."""
    await a.create()
    schedule = {
        "schedule_id": "nightly",
        "spec": {"cron_expressions": ["0 3 * * *"]},
        "action": {"workflow_type": "greeter", "task_queue": "q"},
    }
    body_of(await a.in_ns("POST", "/api/schedules", json=schedule), 201)
    await a.delete()
    assert (
        await a.count(
            "SELECT count(*) FROM schedules WHERE namespace = $1 AND status = 'deleted'", NS
        )
        == 1
    )
    await a.create()
    body_of(await a.in_ns("GET", "/api/search-attributes"), 200)  # cached as existing

    async def delete_behind_the_cache(conn: Conn) -> None:
        await conn.execute("UPDATE namespaces SET status = 'deleted' WHERE name = $1", NS)

    await connect_once(a.dsn, delete_behind_the_cache)
    late = {**schedule, "schedule_id": "too-late"}
    body_of(await a.in_ns("POST", "/api/schedules", json=late), 404, "namespace_not_found")
    assert await a.count("SELECT count(*) FROM schedules WHERE schedule_id = 'too-late'") == 0
