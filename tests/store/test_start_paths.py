"""The one-statement start and the transactional start write the same rows and history."""

from __future__ import annotations

from typing import Any

import trio

from dwtrio.engine.outcome import Verdict
from dwtrio.engine.workflow_tasks import ClaimParams
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


async def _promote(conn: Conn, build_id: str) -> None:
    await conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO build_id_rollouts (namespace, task_queue, build_id, promoted_at)"
        " VALUES ('default', 'q1', $1, clock_timestamp())"
        " ON CONFLICT (namespace, task_queue, build_id)"
        " DO UPDATE SET promoted_at = clock_timestamp()",
        build_id,
    )


async def _pins(conn: Conn, workflow_id: str) -> list[Any]:
    """The run's compatibility and its workflow task's."""
    row = await conn.fetchrow(
        "SELECT r.compatibility, t.compatibility AS task_compatibility"
        " FROM workflow_runs r JOIN workflow_tasks t ON t.run_id = r.id"
        " WHERE r.workflow_id = $1",
        workflow_id,
    )
    return [row["compatibility"], row["task_compatibility"]]


async def test_both_start_paths_pin_to_the_promoted_build(aio_loop: None, db_dsn: str) -> None:
    """The run and its first task get the build promoted last on the queue; the
    unversioned cohort ('') promoted last pins nothing."""

    async def starts(conn: Conn) -> dict[str, list[Any]]:
        async def both(suffix: str) -> None:
            assert await start_fresh(conn, command(f"fresh-{suffix}")) is not None
            async with conn.transaction():  # type: ignore[attr-defined]
                await start_workflow(conn, command(f"classic-{suffix}"))

        await both("none")
        await _promote(conn, "b1")
        await _promote(conn, "b2")
        await both("b2")
        await _promote(conn, "")
        await both("unversioned")
        await _promote(conn, "b1")
        await both("b1")
        return {
            f"{path}-{suffix}": await _pins(conn, f"{path}-{suffix}")
            for path in ("fresh", "classic")
            for suffix in ("none", "b2", "unversioned", "b1")
        }

    pins = await connect_once(db_dsn, starts)
    for path in ("fresh", "classic"):
        assert pins[f"{path}-none"] == [None, None]
        assert pins[f"{path}-b2"] == ["b2", "b2"]
        assert pins[f"{path}-unversioned"] == [None, None]
        assert pins[f"{path}-b1"] == ["b1", "b1"]


async def test_a_sync_match_goes_only_to_a_worker_that_could_claim_the_task(
    aio_loop: None, db_dsn: str
) -> None:
    """The one-statement start hands its first task to the reserved poll only when that
    worker's claim could take it: the run is unpinned or pinned to the worker's build, and
    the worker's cohort is not draining. Otherwise the task is written ready and the queue
    woken, as without a reserved poll."""

    def lease(worker_id: str) -> ClaimParams:
        return ClaimParams(
            namespace="default",
            task_queue="q1",
            worker_id=worker_id,
            poll_request_id=f"poll-{worker_id}",
            workflow_types=(),
            lease_s=60,
            page_size=100,
        )

    async def scenario(conn: Conn) -> dict[str, Any]:
        for worker_id, build_id in (("w-b1", "b1"), ("w-b2", "b2"), ("w-b3", "b3")):
            await conn.execute(  # type: ignore[attr-defined]
                "INSERT INTO worker_registrations (namespace, worker_id, task_queue, build_id)"
                " VALUES ('default', $1, 'q1', $2)",
                worker_id,
                build_id,
            )
        seen: dict[str, Any] = {}
        unpinned = await start_fresh(conn, command("unpinned"), lease("w-b1"))
        seen["unpinned"] = unpinned
        await _promote(conn, "b2")
        seen["other-build"] = await start_fresh(conn, command("other-build"), lease("w-b1"))
        seen["its-build"] = await start_fresh(conn, command("its-build"), lease("w-b2"))
        await _promote(conn, "")
        await conn.execute(  # type: ignore[attr-defined]
            "INSERT INTO build_id_rollouts (namespace, task_queue, build_id, drain_intent)"
            " VALUES ('default', 'q1', 'b3', 'draining')"
        )
        seen["draining"] = await start_fresh(conn, command("draining"), lease("w-b3"))
        for workflow_id in seen:
            seen[workflow_id] = (
                seen[workflow_id],
                await conn.fetchrow(
                    "SELECT t.state, t.lease_owner, r.status FROM workflow_tasks t"
                    " JOIN workflow_runs r ON r.id = t.run_id WHERE r.workflow_id = $1",
                    workflow_id,
                ),
            )
        return seen

    seen = await connect_once(db_dsn, scenario)
    for workflow_id, owner in (("unpinned", "w-b1"), ("its-build", "w-b2")):
        outcome, row = seen[workflow_id]
        assert outcome.handoff is not None and outcome.handoff["workflow_id"] == workflow_id
        assert outcome.wakes == set()
        assert render(outcome.body)["status"] == "running"
        assert (row["state"], row["lease_owner"], row["status"]) == ("leased", owner, "running")
    for workflow_id in ("other-build", "draining"):
        outcome, row = seen[workflow_id]
        assert outcome.handoff is None, workflow_id
        assert outcome.wakes == {("default", "q1", "workflow")}
        assert render(outcome.body)["status"] == "pending"
        assert (row["state"], row["lease_owner"], row["status"]) == ("ready", None, "pending")
