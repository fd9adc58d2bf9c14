"""The one-statement start and the transactional start write the same rows and history."""

from __future__ import annotations

from typing import Any

import trio

from dwtrio.engine.outcome import Verdict
from dwtrio.engine.workflows import StartCommand, start_fresh, start_workflow
from dwtrio.protocol.responses import render
from dwtrio.store.pool import Conn, Store, connect_once, open_store

#: Rounds of racing starts: the collision on the second unique key needs tight timing.
ROUNDS = 60
ID_KEYS = {"workflow_command_id", "workflow_instance_id", "workflow_run_id"}


def command(workflow_id: str) -> StartCommand:
    return StartCommand(
        namespace="default",
        workflow_id=workflow_id,
        workflow_type="greeter",
        task_queue="q1",
        input_blob="AAEC",
        business_key="order-7",
        memo={"m": 1},
        search_attributes={"Region": "eu"},
        duplicate_policy="fail",
        execution_timeout_seconds=3600,
        run_timeout_seconds=600,
    )


async def written(conn: Conn, workflow_id: str) -> dict[str, Any]:
    """Everything a start wrote, with ids and timestamps normalised away."""
    run = dict(
        await conn.fetchrow(
            "SELECT r.id, r.status, r.run_number, r.last_history_sequence, r.last_command_sequence,"
            " r.last_step_sequence, r.task_queue, r.arguments, r.memo, r.search_attributes,"
            " r.business_key, r.run_timeout_seconds, r.execution_deadline_at, r.run_deadline_at,"
            " i.current_run_id = r.id AS current, i.run_count, i.execution_timeout_seconds"
            " FROM workflow_runs r JOIN workflow_instances i USING (workflow_id)"
            " WHERE r.workflow_id = $1",
            workflow_id,
        )
    )
    run_id = run.pop("id")
    deadlines = (run.pop("execution_deadline_at"), run.pop("run_deadline_at"))
    events = []
    for e in await conn.fetch(
        "SELECT sequence, event_type, payload, workflow_command_id IS NOT NULL AS has_cmd"
        " FROM history_events WHERE run_id = $1 ORDER BY sequence",
        run_id,
    ):
        payload = {k: v for k, v in e["payload"].items() if k not in ID_KEYS}
        assert {k for k in e["payload"] if k in ID_KEYS} == ID_KEYS
        events.append((e["sequence"], e["event_type"], payload, e["has_cmd"]))
    started = events[1][2]
    # WorkflowStarted repeats the run's deadlines to the microsecond.
    assert [started.pop("execution_deadline_at"), started.pop("run_deadline_at")] == [
        d.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for d in deadlines
    ]
    commands = [
        dict(c)
        for c in await conn.fetch(
            "SELECT command_type, target_scope, context, status, outcome, workflow_type,"
            " payload_codec, payload, command_sequence, resolved_run_id = run_id AS resolved,"
            " accepted_at IS NOT NULL AS accepted, applied_at IS NOT NULL AS applied"
            " FROM workflow_commands WHERE run_id = $1",
            run_id,
        )
    ]
    tasks = [
        dict(t)
        for t in await conn.fetch(
            "SELECT kind, state, task_queue, workflow_type, namespace, attempt"
            " FROM workflow_tasks WHERE run_id = $1",
            run_id,
        )
    ]
    return {"run": run, "events": events, "commands": commands, "tasks": tasks}


async def test_both_start_paths_write_the_same_thing(aio_loop: None, db_dsn: str) -> None:
    async def both(conn: Conn) -> tuple[dict[str, Any], dict[str, Any]]:
        fresh = await start_fresh(conn, command("wf-fresh"))
        assert fresh is not None and fresh.verdict is Verdict.CREATED
        async with conn.transaction():  # type: ignore[attr-defined]
            classic = await start_workflow(conn, command("wf-classic"))
        assert classic.verdict is Verdict.CREATED
        assert {
            k: v for k, v in render(fresh.body).items() if k not in ("workflow_id", "run_id")
        } == {k: v for k, v in render(classic.body).items() if k not in ("workflow_id", "run_id")}
        assert fresh.wakes == classic.wakes == {("default", "q1", "workflow")}
        return await written(conn, "wf-fresh"), await written(conn, "wf-classic")

    fresh, classic = await connect_once(db_dsn, both)
    assert fresh == classic
    assert [e[1] for e in fresh["events"]] == ["StartAccepted", "WorkflowStarted"]


async def test_a_taken_id_is_left_to_the_transactional_start(aio_loop: None, db_dsn: str) -> None:
    async def twice(conn: Conn) -> tuple[Any, int]:
        assert await start_fresh(conn, command("wf-dup")) is not None
        again = await start_fresh(conn, command("wf-dup"))
        count = await conn.fetchval(
            "SELECT count(*) FROM workflow_runs WHERE workflow_id = 'wf-dup'"
        )
        return again, count

    assert await connect_once(db_dsn, twice) == (None, 1)


async def test_racing_starts_of_one_id_leave_it_to_the_transactional_start(
    aio_loop: None, db_dsn: str
) -> None:
    """Concurrent one-statement starts of one id: one creates it, the others get None
    (and answer through the transactional start), never a unique violation. The
    instance has two unique keys, and a racing insert may hit either one first."""
    outcomes: dict[str, list[Any]] = {}

    async def one(store: Store, workflow_id: str) -> None:
        outcome = await store.autocommit(start_fresh, command(workflow_id))
        outcomes.setdefault(workflow_id, []).append(outcome)

    async with open_store(db_dsn, min_size=8, max_size=8) as store:
        for round_ in range(ROUNDS):
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(one, store, f"wf-race-{round_}")
    for got in outcomes.values():
        assert len(got) == 8
        assert sum(o is not None for o in got) == 1, got
