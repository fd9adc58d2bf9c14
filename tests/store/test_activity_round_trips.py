"""An activity's poll and completion, statement by statement (issue 19).

The completion is one statement (fence, ActivityCompleted, wake) instead of five
round trips, and a poll's first claim looks for the lease to replay inside the
claim statement. These tests count the statements each sends and check the
one-statement completion writes what the transactional one writes, refuses what
its fence refuses, and wakes the run from the state after any lock it waited for.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import attrs
import pytest
import trio

from dwtrio.engine import activity_tasks
from dwtrio.engine.activity_tasks import ClaimParams, complete, complete_at_once
from dwtrio.engine.workflows import StartCommand, start_fresh
from dwtrio.errors import LeaseOwnerMismatchError, StaleAttemptError, TaskNotFoundError
from dwtrio.protocol.admission import BLOCKED
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.worker import CompleteActivityTask
from dwtrio.store import activities, runs
from dwtrio.store.pool import Conn, connect_once, open_store

RESULT = "hello"  # plain JSON, encoded by the server


def sent(conn: Any) -> int:
    """Statements this (raw asyncpg) connection has sent so far."""
    return int(conn._protocol.queries_count)


def params(worker_id: str = "w1", poll_request_id: str | None = None) -> ClaimParams:
    return ClaimParams(
        namespace="default",
        task_queue="acts",
        worker_id=worker_id,
        poll_request_id=poll_request_id,
        activity_types=(),
        default_lease_s=60,
    )


async def new_run(conn: Conn, workflow_id: str, steps: int = 1, parallel: bool = False) -> str:
    """A run with ``steps`` scheduled activities on queue ``acts`` and no open workflow
    task (its first one completed); parallel: the steps form one parallel group."""
    cmd = StartCommand(
        namespace="default",
        workflow_id=workflow_id,
        workflow_type="wf",
        task_queue="wfq",
        input_blob="AAEC",
    )
    assert await start_fresh(conn, cmd) is not None
    run_id: str = await conn.fetchval(
        "SELECT id FROM workflow_runs WHERE workflow_id = $1", workflow_id
    )
    await conn.execute(
        "UPDATE workflow_tasks SET state = 'completed', completed_at = now() WHERE run_id = $1",
        run_id,
    )
    run = await runs.lock_run(conn, run_id)
    assert run is not None
    for seq in range(1, steps + 1):
        group = (
            {"parallel_group_base_sequence": 1, "parallel_group_size": steps} if parallel else None
        )
        await activities.schedule_activity(
            conn,
            execution_id=new_id(),
            task_id=new_id(),
            run=run,
            sequence=seq,
            activity_type="greet",
            task_queue="acts",
            arguments="AAEC",
            retry_policy=None,
            options={},
            parallel=group,
            schedule_to_start_s=None,
            schedule_to_close_s=None,
        )
    return run_id


def completion(task: dict[str, Any], lease_owner: str | None = None) -> CompleteActivityTask:
    return CompleteActivityTask(
        activity_attempt_id=task["activity_attempt_id"],
        lease_owner=lease_owner or task["lease_owner"],
        result=RESULT,
    )


async def history(conn: Conn, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await conn.fetch(
        "SELECT event_type, payload FROM history_events WHERE run_id = $1 ORDER BY sequence",
        run_id,
    )
    return [(r["event_type"], dict(r["payload"])) for r in rows]


async def written(conn: Conn, run_id: str) -> dict[str, Any]:
    """What a completion leaves, ids normalised away."""
    ids = {"activity_execution_id", "activity_attempt_id"}
    events = [
        (kind, {k: v for k, v in payload.items() if k not in ids})
        for kind, payload in await history(conn, run_id)
        if kind.startswith("Activity")
    ]
    rows = await conn.fetch(
        "SELECT e.status AS execution, e.result, a.status AS attempt, t.state AS task,"
        " t.lease_expires_at IS NULL AS lease_cleared"
        " FROM activity_executions e JOIN activity_attempts a ON a.activity_execution_id = e.id"
        " JOIN workflow_tasks t ON t.activity_execution_id = e.id WHERE e.run_id = $1",
        run_id,
    )
    wf_tasks = await conn.fetch(
        "SELECT state FROM workflow_tasks WHERE run_id = $1 AND kind = 'workflow'"
        " ORDER BY created_at",
        run_id,
    )
    return {
        "events": events,
        "rows": [dict(r) for r in rows],
        "workflow_tasks": [r["state"] for r in wf_tasks],
    }


async def test_a_completion_is_one_statement_and_writes_what_the_transaction_writes(
    aio_loop: None, db_dsn: str
) -> None:
    async def scenario(conn: Conn) -> tuple[int, Any, Any, Any]:
        fast_run = await new_run(conn, "fast")
        slow_run = await new_run(conn, "slow")
        fast = await activity_tasks.claim(conn, params(), replay_poll=False)
        slow = await activity_tasks.claim(conn, params(), replay_poll=False)
        assert isinstance(fast, dict) and isinstance(slow, dict)
        if fast["run_id"] != fast_run:
            fast, slow = slow, fast
        before = sent(conn)
        outcome = await complete_at_once(conn, "default", fast["task_id"], completion(fast))
        statements = sent(conn) - before
        assert outcome is not None
        async with conn.transaction():  # type: ignore[attr-defined]
            classic = await complete(conn, "default", slow["task_id"], completion(slow))
        assert outcome.wakes == classic.wakes == {("default", "wfq", "workflow")}
        fast_body, slow_body = attrs.asdict(outcome.body), attrs.asdict(classic.body)
        assert fast_body["next_task_id"] and slow_body["next_task_id"]
        assert {k: v for k, v in fast_body.items() if k not in ("task_id", "next_task_id")} | {
            "activity_attempt_id": None
        } == {k: v for k, v in slow_body.items() if k not in ("task_id", "next_task_id")} | {
            "activity_attempt_id": None
        }
        return statements, await written(conn, fast_run), await written(conn, slow_run), fast

    statements, fast, slow, _ = await connect_once(db_dsn, scenario)
    assert statements == 1  # was five: BEGIN, fence, completion, wake, COMMIT
    assert fast == slow
    assert fast["rows"][0]["result"]
    assert [e[0] for e in fast["events"]] == ["ActivityStarted", "ActivityCompleted"]
    assert fast["rows"] == [
        {
            "execution": "completed",
            "result": fast["rows"][0]["result"],
            "attempt": "completed",
            "task": "completed",
            "lease_cleared": True,
        }
    ]
    assert fast["workflow_tasks"] == ["completed", "ready"]  # the wake created the task


async def test_the_one_statement_fence_refuses_and_writes_nothing(
    aio_loop: None, db_dsn: str
) -> None:
    async def scenario(conn: Conn) -> dict[str, Any]:
        run_id = await new_run(conn, "fenced")
        task = await activity_tasks.claim(conn, params(), replay_poll=False)
        assert isinstance(task, dict)
        with pytest.raises(LeaseOwnerMismatchError):
            await complete_at_once(conn, "default", task["task_id"], completion(task, "intruder"))
        with pytest.raises(TaskNotFoundError):
            await complete_at_once(conn, "default", "no-such-task", completion(task))
        with pytest.raises(TaskNotFoundError):
            await complete_at_once(conn, "other-namespace", task["task_id"], completion(task))
        untouched = await written(conn, run_id)
        assert await complete_at_once(conn, "default", task["task_id"], completion(task))
        with pytest.raises(StaleAttemptError):
            await complete_at_once(conn, "default", task["task_id"], completion(task))
        return {"untouched": untouched, "after": await written(conn, run_id)}

    seen = await connect_once(db_dsn, scenario)
    assert [e[0] for e in seen["untouched"]["events"]] == ["ActivityStarted"]
    assert seen["untouched"]["rows"][0]["attempt"] == "running"
    assert seen["untouched"]["workflow_tasks"] == ["completed"]
    assert [e[0] for e in seen["after"]["events"]] == ["ActivityStarted", "ActivityCompleted"]
    assert seen["after"]["workflow_tasks"] == ["completed", "ready"]


async def test_a_step_of_a_parallel_group_is_left_to_the_transaction(
    aio_loop: None, db_dsn: str
) -> None:
    """Its wake waits for the group: the statement writes nothing and says so; the
    transactional completion then wakes the run only with the group's last step."""

    async def scenario(conn: Conn) -> list[Any]:
        run_id = await new_run(conn, "grouped", steps=2, parallel=True)
        seen = []
        for _ in range(2):
            task = await activity_tasks.claim(conn, params(), replay_poll=False)
            assert isinstance(task, dict)
            assert (
                await complete_at_once(conn, "default", task["task_id"], completion(task)) is None
            )
            assert (await written(conn, run_id))["events"][-1][0] == "ActivityStarted"
            async with conn.transaction():  # type: ignore[attr-defined]
                await complete(conn, "default", task["task_id"], completion(task))
            seen.append((await written(conn, run_id))["workflow_tasks"])
        return seen

    assert await connect_once(db_dsn, scenario) == [["completed"], ["completed", "ready"]]


async def test_the_wake_reads_the_run_as_it_is_after_the_lock(aio_loop: None, db_dsn: str) -> None:
    """The completion waits for the run's lock while a workflow task completion holds it;
    that task was leased when the completion's statement began and is completed when the
    lock comes. The wake must see it completed and create the next workflow task (a wake
    decided from the statement's first snapshot would set wake_pending on a run without
    a leased task, and the run would wait forever)."""

    async def prepare(conn: Conn) -> tuple[str, dict[str, Any], str]:
        run_id = await new_run(conn, "racing")
        task = await activity_tasks.claim(conn, params(), replay_poll=False)
        assert isinstance(task, dict)
        wf_task = new_id()
        await conn.execute(
            "INSERT INTO workflow_tasks (id, namespace, task_queue, kind, run_id, workflow_id,"
            " workflow_type, state, lease_owner, leased_at, lease_expires_at)"
            " VALUES ($1, 'default', 'wfq', 'workflow', $2, 'racing', 'wf', 'leased', 'w9',"
            " now(), now() + interval '1 minute')",
            wf_task,
            run_id,
        )
        return run_id, task, wf_task

    run_id, task, wf_task = await connect_once(db_dsn, prepare)
    holding = threading.Event()  # the store's operations run on a loop of their own

    async def workflow_task_completion(conn: Conn) -> None:
        async with conn.transaction():  # type: ignore[attr-defined]
            await conn.execute("SELECT 1 FROM workflow_runs WHERE id = $1 FOR UPDATE", run_id)
            await conn.execute(
                "UPDATE workflow_tasks SET state = 'completed', completed_at = now(),"
                " lease_expires_at = NULL WHERE id = $1",
                wf_task,
            )
            holding.set()
            await asyncio.sleep(1.0)  # the completion's statement waits for the run meanwhile

    outcome: Any = None
    async with (
        open_store(db_dsn, min_size=2, max_size=2) as store,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(connect_once, db_dsn, workflow_task_completion)
        await trio.to_thread.run_sync(holding.wait)

        async def completing() -> None:
            nonlocal outcome
            outcome = await store.autocommit(
                complete_at_once, "default", task["task_id"], completion(task)
            )

        nursery.start_soon(completing)
        await trio.sleep(0.3)
        assert outcome is None  # waiting for the run's lock

    async def after(conn: Conn) -> tuple[bool, list[str]]:
        pending = await conn.fetchval(
            "SELECT wake_pending FROM workflow_runs WHERE id = $1", run_id
        )
        states = await conn.fetch(
            "SELECT state FROM workflow_tasks WHERE run_id = $1 AND kind = 'workflow'"
            " AND state IN ('ready', 'leased')",
            run_id,
        )
        return pending, [r["state"] for r in states]

    assert outcome is not None and outcome.body.next_task_id is not None
    assert await connect_once(db_dsn, after) == (False, ["ready"])


async def test_a_first_claim_replays_a_held_lease_in_the_claim_statement(
    aio_loop: None, db_dsn: str
) -> None:
    async def scenario(conn: Conn) -> tuple[list[int], list[Any], int]:
        await new_run(conn, "replayed", steps=2)
        counts, got = [], []
        for replay in (True, True, False):
            before = sent(conn)
            got.append(
                await activity_tasks.claim(conn, params(poll_request_id="p-1"), replay_poll=replay)
            )
            counts.append(sent(conn) - before)
        attempts = await conn.fetchval("SELECT count(*) FROM activity_attempts")
        return counts, got, attempts

    counts, got, attempts = await connect_once(db_dsn, scenario)
    assert counts == [1, 1, 1]  # the replay lookup was a statement of its own
    first, again, other = got
    assert again == first  # the lease the lost answer carried, nothing new
    assert other is not None and other["task_id"] != first["task_id"]
    assert attempts == 2


async def test_a_batch_claim_leases_one_task_per_poll_in_one_statement(
    aio_loop: None, db_dsn: str
) -> None:
    """Four polls, one of a draining cohort, and three ready tasks of one run: one
    statement leases a task to each of the other three, oldest first, with consecutive
    ActivityStarted sequences on the run; the draining worker's poll is BLOCKED."""

    async def scenario(conn: Conn) -> tuple[int, list[Any], list[Any], list[Any]]:
        run_id = await new_run(conn, "batched", steps=3)
        await conn.execute(
            "INSERT INTO worker_registrations (namespace, worker_id, task_queue, build_id)"
            " VALUES ('default', 'w-old', 'acts', 'b0')"
        )
        await conn.execute(
            "INSERT INTO build_id_rollouts (namespace, task_queue, build_id, drain_intent)"
            " VALUES ('default', 'acts', 'b0', 'draining')"
        )
        polls = [params("w1"), params("w-old"), params("w2", "p-2"), params("w3")]
        before = sent(conn)
        got = await activity_tasks.claim_batch(conn, polls)
        statements = sent(conn) - before
        events = await conn.fetch(
            "SELECT sequence, event_type, payload->>'sequence' AS step FROM history_events"
            " WHERE run_id = $1 ORDER BY sequence",
            run_id,
        )
        leases = await conn.fetch(
            "SELECT t.lease_owner, t.poll_request_id, a.lease_owner AS attempt_owner"
            " FROM workflow_tasks t JOIN activity_attempts a ON a.id = t.activity_attempt_id"
            " WHERE t.run_id = $1 ORDER BY t.lease_owner",
            run_id,
        )
        return statements, got, [tuple(e) for e in events], [tuple(r) for r in leases]

    statements, got, events, leases = await connect_once(db_dsn, scenario)
    assert statements == 1
    w1, old, w2, w3 = got
    assert old is BLOCKED
    assert [t["lease_owner"] for t in (w1, w2, w3)] == ["w1", "w2", "w3"]
    assert len({t["task_id"] for t in (w1, w2, w3)} | {None}) == 4
    # Oldest task first: steps 1, 2, 3 went to the polls in order.
    step_of = {e[2]: e for e in events if e[1] == "ActivityStarted"}
    assert len(step_of) == 3
    assert [e[0] for e in events] == list(range(1, len(events) + 1))  # gap-free, unique
    assert leases == [("w1", None, "w1"), ("w2", "p-2", "w2"), ("w3", None, "w3")]


async def test_a_batch_claim_with_fewer_tasks_than_polls_leaves_the_rest_empty(
    aio_loop: None, db_dsn: str
) -> None:
    async def scenario(conn: Conn) -> list[Any]:
        await new_run(conn, "short", steps=1)
        return await activity_tasks.claim_batch(conn, [params("w1"), params("w2")])

    first, second = await connect_once(db_dsn, scenario)
    assert first is not None and first["lease_owner"] == "w1"
    assert second is None
