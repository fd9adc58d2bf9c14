"""Sync match beyond starts: every task a request or the timer loop creates may go
straight to a poll parked in the same process (issue 19).

Contract: dwtrio/store/offers.py and ``transaction_with_handoffs`` in
dwtrio/matching/dispatch.py. A handed task is the task a claim would have
leased (same body, same lease, ``ActivityStarted`` recorded), and no claim
statement runs for it: the tests count claims that found a task
(``dwtrio_claims_total{result="found"}``) and sync matches
(``dwtrio_sync_matches_total``) in this process's registry, with rechecks a
minute apart so that a task neither handed over nor woken would show.

The runtime tests drive ``transaction_with_handoffs`` on a real store for what
HTTP cannot time: a poll leaving between its reservation and the delivery, and
a transaction the store runs twice (a forced serialization failure, a
connection terminated mid-transaction).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import attrs
import pytest
import trio
from prometheus_client import REGISTRY

from dwtrio import wire
from dwtrio.engine import activity_tasks, workflow_tasks
from dwtrio.engine.commands.context import CommandLimits
from dwtrio.engine.workflows import StartCommand, start_fresh
from dwtrio.matching import dispatch
from dwtrio.matching.dispatch import TaskKind, transaction_with_handoffs
from dwtrio.protocol.worker import CompleteWorkflowTask
from dwtrio.runtime import Runtime
from dwtrio.store import build_ids
from dwtrio.store.pool import Conn, call_on_trio, open_store
from dwtrio.task_kinds import ACTIVITY_TASKS, WORKFLOW_TASKS

from conftest import StartServer, make_settings
from http_clients import Clients

TOKEN = "t"
Q = "sme"
Q2 = "sme-other"


def claims_found(kind: str) -> float:
    return REGISTRY.get_sample_value("dwtrio_claims_total", {"kind": kind, "result": "found"}) or 0


def sync_matches(kind: str) -> float:
    return REGISTRY.get_sample_value("dwtrio_sync_matches_total", {"kind": kind}) or 0


def schedule(activity_type: str = "greet", queue: str = Q) -> dict[str, Any]:
    return {"type": "schedule_activity", "activity_type": activity_type, "queue": queue}


@attrs.define
class Sme(Clients):
    async def poll(
        self, kind: str, worker: str, timeout: int, queue: str = Q
    ) -> dict[str, Any] | None:
        r = await self.wc.post(
            f"/api/worker/{kind}-tasks/poll",
            json={"worker_id": worker, "task_queue": queue, "timeout_seconds": timeout},
        )
        assert r.status_code == 200, r.text
        return r.json()["task"]  # type: ignore[no-any-return]

    async def first_task(self, workflow_id: str) -> dict[str, Any]:
        await self.start_workflow(workflow_id, "greeter", Q, ["world"])
        task = await self.poll("workflow", "w-setup", 0)
        assert task is not None and task["workflow_id"] == workflow_id
        return task

    async def waiting_on_activity(self, workflow_id: str) -> dict[str, Any]:
        """A run parked on one activity (no workflow task open); the activity's task."""
        await self.complete(await self.first_task(workflow_id), [schedule()])
        activity = await self.poll("activity", "a-setup", 0)
        assert activity is not None
        return activity


async def park_and_act(
    s: Sme,
    polls: list[tuple[str, str, str]],
    act: Callable[[], Awaitable[Any]],
    timeout: int = 5,
) -> dict[str, dict[str, Any] | None]:
    """Park one poll per (kind, worker, queue), run ``act``; each poll's answer by worker."""
    got: dict[str, dict[str, Any] | None] = {}
    with trio.fail_after(timeout + 5):
        async with trio.open_nursery() as nursery:
            for kind, worker, queue in polls:

                async def parked(
                    kind: str = kind, worker: str = worker, queue: str = queue
                ) -> None:
                    got[worker] = await s.poll(kind, worker, timeout, queue)

                nursery.start_soon(parked)
                await trio.sleep(0.1)
            await trio.sleep(0.2)  # all parked (their queues were empty)
            await act()
    return got


@pytest.fixture
async def rt(aio_loop: None, db_dsn: str) -> AsyncIterator[Runtime]:
    async with open_store(db_dsn, min_size=1, max_size=4) as store:
        yield Runtime.build(make_settings(worker_poll_interval_ms=60_000), store)


@pytest.fixture
async def s(start_server: StartServer) -> AsyncIterator[Sme]:
    # Rechecks a minute apart: a task neither handed over nor woken would show.
    async with Sme.open(start_server, TOKEN, worker_poll_interval_ms=60_000) as ss:
        yield ss


async def test_activities_scheduled_by_a_completion_go_to_parked_polls(s: Sme) -> None:
    task = await s.first_task("wf-acts")
    found, handed = claims_found("activity"), sync_matches("activity")

    async def complete() -> None:
        # Three activities on Q (two polls parked there), one on Q2 (one poll parked).
        commands = [schedule(), schedule(), schedule(), schedule(queue=Q2)]
        await s.complete(task, commands)

    got = await park_and_act(
        s,
        [("activity", "a1", Q), ("activity", "a2", Q), ("activity", "a3", Q2)],
        complete,
    )
    for worker in ("a1", "a2", "a3"):
        activity = got[worker]
        assert activity is not None and activity["workflow_id"] == "wf-acts"
        assert activity["lease_owner"] == worker and activity["attempt_number"] == 1
    assert got["a3"] is not None and got["a3"]["task_queue"] == Q2
    assert claims_found("activity") == found  # no claim statement ran for them
    assert sync_matches("activity") == handed + 3
    # The fourth stayed ready, and its wake was kept: a poll claims it.
    rest = await s.poll("activity", "a4", 0)
    assert rest is not None and rest["attempt_number"] == 1
    assert claims_found("activity") == found + 1
    # Each handed attempt was recorded as a claim records it.
    history = await s.history("wf-acts", task["run_id"])
    started = [e for e in history if e["event_type"] == "ActivityStarted"]
    assert sorted(e["payload"]["activity_attempt_id"] for e in started) == sorted(
        t["activity_attempt_id"] for t in (*got.values(), rest) if t is not None
    )
    # A handed lease is a real one: its completion is accepted.
    a1 = got["a1"]
    assert a1 is not None
    r = await s.wc.post(
        f"/api/worker/activity-tasks/{a1['task_id']}/complete",
        json={"activity_attempt_id": a1["activity_attempt_id"], "lease_owner": "a1", "result": 1},
    )
    assert r.status_code == 200, r.text


async def test_a_poll_of_other_activity_types_is_not_handed_the_task(s: Sme) -> None:
    r = await s.wc.post(
        "/api/worker/register",
        json={"worker_id": "only-x", "task_queue": Q, "supported_activity_types": ["x"]},
    )
    assert r.status_code == 201, r.text
    task = await s.first_task("wf-types")

    async def complete() -> None:
        await s.complete(task, [schedule("greet")])

    got = await park_and_act(s, [("activity", "only-x", Q)], complete, timeout=1)
    assert got["only-x"] is None
    rest = await s.poll("activity", "anyone", 0)
    assert rest is not None and rest["activity_type"] == "greet"


async def test_an_activity_result_hands_the_next_workflow_task_over(s: Sme) -> None:
    activity = await s.waiting_on_activity("wf-result")
    found, handed = claims_found("workflow"), sync_matches("workflow")

    async def complete() -> None:
        r = await s.wc.post(
            f"/api/worker/activity-tasks/{activity['task_id']}/complete",
            json={
                "activity_attempt_id": activity["activity_attempt_id"],
                "lease_owner": "a-setup",
                "result": 5,
            },
        )
        assert r.status_code == 200, r.text

    got = await park_and_act(s, [("workflow", "w1", Q)], complete)
    task = got["w1"]
    assert task is not None and task["workflow_id"] == "wf-result"
    assert task["history_events"][-1]["event_type"] == "ActivityCompleted"
    assert task["last_history_sequence"] == len(task["history_events"])
    assert claims_found("workflow") == found and sync_matches("workflow") == handed + 1
    await s.complete(task, [{"type": "complete_workflow", "result": None}])
    assert (await s.describe("wf-result"))["status"] == "completed"


async def test_an_activity_failure_hands_the_next_workflow_task_over(s: Sme) -> None:
    activity = await s.waiting_on_activity("wf-failure")
    found = claims_found("workflow")

    async def fail() -> None:
        r = await s.wc.post(
            f"/api/worker/activity-tasks/{activity['task_id']}/fail",
            json={
                "activity_attempt_id": activity["activity_attempt_id"],
                "lease_owner": "a-setup",
                "failure": {"message": "no", "non_retryable": True},
            },
        )
        assert r.status_code == 200, r.text

    got = await park_and_act(s, [("workflow", "w1", Q)], fail)
    task = got["w1"]
    assert task is not None and task["workflow_id"] == "wf-failure"
    assert task["history_events"][-1]["event_type"] == "ActivityFailed"
    assert claims_found("workflow") == found


async def test_a_signal_hands_its_workflow_task_over(s: Sme) -> None:
    await s.waiting_on_activity("wf-signal")
    found, handed = claims_found("workflow"), sync_matches("workflow")

    async def signal() -> None:
        r = await s.cc.post("/api/workflows/wf-signal/signal/go", json={"input": [1]})
        assert r.status_code == 202, r.text

    got = await park_and_act(s, [("workflow", "w1", Q)], signal)
    task = got["w1"]
    assert task is not None and task["workflow_id"] == "wf-signal"
    assert task["history_events"][-1]["event_type"] == "SignalReceived"
    assert claims_found("workflow") == found and sync_matches("workflow") == handed + 1


async def test_an_update_hands_its_update_task_over(s: Sme) -> None:
    await s.waiting_on_activity("wf-update")
    found = claims_found("workflow")
    answers: list[dict[str, Any]] = []

    async def update() -> None:
        r = await s.cc.post("/api/workflows/wf-update/update/add", json={"input": [1]})
        assert r.status_code == 202, r.text
        answers.append(r.json())

    got = await park_and_act(s, [("workflow", "w1", Q)], update)
    task = got["w1"]
    assert task is not None and task["workflow_update_id"] == answers[0]["update_id"]
    assert task["history_events"][-1]["event_type"] == "UpdateAccepted"
    assert claims_found("workflow") == found


async def test_a_fired_timer_hands_the_workflow_task_over(s: Sme) -> None:
    task = await s.first_task("wf-timer")
    await s.complete(task, [{"type": "start_timer", "delay_seconds": 1}])
    found, handed = claims_found("workflow"), sync_matches("workflow")

    async def nothing() -> None:
        pass

    got = await park_and_act(s, [("workflow", "w1", Q)], nothing)
    woken = got["w1"]
    assert woken is not None and woken["workflow_id"] == "wf-timer"
    assert woken["history_events"][-1]["event_type"] == "TimerFired"
    assert claims_found("workflow") == found and sync_matches("workflow") == handed + 1


async def test_a_capped_queue_gets_no_sync_match(start_server: StartServer) -> None:
    async with Sme.open(
        start_server,
        TOKEN,
        worker_poll_interval_ms=60_000,
        activity_task_max_active_leases_per_queue=10,
    ) as s:
        task = await s.first_task("wf-capped")
        handed = sync_matches("activity")

        async def complete() -> None:
            await s.complete(task, [schedule()])

        got = await park_and_act(s, [("activity", "a1", Q)], complete)
        # Woken, then claimed through the admission path.
        activity = got["a1"]
        assert activity is not None and activity["attempt_number"] == 1
        assert sync_matches("activity") == handed


async def test_a_poll_whose_cohort_drained_meanwhile_is_not_handed_the_task(
    s: Sme, rt: Runtime
) -> None:
    r = await s.wc.post(
        "/api/worker/register",
        json={"worker_id": "old-w", "task_queue": Q, "build_id": "b-old"},
    )
    assert r.status_code == 201, r.text
    task = await s.first_task("wf-drained")
    handed = sync_matches("activity")

    async def drain_then_complete() -> None:
        # The poll parked while its cohort was active; the lease statement sees the drain.
        await rt.store.transaction(build_ids.drain, "default", Q, "b-old")
        await s.complete(task, [schedule()])

    got = await park_and_act(s, [("activity", "old-w", Q)], drain_then_complete, timeout=2)
    assert got["old-w"] is None
    assert sync_matches("activity") == handed
    activity = await s.poll("activity", "new-w", 0)
    assert activity is not None and activity["attempt_number"] == 1


# --- races, on the runtime with a real store ------------------------------------------------
@attrs.define
class LeavingClient:
    """A poll's client that leaves when ``left`` is set."""

    left: trio.Event = attrs.field(factory=trio.Event)

    async def wait_gone(self) -> None:
        await self.left.wait()

    def has_gone(self) -> bool:
        return self.left.is_set()


async def parked_activity_poll(
    rt: Runtime,
    worker: str,
    client: LeavingClient,
    out: list[Any],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    params = activity_tasks.ClaimParams(
        namespace="default",
        task_queue=Q,
        worker_id=worker,
        poll_request_id=None,
        activity_types=(),
        default_lease_s=60,
    )
    task_status.started()
    try:
        out.append(
            await dispatch.poll(rt, ACTIVITY_TASKS, params, timeout_seconds=10, client=client)
        )
    except Exception as exc:  # ClientGone
        out.append(exc)


async def leased_first_task(rt: Runtime, workflow_id: str) -> dict[str, Any]:
    """Start ``workflow_id`` and claim its first workflow task."""
    command = StartCommand(
        namespace="default",
        workflow_id=workflow_id,
        workflow_type="greeter",
        task_queue=Q,
        input_blob="AAEC",
    )
    assert await rt.store.autocommit(start_fresh, command) is not None
    params = workflow_tasks.ClaimParams(
        namespace="default",
        task_queue=Q,
        worker_id="w-setup",
        poll_request_id=None,
        workflow_types=(),
        lease_s=60,
        page_size=100,
    )
    task = await rt.store.autocommit(workflow_tasks.claim, params, replay_poll=False)
    assert isinstance(task, dict)
    return task


async def complete_scheduling(
    rt: Runtime, task: dict[str, Any], kinds: tuple[TaskKind[Any], ...], activities: int = 1
) -> Any:
    """Complete ``task`` scheduling ``activities`` activities on Q, with sync match."""
    req = wire.structure(
        {
            "lease_owner": task["lease_owner"],
            "workflow_task_attempt": task["workflow_task_attempt"],
            "commands": [schedule()] * activities,
        },
        CompleteWorkflowTask,
    )
    limits = CommandLimits.from_settings(rt.settings)
    return await transaction_with_handoffs(
        rt, kinds, workflow_tasks.complete, "default", task["task_id"], req, limits
    )


async def activity_rows(rt: Runtime, workflow_id: str) -> list[dict[str, Any]]:
    async def read(conn: Conn) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            "SELECT t.state, t.attempt, t.lease_owner,"
            " (SELECT count(*) FROM activity_attempts a WHERE a.task_id = t.id) AS attempts"
            " FROM workflow_tasks t WHERE t.workflow_id = $1 AND t.kind = 'activity'",
            workflow_id,
        )
        return [dict(r) for r in rows]

    return await rt.store.read(read)


async def test_a_poll_that_leaves_before_the_delivery_leaves_the_task_to_others(
    rt: Runtime,
) -> None:
    task = await leased_first_task(rt, "wf-leaves")
    leaving, staying = LeavingClient(), LeavingClient()
    first: list[Any] = []
    second: list[Any] = []
    token = trio.lowlevel.current_trio_token()
    key = ("default", Q, "activity")

    async def lease_then_leave(conn: Conn, params: Any, task_id: str) -> Any:
        # The reserved poll is the oldest, "leaver": it goes away after the lease is
        # written for it, before the commit and the delivery.
        assert params.worker_id == "leaver"
        body = await activity_tasks.lease_created(conn, params, task_id)
        await call_on_trio(token, leaving.left.set)
        for _ in range(100):
            if rt.waiters.waiting(key) == 1:
                break
            await call_on_trio(token, lambda: None)  # let the poll run and leave
        assert rt.waiters.waiting(key) == 1
        return body

    kinds = (WORKFLOW_TASKS, attrs.evolve(ACTIVITY_TASKS, lease_created=lease_then_leave))
    matched = rt.waiters.statistics().sync_matches
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(parked_activity_poll, rt, "leaver", leaving, first)
            await trio.sleep(0.2)
            await nursery.start(parked_activity_poll, rt, "stayer", staying, second)
            await trio.sleep(0.2)
            await complete_scheduling(rt, task, kinds)
    assert [type(x).__name__ for x in first] == ["ClientGone"]
    # The lease written for the leaver was released (its attempt expired, as for a
    # claim whose client left) and the other poll woken: it claimed the task.
    [activity] = second
    assert activity["workflow_id"] == "wf-leaves" and activity["lease_owner"] == "stayer"
    assert activity["attempt_number"] == 2
    assert rt.waiters.statistics().sync_matches == matched
    [row] = await activity_rows(rt, "wf-leaves")
    assert row["state"] == "leased" and row["lease_owner"] == "stayer"
    assert row["attempts"] == 2


@pytest.mark.parametrize("failure", ["serialization", "connection"])
async def test_a_transaction_run_twice_delivers_each_task_once(rt: Runtime, failure: str) -> None:
    task = await leased_first_task(rt, f"wf-twice-{failure}")
    runs = 0

    async def fail_first_run(conn: Conn, params: Any, task_id: str) -> Any:
        nonlocal runs
        runs += 1
        body = await activity_tasks.lease_created(conn, params, task_id)
        if runs == 1:
            # After the first lease of the first run: the whole run is rolled back.
            if failure == "serialization":
                raise asyncpg.SerializationError("forced by the test")
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return body

    kinds = (WORKFLOW_TASKS, attrs.evolve(ACTIVITY_TASKS, lease_created=fail_first_run))
    clients = [LeavingClient(), LeavingClient()]
    got: list[list[Any]] = [[], []]
    matched = rt.waiters.statistics().sync_matches
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i, client in enumerate(clients):
                await nursery.start(parked_activity_poll, rt, f"p{i}", client, got[i])
                await trio.sleep(0.1)
            await trio.sleep(0.1)
            outcome = await complete_scheduling(rt, task, kinds, activities=2)
            assert not outcome.wakes  # both were handed over
            await trio.sleep(0.3)
            for client in clients:
                client.left.set()
    assert runs == 3  # two leases in the second run
    handed = [answers[0] for answers in got]
    assert [t["lease_owner"] for t in handed] == ["p0", "p1"]
    assert [t["attempt_number"] for t in handed] == [1, 1]
    assert len({t["task_id"] for t in handed}) == 2
    assert rt.waiters.statistics().sync_matches == matched + 2
    rows = await activity_rows(rt, f"wf-twice-{failure}")
    assert sorted((r["state"], r["lease_owner"], r["attempt"], r["attempts"]) for r in rows) == [
        ("leased", "p0", 1, 1),
        ("leased", "p1", 1, 1),
    ]


async def test_a_failed_operation_frees_the_reserved_polls(rt: Runtime) -> None:
    task = await leased_first_task(rt, "wf-fails")

    async def broken(conn: Conn, params: Any, task_id: str) -> Any:
        await activity_tasks.lease_created(conn, params, task_id)
        raise RuntimeError("boom")

    kinds = (WORKFLOW_TASKS, attrs.evolve(ACTIVITY_TASKS, lease_created=broken))
    client = LeavingClient()
    got: list[Any] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(parked_activity_poll, rt, "p0", client, got)
            await trio.sleep(0.2)
            with pytest.raises(RuntimeError):
                await complete_scheduling(rt, task, kinds)
            await trio.sleep(0.1)  # it looked again and parked, free again
            # The same completion, committed this time, is handed to it.
            await complete_scheduling(rt, task, (WORKFLOW_TASKS, ACTIVITY_TASKS))
    [activity] = got
    assert activity["lease_owner"] == "p0" and activity["attempt_number"] == 1
