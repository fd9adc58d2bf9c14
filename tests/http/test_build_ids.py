"""Build-id rollouts over real HTTP: the cohort view of a task queue, drain, resume and
promote of one cohort, and what each does to registrations and new starts.

Contract: schedules-and-admission.md §3 (cohort key, counts, staleness beats the stored
status, rollout_status and sort order, drain keeps the first drained_at, resume flips
registrations back, build_id present but nullable), control-plane.md §9 (shapes), §14
(promote), §2.3 (422 envelope), §3.5 (operator routes, namespace-scoped, no envelope);
docs/rolling-upgrades.md for dwtrio's choices (promote: the latest promoted_at selects
the build new starts are pinned to; the unversioned cohort pins nothing; a draining
cohort is not promoted).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest
import trio

from dwtrio.store.pool import Conn, connect_once

from conftest import ADMIN_TOKEN, CP, WP, RunningServer, StartServer

Q = "rollout-q"
ISO_Z = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"
COHORT_KEYS = [
    "build_id",
    "rollout_status",
    "drain_intent",
    "drained_at",
    "active_worker_count",
    "draining_worker_count",
    "stale_worker_count",
    "total_worker_count",
    "runtimes",
    "sdk_versions",
    "last_heartbeat_at",
    "first_seen_at",
    "promoted_at",
    "new_start_selected",
]
STATE_KEYS = [
    "namespace",
    "task_queue",
    "build_id",
    "drain_intent",
    "drained_at",
    "promoted_at",
    "new_start_selected",
]


def body_of(r: httpx.Response, status: int, reason: str | None = None) -> dict[str, Any]:
    """A control-plane answer: status, version header, JSON object, no envelope."""
    assert r.status_code == status, r.text
    assert r.headers["X-Durable-Workflow-Control-Plane-Version"] == "2"
    body = r.json()
    assert isinstance(body, dict) and "control_plane" not in body, body
    if reason is not None:
        assert body["reason"] == reason, body
        assert isinstance(body["message"], str) and body["message"]
    return body


@attrs.define
class Rollouts:
    """Operator and worker clients of one server, and the calls the tests make."""

    server: RunningServer
    op: httpx.AsyncClient
    wc: httpx.AsyncClient

    async def register(
        self,
        worker_id: str,
        build_id: str | None = None,
        task_queue: str = Q,
        namespace: str | None = None,
        **extra: Any,
    ) -> None:
        body = {
            "worker_id": worker_id,
            "task_queue": task_queue,
            "runtime": "python",
            "sdk_version": "durable-workflow-python/2.12.0",
            **({"build_id": build_id} if build_id is not None else {}),
            **extra,
        }
        headers = {} if namespace is None else {"X-Namespace": namespace}
        r = await self.wc.post("/api/worker/register", json=body, headers=headers)
        assert r.status_code == 201, r.text

    async def heartbeat(self, worker_id: str) -> None:
        r = await self.wc.post("/api/worker/heartbeat", json={"worker_id": worker_id})
        assert r.status_code == 200, r.text

    async def status(self, worker_id: str) -> str:
        body = body_of(await self.op.get(f"/api/workers/{worker_id}"), 200)
        status: str = body["status"]
        return status

    async def cohorts(self, task_queue: str = Q, **headers: str) -> dict[str, Any]:
        r = await self.op.get(f"/api/task-queues/{task_queue}/build-ids", headers=headers)
        return body_of(r, 200)

    async def by_build(self, task_queue: str = Q) -> dict[str | None, dict[str, Any]]:
        return {c["build_id"]: c for c in (await self.cohorts(task_queue))["build_ids"]}

    async def change(
        self,
        action: str,
        body: Any,
        task_queue: str = Q,
        status: int = 200,
        reason: str | None = None,
        **headers: str,
    ) -> dict[str, Any]:
        r = await self.op.post(
            f"/api/task-queues/{task_queue}/build-ids/{action}", json=body, headers=headers
        )
        return body_of(r, status, reason)

    async def start(self, workflow_id: str, task_queue: str = Q) -> str:
        r = await self.op.post(
            "/api/workflows",
            json={"workflow_id": workflow_id, "workflow_type": "greeter", "task_queue": task_queue},
        )
        assert r.status_code == 201, r.text
        run_id: str = r.json()["run_id"]
        return run_id

    async def compatibility(self, workflow_id: str) -> str | None:
        body = (await self.op.get(f"/api/workflows/{workflow_id}")).json()
        value: str | None = body["compatibility"]
        return value


@asynccontextmanager
async def open_rollouts(start_server: StartServer, **settings: Any) -> AsyncIterator[Rollouts]:
    server = await start_server(worker_token="w", operator_token="o", **settings)
    async with server.client("o", **CP) as op, server.client("w", **WP) as wc:
        yield Rollouts(server, op, wc)


@pytest.fixture
async def rollouts(start_server: StartServer) -> AsyncIterator[Rollouts]:
    async with open_rollouts(start_server) as r:
        yield r


# --- the cohort view ---------------------------------------------------------------------


async def test_an_unknown_queue_has_no_cohorts(rollouts: Rollouts) -> None:
    assert await rollouts.cohorts("nobody-here") == {
        "namespace": "default",
        "task_queue": "nobody-here",
        "stale_after_seconds": 60,
        "build_ids": [],
    }
    # A name no worker or start can use: 422 on the task queue, never a 500.
    for queue in ("a%00b", "x" * 256):
        r = await rollouts.op.get(f"/api/task-queues/{queue}/build-ids")
        assert list(body_of(r, 422, "validation_failed")["errors"]) == ["task_queue"]


async def test_workers_are_grouped_by_build_id(rollouts: Rollouts) -> None:
    await rollouts.register("b1-a", "build-1")
    await trio.sleep(0.01)
    await rollouts.register(
        "b1-b", "build-1", sdk_version="durable-workflow-python/2.11.0", runtime="go"
    )
    await rollouts.register("b1-c", " build-1 ")  # trimmed: the same cohort
    await rollouts.register("plain", None)
    await rollouts.register("elsewhere", "build-1", task_queue="other-q")
    await rollouts.register("gone", "build-1")
    r = await rollouts.op.delete(
        "/api/workers/gone", headers={"Authorization": "Bearer " + ADMIN_TOKEN}
    )
    assert r.status_code == 200, r.text
    body = await rollouts.cohorts()
    assert (body["namespace"], body["task_queue"], body["stale_after_seconds"]) == (
        "default",
        Q,
        60,
    )
    named, unversioned = body["build_ids"]
    assert list(named) == COHORT_KEYS
    assert {k: v for k, v in named.items() if not k.endswith("_at")} == {
        "build_id": "build-1",
        "rollout_status": "active",
        "drain_intent": "active",
        "active_worker_count": 3,  # the deregistered one has left
        "draining_worker_count": 0,
        "stale_worker_count": 0,
        "total_worker_count": 3,
        "runtimes": ["go", "python"],
        "sdk_versions": ["durable-workflow-python/2.11.0", "durable-workflow-python/2.12.0"],
        "new_start_selected": False,
    }
    assert named["drained_at"] is None and named["promoted_at"] is None
    workers = {
        w["worker_id"]: w
        for w in body_of(await rollouts.op.get("/api/workers", params={"task_queue": Q}), 200)[
            "workers"
        ]
    }
    assert named["first_seen_at"] == workers["b1-a"]["registered_at"]
    assert named["last_heartbeat_at"] == max(
        workers[w]["last_heartbeat_at"] for w in ("b1-a", "b1-b", "b1-c")
    )
    assert workers["b1-c"]["build_id"] == "build-1"
    assert unversioned["build_id"] is None
    assert unversioned["rollout_status"] == "active" and unversioned["total_worker_count"] == 1
    assert (await rollouts.by_build("other-q"))["build-1"]["total_worker_count"] == 1


async def test_cohorts_are_per_namespace(rollouts: Rollouts) -> None:
    async with rollouts.server.client(ADMIN_TOKEN, **CP) as admin:
        r = await admin.post("/api/namespaces", json={"name": "other"})
        assert r.status_code == 201, r.text
    await rollouts.register("here", "b1")
    await rollouts.register("there", "b1", namespace="other")
    await rollouts.change("drain", {"build_id": "b1"}, **{"X-Namespace": "other"})
    assert (await rollouts.by_build())["b1"]["drain_intent"] == "active"
    assert await rollouts.status("here") == "active"
    other = await rollouts.cohorts(**{"X-Namespace": "other"})
    assert other["namespace"] == "other"
    assert [(c["build_id"], c["draining_worker_count"]) for c in other["build_ids"]] == [("b1", 1)]
    missing = await rollouts.op.get(
        f"/api/task-queues/{Q}/build-ids", headers={"X-Namespace": "nowhere"}
    )
    body_of(missing, 404, "namespace_not_found")


async def test_the_list_order(rollouts: Rollouts) -> None:
    """By rollout status; within one, named builds before the unversioned cohort, then
    the newest heartbeat first (none last)."""
    await rollouts.register("old-1", "a-old")
    await trio.sleep(0.01)
    await rollouts.register("new-1", "a-new")
    await rollouts.register("drained-1", "drained")
    await rollouts.change("drain", {"build_id": "drained"})
    await rollouts.change("drain", {"build_id": "gone"})  # the intent alone, no workers
    await rollouts.change("promote", {"build_id": "future"})  # nobody runs it yet
    await trio.sleep(0.01)
    await rollouts.register("plain-1", None)  # the newest heartbeat, yet after named builds
    await rollouts.register("elsewhere", "a-new", task_queue="other-q")
    listed = (await rollouts.cohorts())["build_ids"]
    assert [(c["build_id"], c["rollout_status"], c["total_worker_count"]) for c in listed] == [
        ("a-new", "active", 1),
        ("a-old", "active", 1),
        (None, "active", 1),
        ("drained", "draining", 1),
        ("gone", "draining", 0),
        ("future", "no_workers", 0),
    ]
    gone = listed[4]
    assert (gone["drain_intent"], gone["runtimes"], gone["sdk_versions"]) == ("draining", [], [])
    assert gone["last_heartbeat_at"] is None and gone["first_seen_at"] is None
    assert isinstance(gone["drained_at"], str)
    assert (listed[3]["active_worker_count"], listed[3]["draining_worker_count"]) == (0, 1)
    future = listed[5]
    assert (future["drain_intent"], future["new_start_selected"]) == ("active", True)


async def test_staleness_beats_the_stored_status(start_server: StartServer) -> None:
    async with open_rollouts(start_server, worker_stale_after_s=2) as rollouts:
        assert (await rollouts.cohorts())["stale_after_seconds"] == 2
        await rollouts.register("silent", "b1")
        await rollouts.register("alive", "b1")
        await rollouts.register("lonely", "b2")
        await rollouts.change("drain", {"build_id": "b1"})
        with trio.fail_after(10):
            while (await rollouts.by_build())["b2"]["rollout_status"] != "stale_only":
                await trio.sleep(0.5)
                await rollouts.heartbeat("alive")
        await rollouts.register("fresh", "b3")
        listed = (await rollouts.cohorts())["build_ids"]
        assert [
            (
                c["build_id"],
                c["rollout_status"],
                c["active_worker_count"],
                c["draining_worker_count"],
                c["stale_worker_count"],
                c["total_worker_count"],
            )
            for c in listed
        ] == [
            ("b3", "active", 1, 0, 0, 1),
            ("b1", "draining", 0, 1, 1, 2),
            ("b2", "stale_only", 0, 0, 1, 1),
        ]
        # The silent worker is still stored draining: its heartbeat makes it count again.
        assert await rollouts.status("silent") == "stale"
        await rollouts.heartbeat("silent")
        assert (await rollouts.by_build())["b1"]["draining_worker_count"] == 2


async def test_active_with_draining(rollouts: Rollouts, db_dsn: str, aio_loop: None) -> None:
    """Registrations follow their cohort, so live active and draining workers share one
    only when a registration raced a drain or resume (its next heartbeat settles it)."""
    await rollouts.register("w1", "b1")
    await rollouts.register("w2", "b1")
    await rollouts.change("drain", {"build_id": "b1"})

    async def race(conn: Conn) -> None:  # w2 registered as the drain committed
        await conn.execute(  # type: ignore[attr-defined]
            "UPDATE worker_registrations SET status = 'active' WHERE worker_id = 'w2'"
        )

    await connect_once(db_dsn, race)
    b1 = (await rollouts.by_build())["b1"]
    assert (b1["rollout_status"], b1["active_worker_count"], b1["draining_worker_count"]) == (
        "active_with_draining",
        1,
        1,
    )
    await rollouts.heartbeat("w2")
    assert (await rollouts.by_build())["b1"]["rollout_status"] == "draining"
    # The same with the intent cleared (a worker still stored draining beside an active one).
    await rollouts.change("resume", {"build_id": "b1"})

    async def stuck(conn: Conn) -> None:
        await conn.execute(  # type: ignore[attr-defined]
            "UPDATE worker_registrations SET status = 'draining' WHERE worker_id = 'w1'"
        )

    await connect_once(db_dsn, stuck)
    b1 = (await rollouts.by_build())["b1"]
    assert (b1["rollout_status"], b1["drain_intent"]) == ("active_with_draining", "active")
    await rollouts.register("plain", None)
    order = [c["build_id"] for c in (await rollouts.cohorts())["build_ids"]]
    assert order == [None, "b1"]  # active before active_with_draining, named or not


# --- drain and resume --------------------------------------------------------------------


async def test_drain_marks_the_cohort_and_its_workers(rollouts: Rollouts) -> None:
    await rollouts.register("w1", "b1")
    await rollouts.register("w2", "b1")
    await rollouts.register("other-build", "b2")
    await rollouts.register("other-queue", "b1", task_queue="other-q")
    first = await rollouts.change("drain", {"build_id": "b1"})
    assert list(first) == STATE_KEYS
    assert first == {
        "namespace": "default",
        "task_queue": Q,
        "build_id": "b1",
        "drain_intent": "draining",
        "drained_at": first["drained_at"],
        "promoted_at": None,
        "new_start_selected": False,
    }
    assert isinstance(first["drained_at"], str) and first["drained_at"].endswith("Z")
    # At once, in the same transaction: the cohort's workers are draining.
    assert [await rollouts.status(w) for w in ("w1", "w2")] == ["draining", "draining"]
    assert await rollouts.status("other-build") == "active"
    assert await rollouts.status("other-queue") == "active"
    b1 = (await rollouts.by_build())["b1"]
    assert (b1["rollout_status"], b1["drain_intent"], b1["drained_at"]) == (
        "draining",
        "draining",
        first["drained_at"],
    )
    assert (b1["active_worker_count"], b1["draining_worker_count"]) == (0, 2)
    # A repeated drain keeps the first drained_at.
    await trio.sleep(0.01)
    again = await rollouts.change("drain", {"build_id": "b1"})
    assert again == first
    # Registering again, a heartbeat, a new worker of the cohort: all stored draining.
    await rollouts.register("w1", "b1")
    await rollouts.heartbeat("w2")
    await rollouts.register("w3", "b1")
    assert [await rollouts.status(w) for w in ("w1", "w2", "w3")] == ["draining"] * 3
    # A worker that re-registers under another build leaves the cohort.
    await rollouts.register("w3", "b2")
    assert await rollouts.status("w3") == "active"
    # A deregistered worker of the cohort that comes back comes back draining.
    async with rollouts.server.client(ADMIN_TOKEN, **CP) as admin:
        assert (await admin.delete("/api/workers/w2")).status_code == 200
    assert await rollouts.status("w2") == "deregistered"
    await rollouts.heartbeat("w2")
    assert await rollouts.status("w2") == "draining"


async def test_an_implicitly_registered_poller_of_a_draining_unversioned_cohort(
    rollouts: Rollouts,
) -> None:
    drained = await rollouts.change("drain", {"build_id": None})
    assert drained["build_id"] is None and drained["drain_intent"] == "draining"
    r = await rollouts.wc.post(
        "/api/worker/workflow-tasks/poll",
        json={"worker_id": "implicit", "task_queue": Q, "timeout_seconds": 0},
    )
    assert r.status_code == 200, r.text
    assert await rollouts.status("implicit") == "draining"
    cohort = (await rollouts.by_build())[None]
    assert (cohort["rollout_status"], cohort["draining_worker_count"]) == ("draining", 1)
    await rollouts.change("resume", {"build_id": ""})  # blank names the unversioned cohort
    assert await rollouts.status("implicit") == "active"


async def test_resume_puts_the_cohort_back(rollouts: Rollouts) -> None:
    await rollouts.register("w1", "b1")
    await rollouts.change("drain", {"build_id": "b1"})
    resumed = await rollouts.change("resume", {"build_id": "b1"})
    assert resumed == {
        "namespace": "default",
        "task_queue": Q,
        "build_id": "b1",
        "drain_intent": "active",
        "drained_at": None,
        "promoted_at": None,
        "new_start_selected": False,
    }
    assert await rollouts.status("w1") == "active"
    b1 = (await rollouts.by_build())["b1"]
    assert (b1["rollout_status"], b1["drain_intent"], b1["drained_at"]) == (
        "active",
        "active",
        None,
    )
    await rollouts.heartbeat("w1")
    assert await rollouts.status("w1") == "active"
    # Resuming again changes nothing; a drain after it records a new drained_at.
    assert await rollouts.change("resume", {"build_id": "b1"}) == resumed
    redrained = await rollouts.change("drain", {"build_id": "b1"})
    assert redrained["drained_at"] is not None


async def test_resume_of_a_cohort_never_seen_is_active_and_writes_nothing(
    rollouts: Rollouts,
) -> None:
    body = await rollouts.change("resume", {"build_id": "never-seen"})
    assert (body["build_id"], body["drain_intent"], body["drained_at"]) == (
        "never-seen",
        "active",
        None,
    )
    assert (await rollouts.cohorts())["build_ids"] == []


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["drain", "resume", "promote"])
async def test_build_id_must_be_present_and_a_string(rollouts: Rollouts, action: str) -> None:
    missing = await rollouts.change(action, {}, status=422, reason="validation_failed")
    assert missing["errors"] == {"build_id": ["The build id field is required."]}
    other_keys = await rollouts.change(
        action, {"buildId": "b1"}, status=422, reason="validation_failed"
    )
    assert list(other_keys["errors"]) == ["build_id"]
    for bad in (7, True, ["b1"], {"id": "b1"}, 1.5):
        body = await rollouts.change(
            action, {"build_id": bad}, status=422, reason="validation_failed"
        )
        assert body["errors"] == {"build_id": ["The build id field must be a string."]}, bad
    too_long = await rollouts.change(
        action, {"build_id": "b" * 256}, status=422, reason="validation_failed"
    )
    assert list(too_long["errors"]) == ["build_id"]
    for not_an_object in (b"[]", b'"b1"', b"null", b"0"):
        r = await rollouts.op.post(
            f"/api/task-queues/{Q}/build-ids/{action}",
            content=not_an_object,
            headers={"Content-Type": "application/json"},
        )
        assert list(body_of(r, 422, "validation_failed")["errors"]) == ["body"]
    no_body = await rollouts.op.post(f"/api/task-queues/{Q}/build-ids/{action}")
    assert body_of(no_body, 422, "validation_failed")["errors"] == {
        "build_id": ["The build id field is required."]
    }
    # A queue no worker or start can use: 422 on the task queue, with the body's errors.
    both = await rollouts.change(action, {}, task_queue="x" * 256, status=422)
    assert sorted(both["errors"]) == ["build_id", "task_queue"]
    nul = await rollouts.change(action, {"build_id": "b1"}, task_queue="a%00b", status=422)
    assert list(nul["errors"]) == ["task_queue"]
    # Nothing was written by any of them.
    assert (await rollouts.cohorts())["build_ids"] == []


async def test_build_ids_are_trimmed_and_blank_is_the_unversioned_cohort(
    rollouts: Rollouts,
) -> None:
    body = await rollouts.change("drain", {"build_id": "  b1\t", "extra": {"ignored": True}})
    assert body["build_id"] == "b1"
    for blank in ("", "   ", None):
        body = await rollouts.change("drain", {"build_id": blank})
        assert body["build_id"] is None
    assert sorted((c["build_id"] or "") for c in (await rollouts.cohorts())["build_ids"]) == [
        "",
        "b1",
    ]


async def test_roles_and_version_header(rollouts: Rollouts) -> None:
    async with rollouts.server.client("w", **CP) as worker_cp:
        body_of(await worker_cp.get(f"/api/task-queues/{Q}/build-ids"), 403, "forbidden")
        r = await worker_cp.post(f"/api/task-queues/{Q}/build-ids/drain", json={"build_id": None})
        body_of(r, 403, "forbidden")
    async with rollouts.server.client("o") as no_header:
        r = await no_header.get(f"/api/task-queues/{Q}/build-ids")
        body_of(r, 400, "missing_control_plane_version")
    async with rollouts.server.client(ADMIN_TOKEN, **CP) as admin:
        r = await admin.post(f"/api/task-queues/{Q}/build-ids/drain", json={"build_id": "b"})
        assert body_of(r, 200)["drain_intent"] == "draining"
    unknown = await rollouts.op.post(f"/api/task-queues/{Q}/build-ids/rollback", json={})
    assert unknown.status_code in (404, 405)  # no such action (or GET-only path)


async def test_a_queue_name_with_a_slash(rollouts: Rollouts) -> None:
    await rollouts.register("slashed", "b1", task_queue="orders/eu")
    body = await rollouts.cohorts("orders%2Feu")
    assert body["task_queue"] == "orders/eu"
    assert [c["build_id"] for c in body["build_ids"]] == ["b1"]
    drained = await rollouts.change("drain", {"build_id": "b1"}, task_queue="orders%2Feu")
    assert drained["task_queue"] == "orders/eu"
    assert await rollouts.status("slashed") == "draining"


# --- promote -----------------------------------------------------------------------------


async def test_promote_pins_new_starts_and_not_old_runs(rollouts: Rollouts) -> None:
    await rollouts.register("old-worker", "b1")
    await rollouts.register("new-worker", "b2")
    await rollouts.start("before")
    assert await rollouts.compatibility("before") is None
    promoted = await rollouts.change("promote", {"build_id": "b2"})
    assert list(promoted) == [*STATE_KEYS, "deployment"]
    assert promoted == {
        "namespace": "default",
        "task_queue": Q,
        "build_id": "b2",
        "drain_intent": "active",
        "drained_at": None,
        "promoted_at": promoted["promoted_at"],
        "new_start_selected": True,
        "deployment": {"task_queue": Q, "build_id": "b2", "promoted_at": promoted["promoted_at"]},
    }
    assert isinstance(promoted["promoted_at"], str) and promoted["promoted_at"].endswith("Z")
    await rollouts.start("after")
    assert await rollouts.compatibility("after") == "b2"
    assert await rollouts.compatibility("before") is None  # existing runs keep their marker
    await rollouts.start("elsewhere", task_queue="other-q")
    assert await rollouts.compatibility("elsewhere") is None  # per queue
    cohorts = await rollouts.by_build()
    assert (cohorts["b2"]["new_start_selected"], cohorts["b2"]["promoted_at"]) == (
        True,
        promoted["promoted_at"],
    )
    assert (cohorts["b1"]["new_start_selected"], cohorts["b1"]["promoted_at"]) == (False, None)
    # The latest promotion wins; runs started under b2 stay on b2.
    await trio.sleep(0.01)
    third = await rollouts.change("promote", {"build_id": "b3"})
    assert third["new_start_selected"] and third["promoted_at"] > promoted["promoted_at"]
    await rollouts.start("third")
    assert await rollouts.compatibility("third") == "b3"
    assert await rollouts.compatibility("after") == "b2"
    cohorts = await rollouts.by_build()
    assert not cohorts["b2"]["new_start_selected"] and cohorts["b3"]["new_start_selected"]
    # Drain and resume answers say whether the cohort is the one selected.
    drained = await rollouts.change("drain", {"build_id": "b2"})
    assert (drained["promoted_at"], drained["new_start_selected"]) == (
        promoted["promoted_at"],
        False,
    )
    # Promoting the unversioned cohort unpins new starts.
    unversioned = await rollouts.change("promote", {"build_id": None})
    assert unversioned["build_id"] is None and unversioned["new_start_selected"]
    assert unversioned["deployment"]["build_id"] is None
    await rollouts.start("unpinned")
    assert await rollouts.compatibility("unpinned") is None
    assert (await rollouts.by_build())[None]["new_start_selected"]


async def test_promote_refuses_a_draining_cohort(rollouts: Rollouts) -> None:
    await rollouts.change("promote", {"build_id": "b1"})
    await rollouts.change("drain", {"build_id": "b2"})
    refused = await rollouts.change(
        "promote", {"build_id": "b2"}, status=409, reason="build_id_draining"
    )
    assert (refused["task_queue"], refused["build_id"]) == (Q, "b2")
    assert (await rollouts.by_build())["b2"]["promoted_at"] is None
    await rollouts.start("still-b1")
    assert await rollouts.compatibility("still-b1") == "b1"
    # Resumed, it can be promoted.
    await rollouts.change("resume", {"build_id": "b2"})
    assert (await rollouts.change("promote", {"build_id": "b2"}))["new_start_selected"]


async def test_promote_pins_the_first_workflow_task_too(rollouts: Rollouts) -> None:
    """The first task of a pinned start is offered to the promoted build's worker (its
    routing is the claim's: a worker of another build may not take it)."""
    await rollouts.register("new-worker", "b2")
    await rollouts.change("promote", {"build_id": "b2"})
    await rollouts.start("pinned")
    r = await rollouts.wc.post(
        "/api/worker/workflow-tasks/poll",
        json={"worker_id": "new-worker", "task_queue": Q, "timeout_seconds": 2},
    )
    assert r.status_code == 200, r.text
    task = r.json()["task"]
    assert task is not None and task["workflow_id"] == "pinned"
