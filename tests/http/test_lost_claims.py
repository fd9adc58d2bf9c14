"""A claim that reached the database but whose answer was lost does not strand its task.

The workflow-task claim commits one statement and then reads history; when the
connection fails after the claim went out, the poll cannot know whether it
leased a task. ``dispatch.poll`` then puts back whatever that poll's
``poll_request_id`` holds before answering 503, so the task is claimable at
once instead of after its lease (a minute). The failure is injected after the
real claim, on a real store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import attrs
import pytest
import trio

from dwtrio.engine import activity_tasks, workflow_tasks
from dwtrio.engine.workflows import StartCommand, start_fresh
from dwtrio.errors import StoreUnavailableError
from dwtrio.http.workflow_tasks import WORKFLOW_TASKS
from dwtrio.matching import dispatch
from dwtrio.runtime import Runtime
from dwtrio.store.pool import Conn, open_store

from conftest import StartServer, make_settings
from http_clients import Clients

Q = "lost-claims"


@pytest.fixture
async def rt(aio_loop: None, db_dsn: str) -> AsyncIterator[Runtime]:
    async with open_store(db_dsn, min_size=1, max_size=4) as store:
        yield Runtime.build(make_settings(worker_poll_interval_ms=60_000), store)


def params(worker: str, poll_request_id: str | None) -> workflow_tasks.ClaimParams:
    return workflow_tasks.ClaimParams(
        namespace="default",
        task_queue=Q,
        worker_id=worker,
        poll_request_id=poll_request_id,
        workflow_types=(),
        lease_s=60,
        page_size=100,
    )


async def claim_then_lose_the_connection(
    conn: Conn, claim: workflow_tasks.ClaimParams, *, replay_poll: bool
) -> Any:
    """The real claim, then the connection dies while the answer is being built."""
    await workflow_tasks.claim(conn, claim, replay_poll=replay_poll)
    raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")


async def poll(
    rt: Runtime,
    claim: workflow_tasks.ClaimParams,
    claim_op: Any,
    *,
    release_polled_op: Any = None,
) -> Any:
    kind = attrs.evolve(
        WORKFLOW_TASKS, claim=claim_op, release_polled=release_polled_op, sync_match=False
    )
    with trio.fail_after(10):
        return await dispatch.poll(rt, kind, claim, timeout_seconds=1)


async def task_state(rt: Runtime, workflow_id: str) -> tuple[str, int]:
    async def read(conn: Conn) -> tuple[str, int]:
        row = await conn.fetchrow(
            "SELECT state, attempt FROM workflow_tasks WHERE workflow_id = $1", workflow_id
        )
        return row["state"], row["attempt"]

    return await rt.store.read(read)


async def start(rt: Runtime, workflow_id: str) -> None:
    command = StartCommand(
        namespace="default",
        workflow_id=workflow_id,
        workflow_type="greeter",
        task_queue=Q,
        input_blob="AAEC",
    )
    assert await rt.store.autocommit(start_fresh, command) is not None


async def test_a_claim_whose_answer_was_lost_puts_the_task_back_at_once(rt: Runtime) -> None:
    await start(rt, "wf-lost-answer")
    lost = params("w1", "poll-lost")
    with pytest.raises(StoreUnavailableError) as failed:
        await poll(
            rt,
            lost,
            claim_then_lose_the_connection,
            release_polled_op=workflow_tasks.release_polled,
        )
    assert failed.value.maybe_applied
    assert await task_state(rt, "wf-lost-answer") == ("ready", 0)
    # Another worker gets it now, not when the lost lease would have expired.
    task = await poll(rt, params("w2", "poll-next"), workflow_tasks.claim)
    assert task is not None and task["workflow_id"] == "wf-lost-answer"
    assert task["workflow_task_attempt"] == 1


async def test_a_retried_poll_gets_the_lease_that_could_not_be_put_back(rt: Runtime) -> None:
    """Should the release fail too, the worker's retry of the same poll_request_id
    (what the 503 asks for) is handed the task its lost answer held."""
    await start(rt, "wf-retried")
    lost = params("w1", "poll-retried")
    with pytest.raises(StoreUnavailableError):
        await poll(rt, lost, claim_then_lose_the_connection)  # nothing puts it back
    assert await task_state(rt, "wf-retried") == ("leased", 1)
    task = await poll(rt, lost, workflow_tasks.claim)
    assert task is not None and task["workflow_id"] == "wf-retried"
    assert task["lease_owner"] == "w1" and task["workflow_task_attempt"] == 1


async def test_release_polled_finds_only_that_polls_lease(rt: Runtime) -> None:
    await start(rt, "wf-mine")
    taken = await poll(rt, params("w1", "poll-mine"), workflow_tasks.claim)
    assert taken is not None
    assert await rt.store.transaction(workflow_tasks.release_polled, params("w1", "other")) is None
    assert (
        await rt.store.transaction(workflow_tasks.release_polled, params("w2", "poll-mine")) is None
    )
    assert await task_state(rt, "wf-mine") == ("leased", 1)
    queue = await rt.store.transaction(workflow_tasks.release_polled, params("w1", "poll-mine"))
    assert queue == ("default", Q, "workflow")
    assert await task_state(rt, "wf-mine") == ("ready", 0)
    # An activity poll's id names no workflow task.
    activity = activity_tasks.ClaimParams(
        namespace="default",
        task_queue=Q,
        worker_id="w1",
        poll_request_id="poll-mine",
        activity_types=(),
        default_lease_s=60,
    )
    assert await rt.store.transaction(activity_tasks.release_polled, activity) is None


async def test_release_polled_puts_back_an_activity_lease(
    rt: Runtime, start_server: StartServer
) -> None:
    async with Clients.open(start_server, "t", worker_poll_interval_ms=60_000) as c:
        await c.start_workflow("wf-act", "greeter", Q, ["world"])
        wp = {"worker_id": "w1", "task_queue": Q, "timeout_seconds": 5}
        r = await c.wc.post("/api/worker/workflow-tasks/poll", json=wp)
        task = r.json()["task"]
        await c.complete(
            task,
            [
                {
                    "type": "schedule_activity",
                    "activity_type": "greet",
                    "queue": Q,
                    "arguments": None,
                }
            ],
        )
        r = await c.wc.post(
            "/api/worker/activity-tasks/poll", json={**wp, "poll_request_id": "act-poll"}
        )
        first = r.json()["task"]
        assert first["attempt_number"] == 1
        claim = activity_tasks.ClaimParams(
            namespace="default",
            task_queue=Q,
            worker_id="w1",
            poll_request_id="act-poll",
            activity_types=(),
            default_lease_s=60,
        )
        queue = await rt.store.transaction(activity_tasks.release_polled, claim)
        assert queue == ("default", Q, "activity")
        # The lost attempt is over: its late completion is refused, the task runs again.
        r = await c.wc.post(
            f"/api/worker/activity-tasks/{first['task_id']}/complete",
            json={
                "activity_attempt_id": first["activity_attempt_id"],
                "lease_owner": "w1",
                "result": "late",
            },
        )
        assert r.status_code == 409, r.text
        r = await c.wc.post("/api/worker/activity-tasks/poll", json={**wp, "worker_id": "w2"})
        again = r.json()["task"]
        assert again["task_id"] == first["task_id"]
        assert again["activity_attempt_id"] != first["activity_attempt_id"]
