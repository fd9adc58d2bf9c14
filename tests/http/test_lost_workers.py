"""A worker that vanishes loses its leases at once, not when they expire.

Contract: worker-plane.md §3.3 and §4 (the advertised heartbeat cadence,
deregistration and its receipt), §7.5 and §9 (a recovered attempt's late
complete, fail or heartbeat gets ``409 stale_attempt``); docs/architecture.md,
"Timeouts and lease repair". Leases here are the defaults (300 s for an
activity, 60 s for a workflow task), so whatever comes back within seconds came
back because its worker was lost: it stopped heartbeating for the stale window
(2 s here, repair every 0.2 s) or it deregistered.
"""

from __future__ import annotations

from typing import Any

import trio
from test_worker_plane import (
    TOKEN,
    Harness,
    activity_cmd,
    parallel_fields,
    register_body,
    strip,
    wbody,
)

from conftest import StartServer

STALE_AFTER_S = 2
FAST = {
    "worker_stale_after_s": STALE_AFTER_S,
    "task_repair_interval_s": 0.2,
    "timeout_check_interval_s": 0.2,
}
RETRY = {"max_attempts": 2, "backoff_seconds": [0]}
LOST = f"activity worker w1 lost (no heartbeat for {STALE_AFTER_S} s)"


async def register(h: Harness, worker_id: str) -> dict[str, Any]:
    return await h.post("/api/worker/register", register_body(worker_id), 201)


def activity_events(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in task["history_events"] if e["event_type"].startswith("Activity")]


async def test_a_silent_workers_activity_is_retried_after_the_stale_window(
    start_server: StartServer,
) -> None:
    async with Harness.open(start_server, TOKEN, **FAST) as h:
        ack = await register(h, "w1")
        assert ack["heartbeat_interval_seconds"] == 1  # a quarter of 2 s, at least 1
        assert ack["stale_after_seconds"] == STALE_AFTER_S
        t1 = await h.begin("wf-silent", "w1")
        await h.complete_wf(t1, [activity_cmd(retry_policy=RETRY)])
        lost = await h.act_task("w1")  # then w1 falls silent: no heartbeat, no call
        claimed_at = trio.current_time()
        again = await h.act_task("w2", timeout=8)
        waited = trio.current_time() - claimed_at
        assert 1.5 <= waited < 5, waited  # stale window + a repair tick, not the 300 s lease
        assert again["task_id"] == lost["task_id"] and again["attempt_number"] == 2
        assert again["activity_attempt_id"] != lost["activity_attempt_id"]
        # The lost attempt is fenced off, whatever the "dead" worker sends late.
        await h.act_call(lost, "heartbeat", 409, "stale_attempt")
        await h.act_call(lost, "complete", 409, "stale_attempt", result="late")
        await h.act_call(lost, "fail", 409, "stale_attempt", failure={"message": "late"})
        await h.act_call(again, "complete", result="done")
        events = activity_events(await h.wf_task("w2"))
        assert [e["event_type"] for e in events] == [
            "ActivityScheduled",
            "ActivityStarted",
            "ActivityRetryScheduled",
            "ActivityStarted",
            "ActivityCompleted",
        ]
        retry = events[2]["payload"]
        assert retry["message"] == LOST
        assert retry["timeout_kind"] == "start_to_close"
        assert retry["attempt_number"] == retry["retry_after_attempt"] == 1
        assert retry["activity_attempt_id"] == lost["activity_attempt_id"]


async def test_a_silent_workers_only_attempt_is_delivered_again(
    start_server: StartServer,
) -> None:
    """No retry policy (one attempt), and still nothing is lost with the worker: a lost
    attempt is delivered again, not timed out (worker-plane.md §9.5)."""
    async with Harness.open(start_server, TOKEN, **FAST) as h:
        await register(h, "w1")
        t1 = await h.begin("wf-silent-final", "w1")
        await h.complete_wf(t1, [activity_cmd()])  # no retry policy: one attempt
        lost = await h.act_task("w1")
        claimed_at = trio.current_time()
        again = await h.act_task("w2", timeout=8)
        assert trio.current_time() - claimed_at < 5
        assert again["task_id"] == lost["task_id"] and again["attempt_number"] == 2
        await h.act_call(lost, "complete", 409, "stale_attempt", result="late")
        await h.act_call(again, "complete", result="done")
        events = activity_events(await h.wf_task("w2", timeout=5))
        assert [e["event_type"] for e in events][-3:] == [
            "ActivityRetryScheduled",
            "ActivityStarted",
            "ActivityCompleted",
        ]
        retry = events[-3]["payload"]
        assert retry["message"] == LOST and retry["attempt_number"] == 1


async def test_a_silent_workers_workflow_task_is_offered_again(start_server: StartServer) -> None:
    async with Harness.open(start_server, TOKEN, **FAST) as h:
        await register(h, "w1")
        lost = await h.begin("wf-silent-wft", "w1")
        claimed_at = trio.current_time()
        again = await h.wf_task("w2", timeout=8)
        waited = trio.current_time() - claimed_at
        assert 1.5 <= waited < 5, waited  # not the 60 s workflow-task lease
        assert again["task_id"] == lost["task_id"] and again["workflow_task_attempt"] == 2
        await h.complete_wf(lost, [{"type": "complete_workflow"}], 409, "lease_owner_mismatch")
        await h.complete_wf(again, [{"type": "complete_workflow"}])
        assert (await h.describe("wf-silent-wft"))["status"] == "completed"


async def test_deregistering_recovers_activity_leases_at_once(start_server: StartServer) -> None:
    # The repair loop runs once at start and then not again during the test: whatever
    # comes back, the deregistration gave back.
    async with Harness.open(start_server, TOKEN, task_repair_interval_s=600) as h:
        await register(h, "w1")
        t1 = await h.begin("wf-dereg-act", "w1")
        await h.complete_wf(t1, [activity_cmd(retry_policy=RETRY), activity_cmd()])
        first, second = await h.act_task("w1"), await h.act_task("w1")
        retried, ended = (first, second) if "retry_policy" in first else (second, first)
        body = wbody(await h.wc.delete("/api/worker/registrations/w1"), 200)
        assert strip(body) == {
            "worker_id": "w1",
            "outcome": "deregistered",
            "recovered_workflow_task_count": 0,
            "recovered_activity_task_count": 2,
        }
        # Both are delivered again at once, the one without a retry policy too: the
        # worker left, no business deadline passed (worker-plane.md §9.5).
        start = trio.current_time()
        again = [await h.act_task("w2", timeout=5), await h.act_task("w2", timeout=5)]
        assert trio.current_time() - start < 1.5
        assert {t["task_id"] for t in again} == {retried["task_id"], ended["task_id"]}
        assert all(t["attempt_number"] == 2 for t in again)
        for task in (retried, ended):
            await h.act_call(task, "complete", 409, "stale_attempt", result="late")
        for task in again:
            await h.act_call(task, "complete", result="done")
        t2 = await h.wf_task("w2", timeout=5)
        events = activity_events(t2)
        retries = [e["payload"] for e in events if e["event_type"] == "ActivityRetryScheduled"]
        assert {r["activity_attempt_id"] for r in retries} == {
            retried["activity_attempt_id"],
            ended["activity_attempt_id"],
        }
        assert {r["message"] for r in retries} == {"activity worker w1 deregistered"}
        assert {r["timeout_kind"] for r in retries} == {"start_to_close"}
        assert "ActivityTimedOut" not in [e["event_type"] for e in events]
        # Nothing is left to give back.
        body = wbody(await h.wc.delete("/api/worker/registrations/w1"), 200)
        assert body["recovered_activity_task_count"] == 0


async def test_live_workers_keep_their_activities_past_the_stale_window(
    start_server: StartServer,
) -> None:
    """w1 heartbeats at the advertised cadence; w3 registered but only heartbeats its
    activity; w4 never registered (only polled), so it is never judged by heartbeats."""
    async with Harness.open(start_server, TOKEN, **FAST) as h:
        interval_s = (await register(h, "w1"))["heartbeat_interval_seconds"]
        await register(h, "w3")
        t1 = await h.begin("wf-live", "w1")
        await h.complete_wf(t1, [activity_cmd(retry_policy=RETRY) for _ in range(3)])
        held = {w: await h.act_task(w) for w in ("w1", "w3", "w4")}
        until = trio.current_time() + 3 * STALE_AFTER_S
        while trio.current_time() < until:
            await trio.sleep(interval_s)
            ack = await h.post("/api/worker/heartbeat", {"worker_id": "w1"})
            assert ack["heartbeat_interval_seconds"] == interval_s
            beat = await h.act_call(held["w3"], "heartbeat", details={"progress": 1})
            assert beat["heartbeat_recorded"] is True
        for task in held.values():
            body = await h.act_call(task, "complete", result="done")
            assert body["outcome"] == "completed"
        types = [e["event_type"] for e in activity_events(await h.wf_task("w1"))]
        assert "ActivityRetryScheduled" not in types
        assert types.count("ActivityStarted") == types.count("ActivityCompleted") == 3


async def test_lost_worker_repair_on_two_nodes_recovers_each_lease_once(
    start_server: StartServer,
) -> None:
    async with Harness.open(start_server, TOKEN, **FAST) as h:
        await start_server(admin_token=None, auth_token=TOKEN, **FAST)
        await register(h, "w1")
        t1 = await h.begin("wf-lost-two-nodes", "w1")
        size = 4
        await h.complete_wf(
            t1, [activity_cmd(retry_policy=RETRY, **parallel_fields(i, size)) for i in range(size)]
        )
        for _ in range(size):
            assert (await h.act_task("w1"))["attempt_number"] == 1
        for _ in range(size):  # each lease is recovered once and handed out again once
            act = await h.act_task("w2", timeout=8)
            assert act["attempt_number"] == 2
            await h.act_call(act, "complete", result="done")
        types = [e["event_type"] for e in activity_events(await h.wf_task("w2"))]
        assert types.count("ActivityRetryScheduled") == size
        assert types.count("ActivityStarted") == 2 * size
        assert types.count("ActivityCompleted") == size
