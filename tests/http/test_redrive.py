"""Redrive of a failed run over real HTTP: the new run, its seeded history, the
refusals, request-id receipts, and what describe, the run list, the visibility list,
the operator metrics and the history export show afterwards.

Contract: control-plane.md §14 (``redrive_workflow``), §5.6 (command rules,
``request_id``); docs/workflow-maintenance.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_worker_plane import activity_cmd
from test_workflow_commands import ARGS, COMMAND_KEYS, TOKEN, Client, Q, envelope_of
from test_workflow_maintenance import NO_BACKGROUND_REPAIR, finish, sql

from dwtrio.engine.redrive import plan_redrive
from dwtrio.store.history import EventRow
from dwtrio.store.pool import connect_once

from conftest import ADMIN_TOKEN, CP, WP, RunningServer, StartServer

NON_RETRYABLE = {"message": "card declined", "type": "Declined", "non_retryable": True}


@pytest.fixture
async def c(start_server: StartServer) -> AsyncIterator[Client]:
    server: RunningServer = await start_server(
        admin_token=None, auth_token=TOKEN, **NO_BACKGROUND_REPAIR
    )
    async with server.client(TOKEN, **CP) as cc, server.client(TOKEN, **WP) as wc:
        yield Client(cc, wc)


async def activity_task(c: Client) -> dict[str, Any]:
    task = await c.poll("activity")
    assert task is not None
    return task


async def fail_after_one_activity(c: Client, wf: str) -> str:
    """greet completes, charge fails for good, the workflow fails: the failed run's id."""
    run_id = await c.start(wf)
    await c.complete_wf(await c.wf_task(), [activity_cmd("greet", queue=Q)])
    await c.act_call(await activity_task(c), "complete", result="hello")
    await c.complete_wf(await c.wf_task(), [activity_cmd("charge", queue=Q)])
    await c.act_call(await activity_task(c), "fail", failure=NON_RETRYABLE)
    await c.complete_wf(await c.wf_task(), [{"type": "fail_workflow", "message": "card declined"}])
    return run_id


def redrive_path(wf: str, run_id: str) -> str:
    return f"/api/workflows/{wf}/runs/{run_id}/redrive"


async def test_redrive_starts_a_run_that_replays_the_completed_steps(c: Client) -> None:
    failed = await fail_after_one_activity(c, "rd-1")
    body = await c.command(redrive_path("rd-1", failed), {"request_id": "k"}, 202)
    assert set(body) == COMMAND_KEYS | {"redrive"}
    envelope_of(body, "redrive", 202)
    new_run = body["run_id"]
    assert new_run != failed
    assert body["outcome"] == "redriven" and body["command_status"] == "accepted"
    assert body["requested_run_id"] == failed and body["resolved_run_id"] == failed
    assert body["target_scope"] == "run" and body["request_id"] == "k"
    details = body["redrive"]
    assert details["source_run_id"] == failed and details["run_id"] == new_run
    assert details["run_number"] == 2 and details["reused_steps"] == 1
    assert details["retried_step_sequence"] == 2 and details["task_id"]

    described = await c.describe("rd-1")
    assert described["run_id"] == new_run and described["status"] == "pending"
    assert described["run_count"] == 2
    events = await c.history("rd-1", new_run)
    types = [e["event_type"] for e in events]
    assert types == ["WorkflowStarted", "ActivityScheduled", "ActivityStarted", "ActivityCompleted"]
    assert events[0]["payload"]["redriven_from_run_id"] == failed
    assert events[0]["payload"]["continued_from_run_id"] == failed
    assert events[0]["payload"]["workflow_command_id"] == body["command_id"]
    assert all(e["payload"]["reused_from_run_id"] == failed for e in events[1:])
    assert {e["payload"]["activity_type"] for e in events[1:]} == {"greet"}
    # The failed run is left as it was.
    old = [e["event_type"] for e in await c.history("rd-1", failed)]
    assert old[-1] == "WorkflowFailed" and old.count("ActivityFailed") == 1

    # The worker replays: its next activity is step 2 again, and the run completes.
    task = await c.wf_task()
    assert task["run_id"] == new_run
    done = await c.complete_wf(task, [activity_cmd("charge", queue=Q)])
    assert done["run_id"] == new_run
    act = await activity_task(c)
    scheduled = [
        e for e in await c.history("rd-1", new_run) if e["event_type"] == "ActivityScheduled"
    ]
    assert [e["payload"]["sequence"] for e in scheduled] == [1, 2]
    await c.act_call(act, "complete", result="charged")
    await c.complete_wf(await c.wf_task(), [{"type": "complete_workflow", "result": None}])
    assert (await c.describe("rd-1"))["status"] == "completed"

    r = await c.cc.get("/api/workflows/rd-1/runs")
    runs = [(x["run_id"], x["status"]) for x in r.json()["runs"]]
    assert runs == [(failed, "failed"), (new_run, "completed")]
    r = await c.cc.get("/api/workflows", params={"query": "WorkflowId = 'rd-1'"})
    listed = sorted((x["run_id"], x["status"]) for x in r.json()["workflows"])
    assert listed == sorted([(failed, "failed"), (new_run, "completed")])


async def test_export_links_and_run_counters_follow_the_redrive(c: Client, db_dsn: str) -> None:
    failed = await fail_after_one_activity(c, "rd-exp")
    body = await c.command(redrive_path("rd-exp", failed), {}, 202)
    new_run = body["run_id"]

    async def export(run_id: str) -> dict[str, Any]:
        r = await c.cc.get(f"/api/workflows/rd-exp/runs/{run_id}/history/export")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    old = await export(failed)
    assert old["workflow"]["status"] == "failed" and old["workflow"]["is_current_run"] is False
    assert old["workflow"]["continued_to_run_id"] == new_run
    assert {
        "link_type": "redrive",
        "workflow_instance_id": "rd-exp",
        "workflow_run_id": new_run,
    } in old["links"]["children"]
    assert [x["type"] for x in old["commands"]] == ["start", "redrive"]
    new = await export(new_run)
    assert new["workflow"]["continued_from_run_id"] == failed
    assert new["workflow"]["is_current_run"] is True and new["workflow"]["run_number"] == 2
    assert new["history_events"][0]["workflow_command_id"] == body["command_id"]
    assert new["links"]["parents"] == [
        {"link_type": "redrive", "workflow_instance_id": "rd-exp", "workflow_run_id": failed}
    ]
    reused = [e for e in new["history_events"] if e["payload"].get("reused_from_run_id")]
    assert [e["type"] for e in reused] == [
        "ActivityScheduled",
        "ActivityStarted",
        "ActivityCompleted",
    ]

    # The counters by status (triggers on workflow_runs) match a count of the rows.
    async def counts(conn: Any) -> tuple[Any, Any]:
        rows = await conn.fetch(
            "SELECT status, count(*) FROM workflow_runs WHERE namespace = 'default'"
            " GROUP BY 1 ORDER BY 1"
        )
        counted = await conn.fetch(
            "SELECT status, sum(count)::bigint FROM run_status_counts"
            " WHERE namespace = 'default' GROUP BY 1 HAVING sum(count) <> 0 ORDER BY 1"
        )
        return [tuple(r) for r in rows], [tuple(r) for r in counted]

    rows, counted = await connect_once(db_dsn, counts)
    expected: dict[str, int] = {}
    for status, n in rows:
        key = "open" if status in ("pending", "running", "waiting") else status
        expected[key] = expected.get(key, 0) + n
    assert dict(counted) == expected and expected == {"failed": 1, "open": 1}


async def test_redrive_after_workflow_code_failed_keeps_every_step(c: Client) -> None:
    run_id = await c.start("rd-code")
    await c.complete_wf(await c.wf_task(), [activity_cmd("greet", queue=Q)])
    await c.act_call(await activity_task(c), "complete", result="hello")
    await c.complete_wf(await c.wf_task(), [{"type": "fail_workflow", "message": "bug"}])
    body = await c.command(redrive_path("rd-code", run_id), {}, 202)
    assert body["redrive"]["reused_steps"] == 1
    assert body["redrive"]["retried_step_sequence"] is None
    task = await c.wf_task()
    await c.complete_wf(task, [{"type": "complete_workflow", "result": None}])
    assert (await c.describe("rd-code"))["status"] == "completed"


async def test_request_id_replay_returns_the_same_receipt(c: Client, db_dsn: str) -> None:
    failed = await fail_after_one_activity(c, "rd-dup")
    first = await c.command(redrive_path("rd-dup", failed), {"request_id": "once"}, 202)
    again = await c.command(redrive_path("rd-dup", failed), {"request_id": "once"}, 202)
    assert again["retained"] is True and again["intent_verified"] is True
    for key in ("command_id", "run_id", "outcome", "redrive"):
        assert again[key] == first[key]
    r = await c.cc.get("/api/workflows/rd-dup/runs")
    assert r.json()["run_count"] == 2
    # Without the key the same redrive names a run that is no longer current.
    stale = await c.command(redrive_path("rd-dup", failed), {}, 409)
    assert stale["reason"] == "historical_run_command_rejected"
    # The key on the new run is another intent.
    conflict = await c.command(redrive_path("rd-dup", first["run_id"]), {"request_id": "once"}, 409)
    assert conflict["reason"] == "request_id_conflict"
    assert conflict["retained_command_type"] == "redrive"
    # A refusal is kept too.
    open_run = await c.start("rd-dup-open")
    refused = await c.command(redrive_path("rd-dup-open", open_run), {"request_id": "no"}, 409)
    refused_again = await c.command(
        redrive_path("rd-dup-open", open_run), {"request_id": "no"}, 409
    )
    assert refused_again["retained"] is True
    assert refused_again["command_id"] == refused["command_id"]


async def test_refusals(c: Client) -> None:
    open_run = await c.start("rd-open")
    body = await c.command(redrive_path("rd-open", open_run), {}, 409)
    assert body["reason"] == "run_not_failed" and body["rejection_reason"] == "run_not_failed"
    assert body["outcome"] == "rejected_run_not_failed" and body["command_status"] == "rejected"
    envelope_of(body, "redrive", 409)
    done = await finish(c, "rd-done")
    body = await c.command(redrive_path("rd-done", done), {}, 409)
    assert body["reason"] == "run_not_failed"
    cancelled = await c.start("rd-cancel")
    await c.command("/api/workflows/rd-cancel/cancel")
    body = await c.command(redrive_path("rd-cancel", cancelled), {}, 409)
    assert body["reason"] == "run_not_failed" and "cancelled" in body["message"]

    unknown = await c.command(redrive_path("nope", "r1"), {}, 404)
    assert unknown["reason"] == "instance_not_found"
    no_run = await c.command(redrive_path("rd-open", "norun"), {}, 404)
    assert no_run["reason"] == "run_not_found"
    other = await c.command(redrive_path("rd-open", done), {}, 404)
    assert other["reason"] == "run_not_found"  # a run of another instance

    failed = await fail_after_one_activity(c, "rd-ns")
    r = await c.cc.post("/api/namespaces", json={"name": "other"})
    assert r.status_code == 201, r.text
    r = await c.cc.post(redrive_path("rd-ns", failed), json={}, headers={"X-Namespace": "other"})
    assert r.status_code == 404 and r.json()["reason"] == "instance_not_found"

    for bad, field in (
        ({"request_id": "x" * 256}, "request_id"),
        ({"request_id": 5}, "request_id"),
        ({"request_id": "a\u0000b"}, "request_id"),
    ):
        r = await c.cc.post(redrive_path("rd-ns", failed), json=bad)
        assert r.status_code == 422, r.text
        assert field in r.json()["errors"]
    json_type = {"Content-Type": "application/json"}
    r = await c.cc.post(redrive_path("rd-ns", failed), content=b"[1, 2]", headers=json_type)
    assert r.status_code in (400, 422), r.text
    r = await c.cc.post(redrive_path("rd-ns", failed), content=b"{nope", headers=json_type)
    assert r.status_code == 400 and r.json()["reason"] == "malformed_json"
    r = await c.cc.post("/api/workflows/rd-ns/redrive", json={})
    assert r.status_code == 404
    # Nothing above touched the failed run: it is still current and failed.
    assert (await c.describe("rd-ns"))["run_id"] == failed


async def test_refusals_of_runs_that_cannot_be_carried_over(c: Client, db_dsn: str) -> None:
    archived = await fail_after_one_activity(c, "rd-arch")
    await c.command("/api/workflows/rd-arch/archive")
    body = await c.command(redrive_path("rd-arch", archived), {}, 409)
    assert body["reason"] == "run_archived"

    late = await fail_after_one_activity(c, "rd-late")
    await sql(
        db_dsn,
        "UPDATE workflow_instances SET execution_deadline_at = now() - interval '1 second'"
        " WHERE workflow_id = 'rd-late'",
    )
    body = await c.command(redrive_path("rd-late", late), {}, 409)
    assert body["reason"] == "execution_deadline_passed"

    timed_out = await fail_after_one_activity(c, "rd-to")
    await sql(
        db_dsn, "UPDATE workflow_runs SET closed_reason = 'timed_out' WHERE id = $1", timed_out
    )
    body = await c.command(redrive_path("rd-to", timed_out), {}, 409)
    assert body["reason"] == "run_not_failed" and "timed_out" in body["message"]

    parent = await c.start("rd-parent")
    await c.complete_wf(
        await c.wf_task(),
        [
            {
                "type": "start_child_workflow",
                "workflow_type": "child",
                "queue": Q,
                "arguments": ARGS,
            }
        ],
    )
    child_task = await c.wf_task()
    await c.complete_wf(child_task, [{"type": "fail_workflow", "message": "child broke"}])
    scheduled = [
        e for e in await c.history("rd-parent", parent) if e["event_type"] == "ChildRunFailed"
    ]
    child_wf = scheduled[0]["payload"]["child_workflow_instance_id"]
    child = scheduled[0]["payload"]["child_workflow_run_id"]
    body = await c.command(redrive_path(child_wf, child), {}, 409)
    assert body["reason"] == "run_has_parent"
    body = await c.command(redrive_path("rd-parent", parent), {}, 409)
    assert body["reason"] == "run_not_failed"


async def test_roles_are_those_of_the_other_workflow_commands(start_server: StartServer) -> None:
    server = await start_server(worker_token="tok-worker", operator_token="tok-operator")
    for token, status, reason in (
        ("tok-worker", 403, "forbidden"),
        ("tok-operator", 404, "instance_not_found"),
        (ADMIN_TOKEN, 404, "instance_not_found"),
    ):
        async with server.client(token, **CP) as cc:
            r = await cc.post(redrive_path("rd-role", "r1"), json={})
        assert r.status_code == status and r.json()["reason"] == reason, r.text


def _event(seq: int, kind: str, **payload: Any) -> EventRow:
    from datetime import UTC, datetime

    return EventRow(str(seq), seq, kind, payload, None, None, datetime.now(UTC))


def test_plan_refuses_histories_it_cannot_carry_over() -> None:
    start = _event(1, "WorkflowStarted", workflow_run_id="r")
    failed = _event(9, "WorkflowFailed")
    child = plan_redrive([start, _event(2, "ChildWorkflowScheduled", sequence=1), failed], 1)
    assert getattr(child, "reason", None) == "unsupported_history"
    parallel = plan_redrive(
        [start, _event(2, "ActivityScheduled", sequence=1, parallel_group_id="g"), failed], 1
    )
    assert getattr(parallel, "reason", None) == "unsupported_history"
    # A timer that never fired, before the failed step: nothing would fire it in a new run.
    stuck = plan_redrive(
        [
            start,
            _event(2, "TimerScheduled", sequence=1),
            _event(3, "ActivityScheduled", sequence=2),
            _event(4, "ActivityFailed", sequence=2),
            failed,
        ],
        2,
    )
    assert getattr(stuck, "reason", None) == "unresolved_step"
    ok = plan_redrive(
        [
            start,
            _event(2, "TimerScheduled", sequence=1),
            _event(3, "TimerFired", sequence=1),
            _event(4, "SignalReceived", signal_name="go"),
            _event(5, "ActivityScheduled", sequence=2),
            _event(6, "ActivityRetryScheduled", sequence=2),
            _event(7, "ActivityTimedOut", sequence=2),
            failed,
        ],
        2,
    )
    assert not hasattr(ok, "reason")
    assert [e.event_type for e in ok.kept] == ["TimerScheduled", "TimerFired", "SignalReceived"]  # type: ignore[union-attr]
    assert ok.last_step_sequence == 1 and ok.retried_step_sequence == 2  # type: ignore[union-attr]
