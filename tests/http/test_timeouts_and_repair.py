"""Server-owned timeouts and lease repair over real HTTP.

Contract: worker-plane.md §8.2, §9.4, §9.5 and §7 (lease expiry);
history-events.md (``ActivityRetryScheduled``, ``ActivityTimedOut``,
``WorkflowTimedOut``); control-plane.md (a timed-out run is ``failed`` with
``closed_reason: timed_out``). The timeout and repair loops run every 0.2 s
here, and timeouts are 1-2 s, so each test takes a few seconds of real time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from test_worker_plane import TOKEN, Harness, activity_cmd, parallel_fields

from dwtrio.store.pool import Conn, connect_once

from conftest import StartServer

FAST_LOOPS = {"timeout_check_interval_s": 0.2, "task_repair_interval_s": 0.2}
AMBIGUOUS = {"lease_expired", "lease_owner_mismatch", "task_not_leased", "run_closed"}


@asynccontextmanager
async def fast(start_server: StartServer, **settings: Any) -> AsyncIterator[Harness]:
    async with Harness.open(start_server, TOKEN, **FAST_LOOPS, **settings) as hh:
        yield hh


@pytest.fixture
async def h(start_server: StartServer) -> AsyncIterator[Harness]:
    async with fast(start_server) as hh:
        yield hh


def activity_events(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in task["history_events"] if e["event_type"].startswith("Activity")]


async def test_start_to_close_timeout_retries_then_times_out(h: Harness) -> None:
    t1 = await h.begin("wf-stc")
    policy = {"max_attempts": 2, "backoff_seconds": [0]}
    await h.complete_wf(t1, [activity_cmd(start_to_close_timeout=1, retry_policy=policy)])
    first = await h.act_task()
    assert set(first["deadlines"]) == {"start_to_close"}
    assert first["deadlines"]["start_to_close"].endswith("Z")
    claimed_at = trio.current_time()
    second = await h.act_task("w2", timeout=4)
    assert trio.current_time() - claimed_at >= 0.9
    assert second["attempt_number"] == 2 and second["task_id"] == first["task_id"]
    assert second["activity_attempt_id"] != first["activity_attempt_id"]
    assert await h.poll_wf() is None  # a retried timeout does not wake the workflow
    await h.act_call(first, "complete", 409, "stale_attempt", result="late")
    t2 = await h.wf_task(timeout=4)
    await h.act_call(second, "complete", 409, "stale_attempt", result="late")
    events = activity_events(t2)
    assert [e["event_type"] for e in events] == [
        "ActivityScheduled",
        "ActivityStarted",
        "ActivityRetryScheduled",
        "ActivityStarted",
        "ActivityTimedOut",
    ]
    retry = events[2]["payload"]
    assert retry["timeout_kind"] == "start_to_close" and retry["retry_after_attempt"] == 1
    assert retry["sequence"] == 1 and retry["activity_type"] == "greet"
    final = events[-1]["payload"]
    assert final["sequence"] == 1 and final["activity_type"] == "greet"
    assert final["timeout_kind"] == "start_to_close"
    assert final["message"] == "activity start_to_close timeout"
    assert final["attempt_number"] == 2
    assert final["activity_attempt_id"] == second["activity_attempt_id"]
    assert final["failure_category"] == "timeout"
    assert final["exception"]["message"] == final["message"]


async def test_heartbeats_keep_an_attempt_alive_until_they_stop(h: Harness) -> None:
    t1 = await h.begin("wf-hb")
    await h.complete_wf(t1, [activity_cmd(heartbeat_timeout=2, start_to_close_timeout=30)])
    act = await h.act_task()
    assert set(act["deadlines"]) == {"heartbeat", "start_to_close"}
    claimed_at = trio.current_time()
    for _ in range(3):
        await trio.sleep(0.5)
        body = await h.act_call(act, "heartbeat", details={"progress": 1})
        assert body["heartbeat_recorded"] is True
    t2 = await h.wf_task(timeout=5)
    assert trio.current_time() - claimed_at >= 3.4  # 1.5 s of heartbeats, then 2 s silence
    await h.act_call(act, "heartbeat", 409, "stale_attempt")
    final = activity_events(t2)[-1]
    assert final["event_type"] == "ActivityTimedOut"
    assert final["payload"]["timeout_kind"] == "heartbeat"
    assert final["payload"]["message"] == "activity heartbeat timeout"
    assert final["payload"]["attempt_number"] == 1


async def test_schedule_to_start_timeout_ends_an_unclaimed_activity(h: Harness) -> None:
    t1 = await h.begin("wf-sts")
    policy = {"max_attempts": 5}
    await h.complete_wf(t1, [activity_cmd(schedule_to_start_timeout=1, retry_policy=policy)])
    t2 = await h.wf_task(timeout=4)
    assert await h.poll_act() is None  # nothing is left to run
    events = activity_events(t2)
    assert [e["event_type"] for e in events] == ["ActivityScheduled", "ActivityTimedOut"]
    final = events[-1]["payload"]
    assert final["timeout_kind"] == "schedule_to_start"
    assert final["non_retryable"] is True
    assert final["deadlines"]["schedule_to_start"].endswith("Z")
    assert "activity_attempt_id" not in final


async def test_schedule_to_close_timeout_ends_retries(h: Harness) -> None:
    t1 = await h.begin("wf-stc-all")
    policy = {"max_attempts": 5, "backoff_seconds": [0]}
    await h.complete_wf(t1, [activity_cmd(schedule_to_close_timeout=3, retry_policy=policy)])
    first = await h.act_task()
    assert set(first["deadlines"]) == {"schedule_to_close"}
    body = await h.act_call(first, "fail", failure={"message": "again"})
    assert body["outcome"] == "retry_scheduled"
    second = await h.act_task()
    assert second["attempt_number"] == 2
    t2 = await h.wf_task(timeout=4)
    await h.act_call(second, "complete", 409, "stale_attempt", result="late")
    final = activity_events(t2)[-1]
    assert final["event_type"] == "ActivityTimedOut"
    assert final["payload"]["timeout_kind"] == "schedule_to_close"
    assert final["payload"]["attempt_number"] == 2
    assert final["payload"]["activity_attempt_id"] == second["activity_attempt_id"]


async def test_a_timed_out_group_member_waits_for_its_group(h: Harness) -> None:
    t1 = await h.begin("wf-group")
    await h.complete_wf(
        t1,
        [
            activity_cmd(
                queue="nobody-polls", schedule_to_start_timeout=1, **parallel_fields(0, size=2)
            ),
            activity_cmd(activity_type="other", **parallel_fields(1, size=2)),
        ],
    )
    with trio.fail_after(5):
        while "ActivityTimedOut" not in await h.event_types("wf-group", t1["run_id"]):
            await trio.sleep(0.1)
    assert await h.poll_wf() is None  # the other member still runs
    act = await h.act_task()
    assert act["activity_type"] == "other"
    body = await h.act_call(act, "complete", result="late")
    t2 = await h.wf_task()
    assert body["next_task_id"] == t2["task_id"]
    types = [e["event_type"] for e in activity_events(t2)]
    assert types.count("ActivityTimedOut") == 1 and types.count("ActivityCompleted") == 1


async def test_an_expired_activity_lease_is_delivered_again_whatever_max_attempts(
    start_server: StartServer,
) -> None:
    """A lease that expires without a business deadline means the worker is gone: the
    activity is delivered again (at least once), even past ``max_attempts``; the lost
    worker's late answer is fenced out. worker-plane.md §9.5."""
    async with fast(start_server, activity_task_timeout_s=1) as h:
        t1 = await h.begin("wf-lease")
        policy = {"max_attempts": 1, "backoff_seconds": [0]}
        await h.complete_wf(t1, [activity_cmd(retry_policy=policy)])
        lost = await h.act_task("w1")  # this worker "dies"
        again = await h.act_task("w2", timeout=4)
        assert again["attempt_number"] == 2 and again["task_id"] == lost["task_id"]
        await h.act_call(lost, "complete", 409, "stale_attempt", result="late")
        third = await h.act_task("w3", timeout=4)  # w2 dies too
        assert third["attempt_number"] == 3
        await h.act_call(third, "complete", result="done")
        t2 = await h.wf_task(timeout=4)
        events = activity_events(t2)
        assert [e["event_type"] for e in events] == [
            "ActivityScheduled",
            "ActivityStarted",
            "ActivityRetryScheduled",
            "ActivityStarted",
            "ActivityRetryScheduled",
            "ActivityStarted",
            "ActivityCompleted",
        ]
        assert events[2]["payload"]["message"] == "activity lease expired"


async def test_a_failure_after_a_lost_lease_follows_the_retry_policy(
    start_server: StartServer,
) -> None:
    """Lost attempts count when a later failure asks for another attempt: with
    ``max_attempts`` 2, a lost lease and then a failure end the activity."""
    async with fast(start_server, activity_task_timeout_s=1) as h:
        t1 = await h.begin("wf-lease-fail")
        policy = {"max_attempts": 2, "backoff_seconds": [0]}
        await h.complete_wf(t1, [activity_cmd(retry_policy=policy)])
        await h.act_task("w1")  # lost
        again = await h.act_task("w2", timeout=4)
        assert again["attempt_number"] == 2
        failure = {"message": "boom", "exception_class": "RuntimeError"}
        await h.act_call(again, "fail", failure=failure)
        t2 = await h.wf_task(timeout=4)
        assert await h.poll_act() is None
        types = [e["event_type"] for e in activity_events(t2)]
        assert types[-1] == "ActivityFailed" and types.count("ActivityRetryScheduled") == 1


async def test_repair_retires_an_activity_lease_left_on_a_closed_run(
    start_server: StartServer, db_dsn: str
) -> None:
    """Its attempt and execution end cancelled with the task (none stays running)."""
    async with fast(start_server, activity_task_timeout_s=1) as h:
        t1 = await h.begin("wf-lease-closed")
        await h.complete_wf(t1, [activity_cmd()])
        await h.act_task("w1")  # leased, then the run closes under it without close_run

        async def close(conn: Conn) -> None:
            await conn.execute(
                "UPDATE workflow_runs SET status = 'terminated', closed_at = now() WHERE id = $1",
                t1["run_id"],
            )

        await connect_once(db_dsn, close)

        async def states(conn: Conn) -> tuple[str, str, str]:
            row = await conn.fetchrow(
                "SELECT t.state, e.status, a.status FROM workflow_tasks t"
                "  JOIN activity_executions e ON e.id = t.activity_execution_id"
                "  JOIN activity_attempts a ON a.id = t.activity_attempt_id"
                " WHERE t.run_id = $1 AND t.kind = 'activity'",
                t1["run_id"],
            )
            return tuple(row)  # type: ignore[return-value]

        with trio.fail_after(10):
            while (found := await connect_once(db_dsn, states))[0] == "leased":
                await trio.sleep(0.2)
        assert found == ("completed", "cancelled", "cancelled")


async def test_lease_repair_on_two_nodes_repairs_each_lease_once(
    start_server: StartServer,
) -> None:
    async with fast(start_server, activity_task_timeout_s=2) as h:
        await start_server(
            admin_token=None, auth_token="t", activity_task_timeout_s=2, **FAST_LOOPS
        )
        t1 = await h.begin("wf-two-nodes")
        policy = {"max_attempts": 2, "backoff_seconds": [0]}
        size = 4
        await h.complete_wf(
            t1, [activity_cmd(retry_policy=policy, **parallel_fields(i, size)) for i in range(size)]
        )
        for _ in range(size):
            assert (await h.act_task("w1"))["attempt_number"] == 1
        for _ in range(size):  # each lease expires once and is handed out again once
            act = await h.act_task("w2", timeout=5)
            assert act["attempt_number"] == 2
            await h.act_call(act, "complete", result="late")
        t2 = await h.wf_task()
        types = [e["event_type"] for e in activity_events(t2)]
        assert types.count("ActivityRetryScheduled") == size
        assert types.count("ActivityStarted") == 2 * size
        assert types.count("ActivityCompleted") == size


async def test_an_expired_workflow_task_lease_comes_back_with_the_next_attempt(
    start_server: StartServer,
) -> None:
    async with fast(start_server, workflow_task_timeout_s=2) as h:
        lost = await h.begin("wf-wft-lease", worker="w1")
        assert lost["workflow_task_attempt"] == 1
        again = await h.wf_task("w2", timeout=5)
        assert again["task_id"] == lost["task_id"]
        assert again["workflow_task_attempt"] == 2
        body = await h.complete_wf(lost, [{"type": "complete_workflow"}], 409)
        assert body["reason"] in AMBIGUOUS
        await h.complete_wf(again, [{"type": "complete_workflow"}])
        assert (await h.describe("wf-wft-lease"))["status"] == "completed"


@pytest.mark.parametrize("kind", ["run", "execution"])
async def test_a_passed_deadline_times_the_run_out(h: Harness, kind: str) -> None:
    r = await h.cc.post(
        "/api/workflows",
        json={
            "workflow_id": f"wf-deadline-{kind}",
            "workflow_type": "greeter",
            "task_queue": "wq",
            "input": ["world"],
            f"{kind}_timeout_seconds": 1,
        },
    )
    assert r.status_code == 201, r.text
    leased = await h.wf_task()  # a worker holds the task when the deadline passes
    with trio.fail_after(5):
        while (d := await h.describe(f"wf-deadline-{kind}"))["status"] != "failed":
            await trio.sleep(0.1)
    assert d["closed_reason"] == "timed_out" and d["closed_at"] is not None
    history = await h.history(f"wf-deadline-{kind}", d["run_id"])
    last = history[-1]
    assert last["event_type"] == "WorkflowTimedOut"
    assert last["payload"]["timeout_kind"] == kind
    assert last["payload"][f"{kind}_deadline_at"].endswith("Z")
    body = await h.complete_wf(leased, [{"type": "complete_workflow"}], 409)
    assert body["reason"] in AMBIGUOUS
    assert await h.poll_wf() is None
