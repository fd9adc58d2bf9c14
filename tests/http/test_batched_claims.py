"""Batched claims (issue 19): polls of one queue that claim together share a statement.

``matching/batches.py`` runs one claim statement per queue and type filter at a
time in a process; polls arriving meanwhile are claimed for together in the next
(``claim_activity_tasks``). Driven through ``dispatch.poll`` on a runtime with a
real store: each poll still gets one task of its own, a type filter still holds,
and a task claimed for a poll whose client left is put back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio

from dwtrio.engine import activity_tasks
from dwtrio.engine.workflows import StartCommand, start_fresh
from dwtrio.http.activity_tasks import ACTIVITY_TASKS
from dwtrio.matching import dispatch
from dwtrio.matching.waiters import ClientGone
from dwtrio.protocol.ids import new_id
from dwtrio.runtime import Runtime
from dwtrio.store import activities, runs
from dwtrio.store.pool import Conn, open_store

from conftest import make_settings

Q = "batched"


@pytest.fixture
async def rt(aio_loop: None, db_dsn: str) -> AsyncIterator[Runtime]:
    async with open_store(db_dsn, min_size=1, max_size=4) as store:
        yield Runtime.build(make_settings(worker_poll_interval_ms=60_000), store)


def params(worker: str, types: tuple[str, ...] = ()) -> activity_tasks.ClaimParams:
    return activity_tasks.ClaimParams(
        namespace="default",
        task_queue=Q,
        worker_id=worker,
        poll_request_id=None,
        activity_types=types,
        default_lease_s=60,
    )


async def schedule(rt: Runtime, workflow_id: str, types: list[str]) -> None:
    """A run with one scheduled activity of each of ``types`` on queue ``Q``."""

    async def op(conn: Conn) -> None:
        cmd = StartCommand(
            namespace="default",
            workflow_id=workflow_id,
            workflow_type="wf",
            task_queue="wfq",
            input_blob="AAEC",
        )
        assert await start_fresh(conn, cmd) is not None
        run_id = await conn.fetchval(
            "SELECT id FROM workflow_runs WHERE workflow_id = $1", workflow_id
        )
        run = await runs.lock_run(conn, run_id)
        assert run is not None
        for seq, activity_type in enumerate(types, start=1):
            await activities.schedule_activity(
                conn,
                execution_id=new_id(),
                task_id=new_id(),
                run=run,
                sequence=seq,
                activity_type=activity_type,
                task_queue=Q,
                arguments="AAEC",
                retry_policy=None,
                options={},
                parallel=None,
                schedule_to_start_s=None,
                schedule_to_close_s=None,
            )

    await rt.store.transaction(op)


@attrs.define
class Client:
    """A poll's client; ``gone`` from the start: it left while its claim ran."""

    gone: bool = False

    async def wait_gone(self) -> None:
        await trio.sleep_forever()

    def has_gone(self) -> bool:
        return self.gone


async def polls_together(
    rt: Runtime, polls: list[activity_tasks.ClaimParams], clients: list[Client] | None = None
) -> list[Any]:
    """Start the polls in the same instant; each one's task, None or exception."""
    got: list[Any] = [None] * len(polls)

    async def one(i: int) -> None:
        client = None if clients is None else clients[i]
        try:
            got[i] = await dispatch.poll(
                rt, ACTIVITY_TASKS, polls[i], timeout_seconds=0, client=client
            )
        except ClientGone as exc:
            got[i] = exc

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for i in range(len(polls)):
                nursery.start_soon(one, i)
    return got


async def test_polls_arriving_together_are_claimed_for_in_one_statement(rt: Runtime) -> None:
    await schedule(rt, "wf-four", ["greet"] * 4)
    got = await polls_together(rt, [params(f"w{i}") for i in range(4)])
    assert rt.claim_batches.statements == 1 and rt.claim_batches.claims == 4
    assert [t["lease_owner"] for t in got] == ["w0", "w1", "w2", "w3"]
    assert len({t["task_id"] for t in got}) == 4


async def test_twenty_polls_arriving_together_share_one_statement(rt: Runtime) -> None:
    """A poll that would join a batch does not park behind the four claims a queue
    otherwise runs at once (``claims_at_once``): twenty polls, one statement."""
    await schedule(rt, "wf-twenty", ["greet"] * 20)
    got = await polls_together(rt, [params(f"w{i}") for i in range(20)])
    assert len({t["task_id"] for t in got if t is not None}) == 20
    assert rt.claim_batches.statements == 1 and rt.claim_batches.claims == 20


async def test_a_type_filter_holds_in_a_batch(rt: Runtime) -> None:
    await schedule(rt, "wf-types", ["a", "b", "a", "b"])
    polls = [params("a1", ("a",)), params("b1", ("b",)), params("a2", ("a",)), params("b2", ("b",))]
    got = await polls_together(rt, polls)

    async def type_of(conn: Conn, task_id: str) -> str:
        kind: str = await conn.fetchval(
            "SELECT activity_type FROM workflow_tasks WHERE id = $1", task_id
        )
        return kind

    for poll, task in zip(polls, got, strict=True):
        assert task is not None
        assert await rt.store.read(type_of, task["task_id"]) == poll.activity_types[0]
    # One line per filter: two statements, each for its two polls.
    assert rt.claim_batches.statements == 2 and rt.claim_batches.claims == 4


async def test_a_task_claimed_for_a_poll_that_left_goes_back_to_the_queue(rt: Runtime) -> None:
    await schedule(rt, "wf-left", ["greet"] * 2)
    got = await polls_together(
        rt, [params("stays"), params("leaves")], [Client(), Client(gone=True)]
    )
    assert rt.claim_batches.statements == 1
    assert got[0]["lease_owner"] == "stays"
    assert isinstance(got[1], ClientGone)

    async def states(conn: Conn) -> list[tuple[str, str | None]]:
        rows = await conn.fetch(
            "SELECT t.state, a.status FROM workflow_tasks t"
            " LEFT JOIN activity_attempts a ON a.task_id = t.id"
            " WHERE t.task_queue = $1 ORDER BY t.state, a.status",
            Q,
        )
        return [(r["state"], r["status"]) for r in rows]

    # The departed poll's lease was released: its attempt expired, the task is ready.
    assert await rt.store.read(states) == [("leased", "running"), ("ready", "expired")]
    again = await dispatch.poll(rt, ACTIVITY_TASKS, params("later"), timeout_seconds=0)
    assert again is not None and again["lease_owner"] == "later"
    assert again["attempt_number"] == 2
