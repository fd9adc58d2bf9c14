"""Sync match: a start hands its first workflow task straight to a parked poller.

Contract: worker-plane.md §5 (a poll answers with a leased task), the
handed-over task must be indistinguishable from a claimed one (same body,
same lease, same fencing, same poll-retry behaviour); dwtrio/matching/waiters.py
and ``create_with_handoff`` in dwtrio/matching/dispatch.py.

The HTTP tests see a sync match in the start's answer: the run is already
``running`` (a claim is what makes a run running), where a start nobody was
waiting for answers ``pending``. The runtime tests drive ``create_with_handoff``
on a real store for the races HTTP cannot time: the poll ending before the
delivery, the creating statement failing.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio

from dwtrio.engine import workflow_tasks
from dwtrio.engine.outcome import Outcome
from dwtrio.engine.workflows import StartCommand, start_fresh
from dwtrio.http.workflow_tasks import WORKFLOW_TASKS
from dwtrio.matching import dispatch
from dwtrio.matching.dispatch import create_with_handoff
from dwtrio.runtime import Runtime
from dwtrio.store.pool import Conn, open_store

from conftest import StartServer, make_settings
from http_clients import Clients

TOKEN = "t"
Q = "sq"
POLL_WF = "/api/worker/workflow-tasks/poll"
ARGS = ["world"]


@attrs.define
class Sync(Clients):
    async def start(self, workflow_id: str, workflow_type: str = "greeter") -> dict[str, Any]:
        return await self.start_workflow(workflow_id, workflow_type, Q, ARGS)

    async def poll(self, worker: str, timeout: int, **extra: Any) -> dict[str, Any] | None:
        r = await self.wc.post(
            POLL_WF,
            json={"worker_id": worker, "task_queue": Q, "timeout_seconds": timeout, **extra},
        )
        assert r.status_code == 200, r.text
        return r.json()["task"]  # type: ignore[no-any-return]

    async def start_while_parked(
        self, workflow_id: str, worker: str = "w1", workflow_type: str = "greeter", **poll: Any
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Park ``worker``'s poll, start ``workflow_id``; the start's answer and the poll's."""
        got: list[dict[str, Any] | None] = []
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:

                async def parked() -> None:
                    got.append(await self.poll(worker, 5, **poll))

                nursery.start_soon(parked)
                await trio.sleep(0.3)  # parked (the queue was empty)
                started = await self.start(workflow_id, workflow_type)
        return started, got[0]


@pytest.fixture
async def s(start_server: StartServer) -> AsyncIterator[Sync]:
    # Rechecks far apart: a task that was not handed over or woken would show as a delay.
    async with Sync.open(start_server, TOKEN, worker_poll_interval_ms=60_000) as ss:
        yield ss


def comparable(task: dict[str, Any]) -> dict[str, Any]:
    """A task body without what differs between two workflows."""
    out = {k: v for k, v in task.items() if k not in ("task_id", "workflow_id", "run_id")}
    out.pop("lease_expires_at")
    out["history_events"] = [
        {
            k: v
            for k, v in e.items()
            if k not in ("id", "recorded_at", "workflow_command_id", "payload")
        }
        for e in task["history_events"]
    ]
    return out


async def test_a_parked_poll_gets_the_started_workflow_as_a_claim_would_give_it(
    s: Sync,
) -> None:
    started, handed = await s.start_while_parked("wf-sync")
    assert started["status"] == "running"  # leased by the start itself
    assert handed is not None and handed["workflow_id"] == "wf-sync"
    # The same workflow shape, started with nobody waiting, then claimed.
    plain = await s.start("wf-plain")
    assert plain["status"] == "pending"
    claimed = await s.poll("w1", 0)
    assert claimed is not None and claimed["workflow_id"] == "wf-plain"
    assert comparable(handed) == comparable(claimed)
    assert handed["workflow_task_attempt"] == 1 and handed["lease_owner"] == "w1"
    # The handed-over history is the stored one (the retry test compares it field for
    # field with a history read back from the database).
    stored = await s.history("wf-sync", handed["run_id"])
    assert [e["event_type"] for e in stored] == ["StartAccepted", "WorkflowStarted"]
    assert [(e["sequence"], e["payload"]) for e in stored] == [
        (e["sequence"], e["payload"]) for e in handed["history_events"]
    ]
    described = await s.describe("wf-sync")
    assert described["status"] == "running"
    # The lease is a real one: the task completes the workflow.
    await s.complete(handed, [{"type": "complete_workflow", "result": None}])
    assert (await s.describe("wf-sync"))["status"] == "completed"
    # ... and the queue holds nothing else for anybody.
    assert await s.poll("w2", 0) is None


async def test_a_retried_poll_gets_the_handed_over_task_again(s: Sync) -> None:
    _, handed = await s.start_while_parked("wf-retry", poll_request_id="poll-1")
    assert handed is not None
    again = await s.poll("w1", 0, poll_request_id="poll-1")
    assert again is not None
    assert again["task_id"] == handed["task_id"]
    assert again["workflow_task_attempt"] == 1
    # Read back from the database (the retry path), field for field.
    assert again["history_events"] == handed["history_events"]
    assert again == {**handed, "lease_expires_at": again["lease_expires_at"]}


async def test_a_small_history_page_is_paged_like_a_claim(s: Sync) -> None:
    _, handed = await s.start_while_parked("wf-page", history_page_size=1)
    assert handed is not None
    assert [e["sequence"] for e in handed["history_events"]] == [1]
    token = handed["next_history_page_token"]
    assert token
    r = await s.wc.post(
        f"/api/worker/workflow-tasks/{handed['task_id']}/history",
        json={
            "lease_owner": handed["lease_owner"],
            "workflow_task_attempt": 1,
            "next_history_page_token": token,
        },
    )
    assert r.status_code == 200, r.text
    assert [e["sequence"] for e in r.json()["history_events"]] == [2]


async def test_a_poller_of_other_types_is_not_handed_the_task(s: Sync) -> None:
    r = await s.wc.post(
        "/api/worker/register",
        json={"worker_id": "only-a", "task_queue": Q, "supported_workflow_types": ["a"]},
    )
    assert r.status_code == 201, r.text
    started, got = await s.start_while_parked("wf-b", worker="only-a", workflow_type="b")
    assert started["status"] == "pending"
    assert got is None  # parked until its deadline: never given a "b"
    task = await s.poll("anyone", 0)
    assert task is not None and task["workflow_id"] == "wf-b"
    assert task["workflow_task_attempt"] == 1
    # The same worker is handed a type it runs.
    started, got = await s.start_while_parked("wf-a", worker="only-a", workflow_type="a")
    assert started["status"] == "running"
    assert got is not None and got["workflow_id"] == "wf-a"


async def test_parked_pollers_are_handed_tasks_in_fifo_order(s: Sync) -> None:
    send, receive = trio.open_memory_channel[tuple[int, dict[str, Any] | None]](3)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:

            async def poller(i: int) -> None:
                await send.send((i, await s.poll(f"p{i}", 10)))

            for i in range(3):
                nursery.start_soon(poller, i)
                await trio.sleep(0.25)
            for i in range(3):
                started = await s.start(f"wf-fifo-{i}")
                assert started["status"] == "running"
                who, task = await receive.receive()
                assert who == i
                assert task is not None and task["workflow_id"] == f"wf-fifo-{i}"
                assert task["lease_owner"] == f"p{i}"


# --- races, on the runtime with a real store ------------------------------------------------
@attrs.define
class LeavingClient:
    """A poll's client that leaves when ``left`` is set."""

    left: trio.Event = attrs.field(factory=trio.Event)

    async def wait_gone(self) -> None:
        await self.left.wait()

    def has_gone(self) -> bool:
        return self.left.is_set()


def command(workflow_id: str) -> StartCommand:
    return StartCommand(
        namespace="default",
        workflow_id=workflow_id,
        workflow_type="greeter",
        task_queue=Q,
        input_blob="AAEC",
    )


@pytest.fixture
async def rt(aio_loop: None, db_dsn: str) -> AsyncIterator[Runtime]:
    async with open_store(db_dsn, min_size=1, max_size=4) as store:
        yield Runtime.build(make_settings(worker_poll_interval_ms=60_000), store)


async def parked_poll(
    rt: Runtime,
    worker: str,
    client: LeavingClient,
    out: list[Any],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    params = workflow_tasks.ClaimParams(
        namespace="default",
        task_queue=Q,
        worker_id=worker,
        poll_request_id=None,
        workflow_types=(),
        lease_s=60,
        page_size=100,
    )
    task_status.started()
    try:
        out.append(
            await dispatch.poll(rt, WORKFLOW_TASKS, params, timeout_seconds=30, client=client)
        )
    except Exception as exc:  # ClientGone
        out.append(exc)


async def task_row(rt: Runtime, workflow_id: str) -> dict[str, Any]:
    async def read(conn: Conn) -> dict[str, Any]:
        row = await conn.fetchrow(
            "SELECT t.state, t.attempt, t.lease_owner, r.status FROM workflow_tasks t"
            " JOIN workflow_runs r ON r.id = t.run_id WHERE t.workflow_id = $1",
            workflow_id,
        )
        return dict(row)

    return await rt.store.read(read)


def accepts_all(offer: Any) -> bool:
    return True


async def start_handing_over(rt: Runtime, workflow_id: str) -> Outcome | None:
    """What ``POST /api/workflows`` runs first: the one-statement start, with sync match."""
    return await create_with_handoff(
        rt,
        WORKFLOW_TASKS,
        functools.partial(rt.store.autocommit, start_fresh, command(workflow_id)),
        namespace="default",
        task_queue=Q,
        task_type="greeter",
    )


async def test_a_poll_that_ends_before_the_delivery_leaves_the_task_to_others(
    rt: Runtime,
) -> None:
    leaving, staying = LeavingClient(), LeavingClient()
    first: list[Any] = []
    second: list[Any] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(parked_poll, rt, "leaver", leaving, first)
            await trio.sleep(0.2)
            await nursery.start(parked_poll, rt, "stayer", staying, second)
            await trio.sleep(0.2)

            async def create(offer: Any) -> Any:
                # The reserved poll is the oldest: "leaver". It goes away while the
                # start is being written for it.
                assert offer.worker_id == "leaver"
                leaving.left.set()
                await trio.sleep(0.1)
                return await rt.store.autocommit(start_fresh, command("wf-left"), offer)

            outcome = await create_with_handoff(
                rt, WORKFLOW_TASKS, create, namespace="default", task_queue=Q, task_type="greeter"
            )
            assert outcome is not None and outcome.handoff is not None
    assert [type(x).__name__ for x in first] == ["ClientGone"]
    # The lease written for the leaver was released and the other poll woken: it
    # claimed the task as a first attempt.
    [task] = second
    assert task["workflow_id"] == "wf-left" and task["lease_owner"] == "stayer"
    assert task["workflow_task_attempt"] == 1
    assert await task_row(rt, "wf-left") == {
        "state": "leased",
        "attempt": 1,
        "lease_owner": "stayer",
        "status": "running",
    }
    assert rt.waiters.statistics().sync_matches == 0


async def test_a_start_that_creates_nothing_frees_the_reserved_poll(rt: Runtime) -> None:
    client = LeavingClient()
    got: list[Any] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(parked_poll, rt, "w1", client, got)
            await trio.sleep(0.2)
            # The id is taken: the one-statement start writes nothing.
            assert await rt.store.autocommit(start_fresh, command("wf-taken")) is not None
            outcome = await start_handing_over(rt, "wf-taken")
            assert outcome is None
            await trio.sleep(0.2)
            assert got == []  # nothing was created for it: still parked, and free again
            key = ("default", Q, "workflow")
            again = rt.waiters.reserve(key, accepts_all)
            assert again is not None and again.offer.worker_id == "w1"
            rt.waiters.unreserve(again)
            # A wake (the transactional start's, in the real handler) sends it claiming.
            rt.publish_wakes({key})
    [task] = got
    assert task is not None and task["workflow_id"] == "wf-taken"
    assert task["lease_owner"] == "w1" and task["workflow_task_attempt"] == 1
    assert rt.waiters.statistics().sync_matches == 0


async def test_a_failed_create_lets_the_reserved_poll_go_on(rt: Runtime) -> None:
    client = LeavingClient()
    got: list[Any] = []

    async def broken(offer: Any) -> Any:
        raise RuntimeError("boom")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(parked_poll, rt, "w1", client, got)
            await trio.sleep(0.2)
            with pytest.raises(RuntimeError):
                await create_with_handoff(
                    rt,
                    WORKFLOW_TASKS,
                    broken,
                    namespace="default",
                    task_queue=Q,
                    task_type="greeter",
                )
            await trio.sleep(0.1)  # it looked again (the queue is known empty) and parked
            # Not reserved any more: an ordinary start is handed to it.
            outcome = await start_handing_over(rt, "wf-after")
            assert outcome is not None and outcome.handoff is not None
    [task] = got
    assert task["workflow_id"] == "wf-after" and task["lease_owner"] == "w1"
    assert rt.waiters.statistics().sync_matches == 1
    assert await task_row(rt, "wf-after") == {
        "state": "leased",
        "attempt": 1,
        "lease_owner": "w1",
        "status": "running",
    }
