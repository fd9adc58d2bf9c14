"""Durable timers and condition waits over real HTTP, plus the timer loop's claim rules.

Contract: commands.md §3 step 3, §5.2, §5.8; history-events.md §4.3, §4.6.
Real time: delays are 1 s, waits are bounded with ``trio.fail_after``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson
import trio
from test_worker_plane import ARGS, TOKEN, Harness, Q

from dwtrio.engine import timers
from dwtrio.engine.outcome import Outcome
from dwtrio.engine.wakes import request_wake
from dwtrio.engine.workflows import StartCommand, start_workflow
from dwtrio.protocol.responses import render
from dwtrio.store import bridge
from dwtrio.store.pool import Conn, connect_once
from dwtrio.store.runs import lock_run

from conftest import StartServer


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def by_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == event_type]


async def timer_states(dsn: str, run_id: str) -> list[str]:
    async def op(conn: Conn) -> list[str]:
        rows = await conn.fetch(
            "SELECT state FROM timers WHERE run_id = $1 ORDER BY sequence", run_id
        )
        return [r["state"] for r in rows]

    return await connect_once(dsn, op)


async def next_task_after(h: Harness, seconds: float) -> tuple[dict[str, Any], float]:
    """Long-poll for the next workflow task; returns it with the seconds it took."""
    started = trio.current_time()
    with trio.fail_after(seconds):
        task = await h.poll_wf(timeout=int(seconds))
    assert task is not None
    return task, trio.current_time() - started


async def test_timer_fires_after_its_delay_and_wakes_the_run(start_server: StartServer) -> None:
    async with Harness.open(start_server, TOKEN) as h:
        task = await h.begin("wf-sleep")
        body = await h.complete_wf(task, [{"type": "start_timer", "delay_seconds": 1}])
        assert body["run_status"] == "waiting"
        woken, waited = await next_task_after(h, 5)
        assert woken["run_id"] == task["run_id"]
        assert 0.5 < waited < 2.5
        types = [e["event_type"] for e in woken["history_events"]]
        assert types == ["StartAccepted", "WorkflowStarted", "TimerScheduled", "TimerFired"]
        scheduled, fired = woken["history_events"][2:]
        assert scheduled["payload"]["sequence"] == fired["payload"]["sequence"] == 1
        assert scheduled["payload"]["delay_seconds"] == fired["payload"]["delay_seconds"] == 1
        assert scheduled["payload"]["timer_id"] == fired["payload"]["timer_id"]
        assert "timer_kind" not in fired["payload"]  # an ordinary timer is a workflow step
        fire_at = _ts(scheduled["payload"]["fire_at"])
        assert fire_at == _ts(fired["payload"]["fire_at"])
        assert _ts(fired["payload"]["fired_at"]) >= fire_at  # never early
        elapsed = _ts(fired["recorded_at"]) - _ts(scheduled["recorded_at"])
        assert elapsed.total_seconds() >= 1.0
        await h.complete_wf(woken, [{"type": "complete_workflow", "result": ARGS}])
        assert (await h.describe("wf-sleep"))["status"] == "completed"


async def test_the_loop_sleeps_only_until_the_next_due_timer(start_server: StartServer) -> None:
    """A long poll interval does not delay a timer: arming it nudges the loop, which
    then sleeps until exactly that timer is due."""
    async with Harness.open(start_server, TOKEN, timer_poll_interval_ms=10_000) as h:
        task = await h.begin("wf-precise")
        await h.complete_wf(task, [{"type": "start_timer", "delay_seconds": 1}])
        woken, waited = await next_task_after(h, 8)
        assert 0.5 < waited < 2.5
        assert woken["history_events"][-1]["event_type"] == "TimerFired"


async def test_zero_delay_timer_fires_through_a_new_task(start_server: StartServer) -> None:
    async with Harness.open(start_server, TOKEN) as h:
        task = await h.begin("wf-zero")
        await h.complete_wf(task, [{"type": "start_timer", "delay_seconds": 0}])
        woken, waited = await next_task_after(h, 3)
        assert waited < 1.0  # the in-process nudge, not the poll interval
        assert woken["task_id"] != task["task_id"]
        assert [e["event_type"] for e in woken["history_events"]][-1] == "TimerFired"


async def test_timers_in_a_parallel_group_wake_once_all_fired(start_server: StartServer) -> None:
    def member(index: int, delay: int) -> dict[str, Any]:
        entry = {
            "parallel_group_id": "parallel-timers:1:2",
            "parallel_group_kind": "timer",
            "parallel_group_base_sequence": 1,
            "parallel_group_size": 2,
            "parallel_group_index": index,
        }
        return {
            "type": "start_timer",
            "delay_seconds": delay,
            **entry,
            "parallel_group_path": [entry],
        }

    async with Harness.open(start_server, TOKEN) as h:
        task = await h.begin("wf-group")
        await h.complete_wf(task, [member(0, 0), member(1, 1)])
        woken, waited = await next_task_after(h, 5)
        assert waited > 0.5  # the 0 s member alone did not wake the run
        fired = by_type(woken["history_events"], "TimerFired")
        assert [e["payload"]["sequence"] for e in fired] == [1, 2]
        assert all(e["payload"]["parallel_group_id"] == "parallel-timers:1:2" for e in fired)


async def test_bad_timer_commands_are_rejected(start_server: StartServer) -> None:
    async with Harness.open(start_server, TOKEN) as h:
        task = await h.begin("wf-bad")
        for bad in ({}, {"delay_seconds": -1}, {"delay_seconds": "5"}, {"delay_seconds": 1.5}):
            body = await h.complete_wf(
                task, [{"type": "start_timer", **bad}], 422, "validation_failed"
            )
            assert "commands.0.delay_seconds" in body["errors"]
        await h.complete_wf(
            task,
            [{"type": "open_condition_wait", "timeout_seconds": -1}],
            422,
            "validation_failed",
        )
        await h.complete_wf(
            task,
            [
                {"type": "open_condition_wait", "condition_definition_fingerprint": "a"},
                {"type": "open_condition_wait", "condition_definition_fingerprint": "b"},
            ],
            409,
            "invalid_commands",
        )
        assert await h.event_types("wf-bad", task["run_id"]) == ["StartAccepted", "WorkflowStarted"]


async def test_closed_runs_timers_never_fire(start_server: StartServer, db_dsn: str) -> None:
    async with Harness.open(start_server, TOKEN) as h:
        task = await h.begin("wf-closing")
        await h.complete_wf(
            task,
            [
                {"type": "start_timer", "delay_seconds": 1},
                {"type": "complete_workflow", "result": ARGS},
            ],
        )
        assert await timer_states(db_dsn, task["run_id"]) == ["cancelled"]
        await trio.sleep(1.5)
        types = await h.event_types("wf-closing", task["run_id"])
        assert types[-2:] == ["TimerScheduled", "WorkflowCompleted"]
        assert await h.poll_wf() is None


async def test_condition_wait_times_out(start_server: StartServer, db_dsn: str) -> None:
    async with Harness.open(start_server, TOKEN) as h:
        task = await h.begin("wf-cond-timeout")
        wait = {
            "type": "open_condition_wait",
            "condition_key": "never",
            "condition_definition_fingerprint": "sha256:abc",
            "timeout_seconds": 1,
        }
        await h.complete_wf(task, [wait])
        assert (await h.describe("wf-cond-timeout"))["wait_kind"] == "condition"
        woken, waited = await next_task_after(h, 5)
        assert 0.5 < waited < 2.5
        opened, scheduled, fired = woken["history_events"][2:]
        assert opened["event_type"] == "ConditionWaitOpened"
        wait_id = opened["payload"]["condition_wait_id"]
        assert opened["payload"] == {
            "condition_wait_id": wait_id,
            "sequence": 1,
            "condition_key": "never",
            "condition_definition_fingerprint": "sha256:abc",
            "timeout_seconds": 1,
        }
        assert scheduled["event_type"] == "TimerScheduled"
        assert scheduled["payload"]["timer_kind"] == "condition_timeout"
        assert scheduled["payload"]["condition_wait_id"] == wait_id
        assert scheduled["payload"]["sequence"] == 1
        assert scheduled["payload"]["condition_key"] == "never"
        assert fired["event_type"] == "TimerFired"
        assert fired["payload"]["timer_kind"] == "condition_timeout"
        assert fired["payload"]["condition_wait_id"] == wait_id
        # The wait ended by timing out: the next completion does not also satisfy it.
        await h.complete_wf(woken, [{"type": "complete_workflow", "result": ARGS}])
        types = await h.event_types("wf-cond-timeout", task["run_id"])
        assert "ConditionWaitSatisfied" not in types and types[-1] == "WorkflowCompleted"
        assert await timer_states(db_dsn, task["run_id"]) == ["fired"]


async def test_next_completion_satisfies_the_open_wait(
    start_server: StartServer, db_dsn: str
) -> None:
    """A wait closes as satisfied when the next ordinary completion arrives (here, a
    timer's wake stands in for the signal or update that normally wakes the run)."""
    async with Harness.open(start_server, TOKEN) as h:
        task = await h.begin("wf-cond-satisfied")
        await h.complete_wf(task, [{"type": "start_timer", "delay_seconds": 0}])
        woken, _ = await next_task_after(h, 3)
        wait = {"type": "open_condition_wait", "condition_definition_fingerprint": "fp"}
        await h.complete_wf(woken, [wait, {"type": "start_timer", "delay_seconds": 0}])
        # A wait without timeout arms no timer; the 0 s timer wakes the run.
        again, _ = await next_task_after(h, 3)
        await h.complete_wf(again, [{**wait, "timeout_seconds": 30}])
        assert (await h.describe("wf-cond-satisfied"))["wait_kind"] == "condition"

        # Nothing wakes the run now: wake it directly, as an arriving signal would.
        async def wake(conn: Conn) -> None:
            run = await lock_run(conn, task["run_id"])
            assert run is not None
            await request_wake(conn, run, Outcome())

        await connect_once(db_dsn, wake)
        last, _ = await next_task_after(h, 3)
        await h.complete_wf(last, [{"type": "complete_workflow", "result": ARGS}])
        events = await h.history("wf-cond-satisfied", task["run_id"])
        types = [e["event_type"] for e in events]
        assert types[2:] == [
            "TimerScheduled",
            "TimerFired",
            "ConditionWaitOpened",
            "TimerScheduled",
            "TimerFired",
            "ConditionWaitSatisfied",  # the timer's wake completed: the first wait closes
            "ConditionWaitOpened",
            "TimerScheduled",
            "ConditionWaitSatisfied",
            "TimerCancelled",
            "WorkflowCompleted",
        ]
        first, second = by_type(events, "ConditionWaitOpened")
        sat1, sat2 = by_type(events, "ConditionWaitSatisfied")
        assert sat1["payload"]["condition_wait_id"] == first["payload"]["condition_wait_id"]
        assert sat1["payload"]["sequence"] == first["payload"]["sequence"] == 2
        assert "timer_id" not in sat1["payload"]
        assert sat2["payload"]["condition_wait_id"] == second["payload"]["condition_wait_id"]
        assert sat2["payload"]["sequence"] == second["payload"]["sequence"] == 4
        cancelled = by_type(events, "TimerCancelled")[0]["payload"]
        assert cancelled["timer_kind"] == "condition_timeout"
        assert cancelled["sequence"] == 4
        assert cancelled["timer_id"] == sat2["payload"]["timer_id"]
        assert await timer_states(db_dsn, task["run_id"]) == ["fired", "fired", "cancelled"]
        assert (await h.describe("wf-cond-satisfied"))["wait_kind"] is None


# --- the claim: several loops, one firing ------------------------------------------
async def _due_timer(dsn: str, workflow_id: str) -> str:
    command = StartCommand(
        namespace="default",
        workflow_id=workflow_id,
        workflow_type="greeter",
        task_queue=Q,
        input_blob=ARGS["blob"],
    )
    outcome = await connect_once(dsn, start_workflow, command)
    run_id: str = render(outcome.body)["run_id"]

    async def arm(conn: Conn) -> None:
        await timers.arm(conn, run_id, 1, 0)

    await connect_once(dsn, arm)
    return run_id


async def _fired_count(conn: Conn, run_id: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM history_events WHERE run_id = $1 AND event_type = 'TimerFired'",
            run_id,
        )
    )


async def test_two_loops_never_fire_a_timer_twice(aio_loop: None, db_dsn: str) -> None:
    run_id = await _due_timer(db_dsn, "wf-race")

    async def race() -> tuple[int, int, int, int]:
        a = await asyncpg.connect(db_dsn)
        b = await asyncpg.connect(db_dsn)
        try:
            for conn in (a, b):  # as the pool sets up its connections
                await conn.set_type_codec(
                    "jsonb",
                    encoder=lambda v: orjson.dumps(v).decode(),
                    decoder=orjson.loads,
                    schema="pg_catalog",
                )
            ta, tb = a.transaction(), b.transaction()
            await ta.start()
            await tb.start()
            _, first, _ = await timers.fire_due(a, 10)  # holds the timer and run, uncommitted
            _, during, _ = await timers.fire_due(b, 10)  # skips them instead of waiting
            await ta.commit()
            _, after, next_due = await timers.fire_due(b, 10)  # already fired
            await tb.commit()
            assert next_due is None
            return first, during, after, await _fired_count(a, run_id)
        finally:
            await a.close()
            await b.close()

    with trio.fail_after(20):
        first, during, after, fired = await bridge.run(race)
    assert (first, during, after, fired) == (1, 0, 0, 1)


async def test_concurrent_fire_calls_settle_each_timer_once(aio_loop: None, db_dsn: str) -> None:
    run_ids = [await _due_timer(db_dsn, f"wf-many-{i}") for i in range(5)]

    async def fire_once() -> int:
        async def op(conn: Conn) -> int:
            return (await timers.fire_due(conn, 100))[1]

        return await connect_once(db_dsn, op)

    settled: list[int] = []

    async def one() -> None:
        settled.append(await fire_once())

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(one)

    async def counts(conn: Conn) -> list[int]:
        return [await _fired_count(conn, r) for r in run_ids]

    assert sum(settled) == 5
    assert await connect_once(db_dsn, counts) == [1] * 5


async def test_a_closed_runs_leftover_timer_is_cancelled_not_fired(
    aio_loop: None, db_dsn: str
) -> None:
    run_id = await _due_timer(db_dsn, "wf-leftover")

    async def close_then_fire(conn: Conn) -> tuple[int, str, int]:
        await conn.execute(
            "UPDATE workflow_runs SET status = 'terminated', closed_at = now() WHERE id = $1",
            run_id,
        )
        outcome, settled, _ = await timers.fire_due(conn, 10)
        assert not outcome.wakes
        state = await conn.fetchval("SELECT state FROM timers WHERE run_id = $1", run_id)
        return settled, state, await _fired_count(conn, run_id)

    assert await connect_once(db_dsn, close_then_fire) == (1, "cancelled", 0)
