"""Task queues over real HTTP: the list and the description, with their stats, repair and
admission.

Contract: control-plane.md §9 (the list and detail shapes, stats, pollers, current leases,
repair; an unknown queue is an empty detail, never 404), §3.5 (operator routes,
namespace-scoped), §2.1 (version header, no ``control_plane`` envelope);
schedules-and-admission.md §2.5 (the admission object and its status rules) and §2.7
(staleness). dwtrio's own choices are in docs/task-queues.md: ready means due, the repair
counts follow engine/repair.py, leases are listed earliest expiry first.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest
import trio
from test_worker_plane import POLL_WF, Harness, activity_cmd, register_body

from dwtrio.store.pool import Conn, connect_once

from conftest import CP, StartServer

TOKEN = "t"
Q = "wq"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
#: No repair pass after the first (leases stay expired, nothing is overdue).
NO_REPAIR = {"task_repair_interval_s": 3600.0}
DETAIL_KEYS = ["name", "namespace", "pollers", "stats", "current_leases", "repair", "admission"]
STATS_KEYS = [
    "approximate_backlog_count",
    "approximate_backlog_age",
    "approximate_backlog_age_seconds",
    "oldest_ready_task",
    "workflow_tasks",
    "activity_tasks",
    "pollers",
]
POLLER_KEYS = [
    "worker_id",
    "runtime",
    "sdk_version",
    "build_id",
    "last_heartbeat_at",
    "heartbeat_expires_at",
    "status",
    "is_stale",
    "supported_workflow_types",
    "supported_activity_types",
    "max_concurrent_workflow_tasks",
    "max_concurrent_activity_tasks",
]
#: The admission entry of one kind, in wire order (schedules-and-admission.md §2.5).
TASK_ADMISSION_KEYS = [
    "budget_source",
    "server_budget_source",
    "active_worker_count",
    "configured_slot_count",
    "leased_count",
    "ready_count",
    "available_slot_count",
    "server_max_active_leases_per_queue",
    "server_active_lease_count",
    "server_remaining_active_lease_capacity",
    "server_max_active_leases_per_namespace",
    "server_namespace_active_lease_count",
    "server_remaining_namespace_active_lease_capacity",
    "server_max_dispatches_per_minute",
    "server_dispatch_count_this_minute",
    "server_remaining_dispatch_capacity",
    "server_max_dispatches_per_minute_per_namespace",
    "server_namespace_dispatch_count_this_minute",
    "server_remaining_namespace_dispatch_capacity",
    "server_dispatch_budget_group",
    "server_max_dispatches_per_minute_per_budget_group",
    "server_budget_group_dispatch_count_this_minute",
    "server_remaining_budget_group_dispatch_capacity",
    "server_lock_required",
    "server_lock_supported",
    "status",
]


def cp_body(r: httpx.Response, status: int = 200, reason: str | None = None) -> dict[str, Any]:
    """A control-plane answer: status, version header, JSON object, no envelope."""
    assert r.status_code == status, r.text
    assert r.headers["X-Durable-Workflow-Control-Plane-Version"] == "2"
    body = r.json()
    assert isinstance(body, dict) and "control_plane" not in body, body
    assert "protocol_version" not in body and "server_capabilities" not in body
    if reason is not None:
        assert body["reason"] == reason, body
    return body


@attrs.define
class Queues(Harness):
    #: The server's database, for the states no route can make.
    dsn: str = ""

    async def describe(self, name: str = Q, **headers: str) -> dict[str, Any]:
        body = cp_body(await self.cc.get(f"/api/task-queues/{name}", headers=headers))
        assert list(body) == DETAIL_KEYS
        assert list(body["stats"]) == STATS_KEYS
        for kind in ("workflow_tasks", "activity_tasks"):
            assert list(body["admission"][kind]) == TASK_ADMISSION_KEYS
        for poller in body["pollers"]:
            assert list(poller) == POLLER_KEYS
        return body

    async def list(self, **headers: str) -> dict[str, Any]:
        body = cp_body(await self.cc.get("/api/task-queues", headers=headers))
        assert list(body) == ["namespace", "task_queues"]
        for entry in body["task_queues"]:
            assert list(entry) == ["name", "stats", "repair", "admission"]
        return body

    async def register(self, worker_id: str, **extra: Any) -> None:
        r = await self.wc.post("/api/worker/register", json=register_body(worker_id, **extra))
        assert r.status_code == 201, r.text

    async def heartbeat(self, worker_id: str) -> None:
        r = await self.wc.post("/api/worker/heartbeat", json={"worker_id": worker_id})
        assert r.status_code == 200, r.text

    async def sql(self, statement: str, *args: Any) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(statement, *args)

        await connect_once(self.dsn, run)


@asynccontextmanager
async def open_queues(
    start_server: StartServer, db_dsn: str, **settings: Any
) -> AsyncIterator[Queues]:
    async with Queues.open(start_server, TOKEN, **settings) as q:
        q.dsn = db_dsn
        yield q


@pytest.fixture
async def q(start_server: StartServer, db_dsn: str) -> AsyncIterator[Queues]:
    async with open_queues(start_server, db_dsn, **NO_REPAIR) as qq:
        yield qq


def counts(stats: dict[str, Any], kind: str) -> tuple[int, int, int]:
    c = stats[f"{kind}_tasks"]
    return c["ready_count"], c["leased_count"], c["expired_lease_count"]


async def test_an_unknown_queue_is_described_empty(q: Queues) -> None:
    assert await q.list() == {"namespace": "default", "task_queues": []}
    body = await q.describe("nobody")
    assert body["name"] == "nobody" and body["namespace"] == "default"
    assert body["pollers"] == [] and body["current_leases"] == []
    assert body["stats"] == {
        "approximate_backlog_count": 0,
        "approximate_backlog_age": None,
        "approximate_backlog_age_seconds": None,
        "oldest_ready_task": None,
        "workflow_tasks": {"ready_count": 0, "leased_count": 0, "expired_lease_count": 0},
        "activity_tasks": {"ready_count": 0, "leased_count": 0, "expired_lease_count": 0},
        "pollers": {"active_count": 0, "stale_count": 0, "stale_after_seconds": 60},
    }
    assert body["repair"] == {
        "candidates": 0,
        "dispatch_failed": 0,
        "expired_leases": 0,
        "lost_worker_leases": 0,
        "dispatch_overdue": 0,
        "oldest_lease_expired_at": None,
        "oldest_dispatch_overdue_since": None,
        "needs_attention": False,
        "policy": {
            "redispatch_after_seconds": 3600.0,
            "lost_worker_after_seconds": 60,
            "scan_limit": 500,
        },
    }
    for kind in ("workflow", "activity"):
        entry = body["admission"][f"{kind}_tasks"]
        assert entry["status"] == "no_active_workers"
        assert entry["budget_source"] == f"worker_registration.max_concurrent_{kind}_tasks"
        assert entry["server_budget_source"] == (
            f"server.admission.{kind}_tasks.max_active_leases_per_queue"
        )
        assert entry["server_lock_required"] is False and entry["server_lock_supported"] is True
        assert entry["server_max_active_leases_per_queue"] is None
        assert entry["server_remaining_dispatch_capacity"] is None
        assert (entry["active_worker_count"], entry["configured_slot_count"]) == (0, 0)
    assert body["admission"]["query_tasks"] == {
        "budget_source": "server.query_tasks.max_pending_per_queue",
        "max_pending_per_queue": 1024,
        "approximate_pending_count": 0,
        "remaining_pending_capacity": 1024,
        "lock_required": True,
        "lock_supported": True,
        "status": "accepting",
    }
    # Describing creates nothing.
    assert await q.list() == {"namespace": "default", "task_queues": []}


async def test_the_backlog_grows_while_nobody_polls(q: Queues) -> None:
    first = await q.start("wf-1")
    await trio.sleep(1.05)
    for i in range(2, 5):
        await q.start(f"wf-{i}")
    stats = (await q.describe())["stats"]
    assert stats["approximate_backlog_count"] == 4
    assert counts(stats, "workflow") == (4, 0, 0) and counts(stats, "activity") == (0, 0, 0)
    oldest = stats["oldest_ready_task"]
    assert oldest["workflow_id"] == "wf-1" and oldest["run_id"] == first["run_id"]
    assert oldest["task_type"] == "workflow" and ISO_Z.match(oldest["available_at"])
    assert oldest["age_seconds"] >= 1
    assert stats["approximate_backlog_age_seconds"] == oldest["age_seconds"]
    assert stats["approximate_backlog_age"] == f"{oldest['age_seconds']}s"
    for i in range(5, 8):
        await q.start(f"wf-{i}")
    again = (await q.describe())["stats"]
    assert again["approximate_backlog_count"] == 7
    assert again["oldest_ready_task"]["task_id"] == oldest["task_id"]
    admission = (await q.describe())["admission"]["workflow_tasks"]
    assert (admission["ready_count"], admission["leased_count"]) == (7, 0)
    assert admission["status"] == "no_active_workers"  # nobody polls
    [listed] = (await q.list())["task_queues"]
    assert listed["name"] == Q and listed["stats"]["approximate_backlog_count"] == 7


async def test_leases_are_counted_listed_and_then_expire(
    start_server: StartServer, db_dsn: str
) -> None:
    settings = {**NO_REPAIR, "workflow_task_timeout_s": 1, "activity_task_timeout_s": 2}
    async with open_queues(start_server, db_dsn, **settings) as q:
        wf_task = await q.begin("wf-a")
        await q.complete_wf(wf_task, [activity_cmd()])
        act = await q.act_task("w2")
        await q.start("wf-b")
        held = await q.wf_task("w3")
        await q.start("wf-c")
        body = await q.describe()
        stats = body["stats"]
        assert counts(stats, "workflow") == (1, 1, 0)
        assert counts(stats, "activity") == (0, 1, 0)
        assert stats["approximate_backlog_count"] == 1
        assert stats["oldest_ready_task"]["workflow_id"] == "wf-c"
        wf_lease, act_lease = body["current_leases"]  # earliest expiry first
        assert wf_lease == {
            "task_id": held["task_id"],
            "task_type": "workflow",
            "workflow_id": "wf-b",
            "run_id": held["run_id"],
            "lease_owner": "w3",
            "lease_expires_at": wf_lease["lease_expires_at"],
            "is_expired": False,
            "workflow_task_attempt": 1,
        }
        assert act_lease == {
            "task_id": act["task_id"],
            "task_type": "activity",
            "workflow_id": "wf-a",
            "run_id": act["run_id"],
            "lease_owner": "w2",
            "lease_expires_at": act_lease["lease_expires_at"],
            "is_expired": False,
            "activity_attempt_id": act["activity_attempt_id"],
            "attempt_number": 1,
        }
        assert ISO_Z.match(wf_lease["lease_expires_at"])
        assert body["repair"]["candidates"] == 0 and body["repair"]["needs_attention"] is False
        admission = body["admission"]
        assert admission["workflow_tasks"]["leased_count"] == 1
        assert admission["workflow_tasks"]["server_active_lease_count"] == 1
        assert admission["activity_tasks"]["leased_count"] == 1
        # Both leases run out; with no repair pass to take them back they stay, expired.
        await trio.sleep(2.1)
        body = await q.describe()
        stats = body["stats"]
        assert counts(stats, "workflow") == (1, 1, 1)
        assert counts(stats, "activity") == (0, 1, 1)
        assert [lease["is_expired"] for lease in body["current_leases"]] == [True, True]
        repair = body["repair"]
        assert (repair["expired_leases"], repair["candidates"]) == (2, 2)
        assert repair["needs_attention"] is True and repair["dispatch_failed"] == 0
        assert repair["oldest_lease_expired_at"] == wf_lease["lease_expires_at"]
        # An expired lease is no longer active: the server's lease count drops it.
        assert body["admission"]["workflow_tasks"]["server_active_lease_count"] == 0
        assert body["admission"]["workflow_tasks"]["leased_count"] == 1


async def test_ready_tasks_waiting_a_repair_interval_are_dispatch_overdue(
    start_server: StartServer, db_dsn: str
) -> None:
    async with open_queues(start_server, db_dsn, task_repair_interval_s=0.5) as q:
        await q.start("wf-late")
        repair = (await q.describe())["repair"]
        assert repair["dispatch_overdue"] == 0 and repair["needs_attention"] is False
        await trio.sleep(0.6)
        await q.start("wf-fresh")
        body = await q.describe()
        repair = body["repair"]
        assert (repair["dispatch_overdue"], repair["candidates"]) == (1, 1)
        assert repair["needs_attention"] is True
        assert repair["policy"]["redispatch_after_seconds"] == 0.5
        oldest = body["stats"]["oldest_ready_task"]
        assert oldest["workflow_id"] == "wf-late"
        assert repair["oldest_dispatch_overdue_since"] == oldest["available_at"]
        await q.wf_task()  # the late one goes: nothing is overdue any more
        assert (await q.describe())["repair"]["dispatch_overdue"] == 0


async def test_pollers_fresh_then_stale_and_their_lost_leases(
    start_server: StartServer, db_dsn: str
) -> None:
    async with open_queues(start_server, db_dsn, worker_stale_after_s=2, **NO_REPAIR) as q:
        await q.register("w-b", build_id="build-2", max_concurrent_workflow_tasks=3)
        await q.register("w-a", max_concurrent_workflow_tasks=4)
        await q.register("w-gone")
        r = await q.cc.delete("/api/workers/w-gone")
        assert r.status_code == 200, r.text
        await q.begin("wf-held", worker="w-b")
        body = await q.describe()
        assert [p["worker_id"] for p in body["pollers"]] == ["w-a", "w-b"]  # deregistered: gone
        b = body["pollers"][1]
        assert {k: v for k, v in b.items() if not k.endswith("_at")} == {
            "worker_id": "w-b",
            "runtime": "python",
            "sdk_version": "durable-workflow-python/2.12.0",
            "build_id": "build-2",
            "status": "active",
            "is_stale": False,
            "supported_workflow_types": ["greeter"],
            "supported_activity_types": ["greet"],
            "max_concurrent_workflow_tasks": 3,
            "max_concurrent_activity_tasks": 10,
        }
        assert body["pollers"][0]["build_id"] is None  # the unversioned cohort
        assert ISO_Z.match(b["last_heartbeat_at"]) and ISO_Z.match(b["heartbeat_expires_at"])
        assert body["stats"]["pollers"] == {
            "active_count": 2,
            "stale_count": 0,
            "stale_after_seconds": 2,
        }
        admission = body["admission"]["workflow_tasks"]
        assert (admission["active_worker_count"], admission["configured_slot_count"]) == (2, 7)
        assert (admission["leased_count"], admission["available_slot_count"]) == (1, 6)
        assert admission["status"] == "accepting"
        # w-a keeps heartbeating, w-b falls silent while holding its lease.
        with trio.fail_after(10):
            while True:
                await trio.sleep(0.5)
                await q.heartbeat("w-a")
                body = await q.describe()
                if body["stats"]["pollers"]["stale_count"]:
                    break
        assert [(p["worker_id"], p["status"], p["is_stale"]) for p in body["pollers"]] == [
            ("w-a", "active", False),
            ("w-b", "stale", True),
        ]
        assert body["stats"]["pollers"] == {
            "active_count": 1,
            "stale_count": 1,
            "stale_after_seconds": 2,
        }
        admission = body["admission"]["workflow_tasks"]
        assert (admission["active_worker_count"], admission["configured_slot_count"]) == (1, 4)
        # Its lease has not expired, but task repair counts it as a lost worker's.
        with trio.fail_after(5):
            while not body["repair"]["lost_worker_leases"]:
                await trio.sleep(0.2)
                body = await q.describe()
        repair = body["repair"]
        assert (repair["lost_worker_leases"], repair["expired_leases"]) == (1, 0)
        assert repair["candidates"] == 1 and repair["needs_attention"] is True
        assert repair["policy"]["lost_worker_after_seconds"] == 2
        # A draining worker still polls (a fresh poller) but has no slots to count.
        await q.heartbeat("w-b")
        await q.sql("UPDATE worker_registrations SET status = 'draining' WHERE worker_id = 'w-b'")
        body = await q.describe()
        assert body["stats"]["pollers"]["active_count"] == 2
        assert body["pollers"][1]["status"] == "draining"
        assert body["admission"]["workflow_tasks"]["active_worker_count"] == 1


async def test_admission_status_follows_the_first_rule_that_holds(q: Queues) -> None:
    def status(body: dict[str, Any], kind: str = "workflow") -> str:
        return str(body["admission"][f"{kind}_tasks"]["status"])

    await q.start("wf-1")
    assert status(await q.describe()) == "no_active_workers"
    await q.register("w1", max_concurrent_workflow_tasks=1, max_concurrent_activity_tasks=2)
    body = await q.describe()
    assert status(body) == "accepting" and status(body, "activity") == "accepting"
    await q.wf_task("w1")
    body = await q.describe()
    entry = body["admission"]["workflow_tasks"]
    assert (entry["configured_slot_count"], entry["leased_count"]) == (1, 1)
    assert entry["available_slot_count"] == 0
    assert status(body) == "saturated" and status(body, "activity") == "accepting"
    # The register route refuses zero slots; a row written so has none to offer.
    await q.sql("UPDATE worker_registrations SET max_concurrent_workflow_tasks = 0")
    assert status(await q.describe()) == "no_slots"


async def test_a_reached_cap_is_throttled(start_server: StartServer, db_dsn: str) -> None:
    overrides = {
        f"default:{Q}": {
            "activity_tasks": {"max_dispatches_per_minute": 5, "dispatch_budget_group": "g1"}
        }
    }
    async with open_queues(
        start_server,
        db_dsn,
        workflow_task_max_active_leases_per_queue=1,
        task_queue_admission_overrides=json.dumps(overrides),
        **NO_REPAIR,
    ) as q:
        await q.register("w1")
        await q.start("wf-1")
        await q.start("wf-2")
        body = await q.describe()
        entry = body["admission"]["workflow_tasks"]
        assert entry["status"] == "accepting"
        assert entry["server_lock_required"] is True
        assert entry["server_max_active_leases_per_queue"] == 1
        assert entry["server_remaining_active_lease_capacity"] == 1
        assert entry["server_budget_source"] == (
            "server.admission.workflow_tasks.max_active_leases_per_queue"
        )
        await q.wf_task("w1")
        assert await q.poll_wf("w1") is None  # the cap holds the second task back
        body = await q.describe()
        entry = body["admission"]["workflow_tasks"]
        assert entry["status"] == "throttled"
        assert entry["server_active_lease_count"] == 1
        assert entry["server_remaining_active_lease_capacity"] == 0
        assert "server_status" not in entry
        assert body["stats"]["workflow_tasks"]["ready_count"] == 1
        activity = body["admission"]["activity_tasks"]
        assert activity["status"] == "accepting"
        assert activity["server_budget_source"] == "server.admission.queue_overrides"
        assert activity["server_max_dispatches_per_minute"] == 5
        assert activity["server_remaining_dispatch_capacity"] == 5
        assert activity["server_dispatch_budget_group"] == "g1"
        assert activity["server_max_dispatches_per_minute_per_budget_group"] is None


async def test_query_tasks_count_against_their_pending_cap(
    start_server: StartServer, db_dsn: str
) -> None:
    settings = {"query_task_max_pending_per_queue": 2, "query_task_timeout_s": 3, **NO_REPAIR}
    async with open_queues(start_server, db_dsn, **settings) as q:
        await q.register("w1")
        await q.start("wf-q")

        async def ask() -> None:
            await q.cc.post("/api/workflows/wf-q/query/status", json={})

        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(ask)
            with trio.fail_after(3):
                while True:
                    query = (await q.describe())["admission"]["query_tasks"]
                    if query["approximate_pending_count"] == 2:
                        break
                    await trio.sleep(0.05)
            assert query["max_pending_per_queue"] == 2
            assert (query["remaining_pending_capacity"], query["status"]) == (0, "full")
            nursery.cancel_scope.cancel()


async def test_queues_are_per_namespace(q: Queues) -> None:
    r = await q.cc.post("/api/namespaces", json={"name": "other"})
    assert r.status_code == 201, r.text
    other = {"X-Namespace": "other"}
    r = await q.cc.post(
        "/api/workflows",
        json={"workflow_id": "wf-o", "workflow_type": "greeter", "task_queue": Q},
        headers=other,
    )
    assert r.status_code == 201, r.text
    r = await q.wc.post("/api/worker/register", json=register_body("w-o"), headers=other)
    assert r.status_code == 201, r.text
    body = await q.describe()
    assert body["stats"]["approximate_backlog_count"] == 0 and body["pollers"] == []
    assert await q.list() == {"namespace": "default", "task_queues": []}
    there = await q.describe(**other)
    assert there["namespace"] == "other"
    assert there["stats"]["approximate_backlog_count"] == 1
    assert [p["worker_id"] for p in there["pollers"]] == ["w-o"]
    listed = await q.list(**other)
    assert listed["namespace"] == "other" and [e["name"] for e in listed["task_queues"]] == [Q]
    r = await q.cc.get("/api/task-queues", headers={"X-Namespace": "nowhere"})
    cp_body(r, 404, "namespace_not_found")


async def test_the_list_knows_queues_from_tasks_leases_or_workers(q: Queues) -> None:
    await q.start_workflow("wf-ready", "greeter", "only-tasks", [])
    await q.register("w-idle", task_queue="only-workers")
    await q.register("w-home", task_queue="home")
    # A registered worker polling another queue stays registered on its own.
    await q.start_workflow("wf-leased", "greeter", "only-leases", [])
    r = await q.wc.post(
        POLL_WF, json={"worker_id": "w-home", "task_queue": "only-leases", "timeout_seconds": 2}
    )
    assert r.json()["task"]["workflow_id"] == "wf-leased"
    await q.register("w-gone", task_queue="gone")
    assert (await q.cc.delete("/api/workers/w-gone")).status_code == 200
    listed = (await q.list())["task_queues"]
    assert [e["name"] for e in listed] == ["home", "only-leases", "only-tasks", "only-workers"]
    by_name = {e["name"]: e for e in listed}
    assert counts(by_name["only-leases"]["stats"], "workflow") == (0, 1, 0)
    assert by_name["only-leases"]["stats"]["pollers"]["active_count"] == 0
    assert by_name["only-tasks"]["stats"]["approximate_backlog_count"] == 1
    assert by_name["only-workers"]["stats"]["pollers"]["active_count"] == 1
    assert by_name["only-workers"]["admission"]["workflow_tasks"]["status"] == "accepting"
    assert by_name["home"]["admission"]["activity_tasks"]["active_worker_count"] == 1
    # Each entry is the description without pollers and leases.
    detail = await q.describe("only-tasks")
    entry = by_name["only-tasks"]
    assert entry["repair"] == detail["repair"] and entry["admission"] == detail["admission"]
    assert entry["stats"]["workflow_tasks"] == detail["stats"]["workflow_tasks"]


async def test_names_with_slashes_and_names_no_queue_can_have(q: Queues) -> None:
    await q.start_workflow("wf-slash", "greeter", "team/a/", [])
    body = await q.describe("team%2Fa%2F")
    assert body["name"] == "team/a/" and body["stats"]["approximate_backlog_count"] == 1
    assert [e["name"] for e in (await q.list())["task_queues"]] == ["team/a/"]
    assert (await q.describe("caf%C3%A9"))["name"] == "café"
    assert (await q.describe("x" * 255))["name"] == "x" * 255
    for name in ("a%00b", "x" * 256):
        r = await q.cc.get(f"/api/task-queues/{name}")
        body = cp_body(r, 422, "validation_failed")
        assert list(body["errors"]) == ["task_queue"]
    assert (await q.describe())["name"] == Q  # still answering


async def test_roles_and_version_header(start_server: StartServer) -> None:
    server = await start_server(worker_token="w", operator_token="o")
    async with server.client("o", **CP) as op:
        cp_body(await op.get("/api/task-queues"))
        cp_body(await op.get(f"/api/task-queues/{Q}"))
    async with server.client("w", **CP) as worker:
        cp_body(await worker.get("/api/task-queues"), 403, "forbidden")
        cp_body(await worker.get(f"/api/task-queues/{Q}"), 403, "forbidden")
    async with server.client("o") as no_header:
        r = await no_header.get(f"/api/task-queues/{Q}")
        cp_body(r, 400, "missing_control_plane_version")
