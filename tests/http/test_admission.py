"""Admission at claim time over HTTP: caps throttle polls (never an error), and a
drained build-id cohort claims nothing while another cohort keeps working."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
import trio

from dwtrio import payloads
from dwtrio.store.pool import Conn, connect_once

from conftest import StartServer
from http_clients import Clients

TOKEN = "t"
DONE = [{"type": "complete_workflow", "result": {"codec": "avro", "blob": payloads.encode(1)}}]


@attrs.define
class Fleet(Clients):
    async def register(self, worker: str, queue: str, build_id: str | None = None) -> None:
        body: dict[str, Any] = {"worker_id": worker, "task_queue": queue, "runtime": "python"}
        if build_id is not None:
            body["build_id"] = build_id
        r = await self.wc.post("/api/worker/register", json=body)
        assert r.status_code == 201, r.text

    async def poll(
        self, worker: str, queue: str, timeout_s: int, kind: str = "workflow"
    ) -> tuple[dict[str, Any] | None, float]:
        """One poll; (task or None, seconds it took). Always a 200."""
        started = trio.current_time()
        r = await self.wc.post(
            f"/api/worker/{kind}-tasks/poll",
            json={"worker_id": worker, "task_queue": queue, "timeout_seconds": timeout_s},
        )
        assert r.status_code == 200, r.text
        return r.json()["task"], trio.current_time() - started


async def sql(dsn: str, statement: str, *args: Any) -> list[Any]:
    async def run(conn: Conn) -> list[Any]:
        return list(await conn.fetch(statement, *args))

    return await connect_once(dsn, run)


@pytest.fixture
async def capped(start_server: StartServer) -> AsyncIterator[Fleet]:
    overrides = {
        "minute-q": {"workflow_tasks": {"max_dispatches_per_minute": 2}},
        "free-q": {"workflow_tasks": {"max_active_leases": 0}},
    }
    async with Fleet.open(
        start_server,
        TOKEN,
        workflow_task_max_active_leases_per_queue=1,
        task_queue_admission_overrides=json.dumps(overrides),
    ) as fleet:
        yield fleet


async def test_a_poll_over_a_lease_cap_waits_and_answers_empty_then_gets_the_freed_slot(
    capped: Fleet,
) -> None:
    for i in range(2):
        await capped.start_workflow(f"lease-{i}", "t", "lease-q", [])
    first, _ = await capped.poll("w1", "lease-q", 1)
    assert first is not None
    # the cap of one lease is taken: the next poll waits its whole time and gets nothing
    second, took = await capped.poll("w2", "lease-q", 1)
    assert second is None and took >= 0.9
    async with trio.open_nursery() as nursery:
        got: list[tuple[dict[str, Any] | None, float]] = []

        async def wait() -> None:
            got.append(await capped.poll("w2", "lease-q", 5))

        nursery.start_soon(wait)
        await trio.sleep(0.3)
        assert not got  # still throttled while the first lease is held
        await capped.complete(first, DONE)
    [(task, took)] = got
    assert task is not None and task["workflow_id"] != first["workflow_id"]
    assert took < 2.0  # the throttled poll looks again soon, not at its deadline


async def test_an_override_of_zero_lifts_the_global_lease_cap(capped: Fleet) -> None:
    for i in range(3):
        await capped.start_workflow(f"free-{i}", "t", "free-q", [])
    tasks = [(await capped.poll(f"w{i}", "free-q", 1))[0] for i in range(3)]
    assert all(t is not None for t in tasks)


async def test_a_dispatch_cap_counts_claims_per_utc_minute(capped: Fleet, db_dsn: str) -> None:
    # keep clear of a minute boundary (the count starts again at the next minute)
    second = datetime.now(UTC).second
    if second > 45:
        await trio.sleep(61 - second)
    for i in range(3):
        await capped.start_workflow(f"minute-{i}", "t", "minute-q", [])
    for i in range(2):
        task, _ = await capped.poll(f"w{i}", "minute-q", 1)
        assert task is not None
        await capped.complete(task, DONE)  # no lease is held: only the minute's count stops it
    third, took = await capped.poll("w9", "minute-q", 1)
    assert third is None and took >= 0.9
    rows = await sql(db_dsn, "SELECT scope, count FROM task_dispatch_counts")
    assert [(r["scope"], r["count"]) for r in rows] == [("queue:default:workflow:minute-q", 2)]
    ready = await sql(db_dsn, "SELECT count(*) FROM workflow_tasks WHERE state = 'ready'")
    assert ready[0]["count"] == 1


async def drain(dsn: str, queue: str, build_id: str) -> None:
    await sql(
        dsn,
        "INSERT INTO build_id_rollouts (namespace, task_queue, build_id, drain_intent, drained_at)"
        " VALUES ('default', $1, $2, 'draining', now())"
        " ON CONFLICT (namespace, task_queue, build_id) DO UPDATE SET drain_intent = 'draining'",
        queue,
        build_id,
    )


async def test_a_drained_cohort_claims_nothing_while_another_keeps_working(
    start_server: StartServer, db_dsn: str
) -> None:
    async with Fleet.open(start_server, TOKEN, worker_poll_interval_ms=200) as fleet:
        await fleet.register("old", "roll-q", build_id="build-1")
        await fleet.register("new", "roll-q", build_id="build-2")
        await drain(db_dsn, "roll-q", "build-1")
        await fleet.start_workflow("roll-1", "t", "roll-q", [])
        task, took = await fleet.poll("old", "roll-q", 1)
        assert task is None and took >= 0.9
        task, _ = await fleet.poll("new", "roll-q", 1)
        assert task is not None and task["workflow_id"] == "roll-1"
        # activity work of the drained cohort stops too
        await fleet.complete(
            task,
            [
                {
                    "type": "schedule_activity",
                    "activity_type": "a",
                    "queue": "roll-q",
                    "arguments": {"codec": "avro", "blob": payloads.encode([])},
                }
            ],
        )
        act, _ = await fleet.poll("old", "roll-q", 1, kind="activity")
        assert act is None
        act, _ = await fleet.poll("new", "roll-q", 1, kind="activity")
        assert act is not None and act["workflow_id"] == "roll-1"


async def test_a_drained_poll_gets_work_again_soon_after_a_resume(
    start_server: StartServer, db_dsn: str
) -> None:
    async with Fleet.open(start_server, TOKEN, worker_poll_interval_ms=200) as fleet:
        await fleet.register("old", "resume-q", build_id="build-1")
        await drain(db_dsn, "resume-q", "build-1")
        await fleet.start_workflow("resume-1", "t", "resume-q", [])
        got: list[tuple[dict[str, Any] | None, float]] = []
        async with trio.open_nursery() as nursery:

            async def wait() -> None:
                got.append(await fleet.poll("old", "resume-q", 10))

            nursery.start_soon(wait)
            await trio.sleep(0.5)
            assert not got
            await sql(
                db_dsn,
                "UPDATE build_id_rollouts SET drain_intent = 'active' WHERE task_queue = $1",
                "resume-q",
            )
        [(task, took)] = got
        assert task is not None and task["workflow_id"] == "resume-1"
        assert took < 4.0  # the blocked poll looks again every couple of seconds


async def test_a_poll_parked_before_its_cohort_drained_is_handed_nothing(
    start_server: StartServer,
) -> None:
    """Sync match asks the database too: a start does not lease its first task to a
    parked poll whose worker's cohort was drained after it parked."""
    async with Fleet.open(start_server, TOKEN, worker_poll_interval_ms=200) as fleet:
        await fleet.register("old", "park-q", build_id="build-1")
        await fleet.register("new", "park-q", build_id="build-2")
        got: list[tuple[dict[str, Any] | None, float]] = []
        async with trio.open_nursery() as nursery:

            async def wait() -> None:
                got.append(await fleet.poll("old", "park-q", 3))

            nursery.start_soon(wait)
            await trio.sleep(0.3)  # parked, offering itself for a sync match
            r = await fleet.cc.post(
                "/api/task-queues/park-q/build-ids/drain", json={"build_id": "build-1"}
            )
            assert r.status_code == 200, r.text
            await fleet.start_workflow("park-1", "t", "park-q", [])
            task, _ = await fleet.poll("new", "park-q", 2)
            assert task is not None and task["workflow_id"] == "park-1"
        assert got == [(None, got[0][1])]


async def test_a_run_pinned_to_a_build_goes_only_to_that_builds_workers(
    start_server: StartServer,
) -> None:
    async with Fleet.open(start_server, TOKEN, worker_poll_interval_ms=200) as fleet:
        await fleet.register("old", "pin-q", build_id="build-1")
        await fleet.register("new", "pin-q", build_id="build-2")
        await fleet.start_workflow("before", "t", "pin-q", [])  # unpinned: anyone
        r = await fleet.cc.post(
            "/api/task-queues/pin-q/build-ids/promote", json={"build_id": "build-2"}
        )
        assert r.status_code == 200, r.text
        got: list[tuple[dict[str, Any] | None, float]] = []
        async with trio.open_nursery() as nursery:

            async def wait() -> None:
                got.append(await fleet.poll("old", "pin-q", 2))

            task, _ = await fleet.poll("old", "pin-q", 1)
            assert task is not None and task["workflow_id"] == "before"
            nursery.start_soon(wait)
            await trio.sleep(0.3)  # build-1's poll parked: not a match for a pinned run
            await fleet.start_workflow("after", "t", "pin-q", [])
            task, _ = await fleet.poll("new", "pin-q", 2)
            assert task is not None and task["workflow_id"] == "after"
        assert got[0][0] is None
        assert (await fleet.describe("after"))["compatibility"] == "build-2"
