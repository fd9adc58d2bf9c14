"""Markers, search attributes, continue-as-new and child workflows over real HTTP.

Contract: commands.md §5.3, §5.6, §5.7, §5.10, §5.11; history-events.md §2.2,
§4.1, §4.7, §4.8. A worker is played by hand: poll a workflow task, complete it
with commands, read history and describe through the control plane.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio

from dwtrio import payloads

from conftest import StartServer
from http_clients import Clients

TOKEN = "t"
Q = "lq"
ARGS = {"codec": "avro", "blob": payloads.encode(["world"])}
SIDE_EFFECT = payloads.encode(42)


def value(v: Any) -> dict[str, str]:
    return {"codec": "avro", "blob": payloads.encode(v)}


@attrs.define
class Worker(Clients):
    """A hand-driven worker plus a control-plane client."""

    async def start(self, workflow_id: str, **extra: Any) -> dict[str, Any]:
        body = {"workflow_id": workflow_id, "workflow_type": "parent", "task_queue": Q, **extra}
        r = await self.cc.post("/api/workflows", json=body)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def task(self, queue: str = Q) -> dict[str, Any]:
        with trio.fail_after(10):
            r = await self.wc.post(
                "/api/worker/workflow-tasks/poll",
                json={"worker_id": "w1", "task_queue": queue, "timeout_seconds": 2},
            )
        assert r.status_code == 200, r.text
        task = r.json()["task"]
        assert task is not None
        return task  # type: ignore[no-any-return]

    async def no_task(self, queue: str = Q) -> None:
        r = await self.wc.post(
            "/api/worker/workflow-tasks/poll",
            json={"worker_id": "w1", "task_queue": queue, "timeout_seconds": 0},
        )
        assert r.status_code == 200 and r.json()["task"] is None, r.text

    async def types(self, workflow_id: str, run_id: str) -> list[str]:
        return [e["event_type"] for e in await self.history(workflow_id, run_id)]


@pytest.fixture
async def w(start_server: StartServer) -> AsyncIterator[Worker]:
    async with Worker.open(start_server, TOKEN) as worker:
        yield worker


def payload_of(events: list[dict[str, Any]], event_type: str) -> dict[str, Any]:
    found = [e["payload"] for e in events if e["event_type"] == event_type]
    assert len(found) == 1, (event_type, [e["event_type"] for e in events])
    return found[0]  # type: ignore[no-any-return]


def activity() -> dict[str, Any]:
    return {"type": "schedule_activity", "activity_type": "greet", "queue": Q, "arguments": ARGS}


def child_cmd(**extra: Any) -> dict[str, Any]:
    return {
        "type": "start_child_workflow",
        "workflow_type": "child",
        "queue": Q,
        "arguments": ARGS,
        **extra,
    }


# --- markers and search attributes ------------------------------------------------------
async def test_markers_take_step_sequences_and_create_no_work(w: Worker) -> None:
    await w.start("mk-1", search_attributes={"Region": "eu"})
    task = await w.task()
    await w.complete(
        task,
        [
            {"type": "record_side_effect", "result": SIDE_EFFECT},
            {
                "type": "record_version_marker",
                "change_id": "change-1",
                "version": 2,
                "min_supported": 1,
                "max_supported": 2,
            },
            {"type": "upsert_search_attributes", "attributes": {"Color": "red", "Size": 3}},
            activity(),
        ],
    )
    events = await w.history("mk-1", task["run_id"])
    assert payload_of(events, "SideEffectRecorded") == {
        "sequence": 1,
        "result": SIDE_EFFECT,
        "payload_codec": "avro",
    }
    assert payload_of(events, "VersionMarkerRecorded") == {
        "sequence": 2,
        "change_id": "change-1",
        "version": 2,
        "min_supported": 1,
        "max_supported": 2,
    }
    assert payload_of(events, "SearchAttributesUpserted") == {
        "sequence": 3,
        "attributes": {"Color": "red", "Size": 3},
        "merged": {"Region": "eu", "Color": "red", "Size": 3},
    }
    assert payload_of(events, "ActivityScheduled")["sequence"] == 4
    assert (await w.describe("mk-1"))["search_attributes"] == {
        "Region": "eu",
        "Color": "red",
        "Size": 3,
    }
    # Only the activity was created: no workflow task is ready.
    await w.no_task()


async def test_a_null_search_attribute_deletes_it_and_list_shows_the_merge(w: Worker) -> None:
    await w.start("sa-1")
    task = await w.task()
    await w.complete(
        task,
        [
            {"type": "upsert_search_attributes", "attributes": {"Color": "red", "Tier": "gold"}},
            {"type": "upsert_search_attributes", "attributes": {"Color": None}},
            {"type": "complete_workflow", "result": value("done")},
        ],
    )
    events = await w.history("sa-1", task["run_id"])
    upserts = [e["payload"] for e in events if e["event_type"] == "SearchAttributesUpserted"]
    assert [u["sequence"] for u in upserts] == [1, 2]
    assert upserts[1] == {"sequence": 2, "attributes": {"Color": None}, "merged": {"Tier": "gold"}}
    assert (await w.describe("sa-1"))["search_attributes"] == {"Tier": "gold"}
    r = await w.cc.get("/api/workflows", params={"query": "sa-1"})
    assert r.status_code == 200, r.text
    assert [x["search_attributes"] for x in r.json()["workflows"]] == [{"Tier": "gold"}]


async def test_memo_upserts_merge_and_record_avro_envelopes(w: Worker) -> None:
    await w.start("memo-1", memo={"keep": True})
    task = await w.task()
    first = {"codec": "avro", "blob": payloads.encode({"b": 1, "a": "x"})}
    second = {"codec": "avro", "blob": payloads.encode({"b": None})}
    await w.complete(
        task,
        [
            {"type": "upsert_memo", "entries": first},
            activity(),
            {"type": "upsert_memo", "entries": second},
        ],
    )
    events = await w.history("memo-1", task["run_id"])
    upserts = [e["payload"] for e in events if e["event_type"] == "MemoUpserted"]
    assert [u["sequence"] for u in upserts] == [1, 3]
    assert [u["entries"] for u in upserts] == [first, second]
    merged = [payloads.decode(u["merged"]["blob"]) for u in upserts]
    assert merged == [{"a": "x", "b": 1, "keep": True}, {"a": "x", "keep": True}]
    assert list(merged[0]) == ["a", "b", "keep"]  # keys sorted, as the SDK re-derives them
    assert (await w.describe("memo-1"))["memo"] == {"a": "x", "keep": True}


@pytest.mark.parametrize(
    ("start_memo", "entries"),
    [
        ({}, {"codec": "avro", "blob": payloads.encode([1])}),
        ({}, {"codec": "avro", "blob": payloads.encode({})}),
        ({}, {"codec": "avro", "blob": payloads.encode({"12": "numeric key"})}),
        ({}, {"codec": "avro", "blob": payloads.encode({"big": "x" * 11_000})}),
        ({}, {"codec": "json", "blob": "{}"}),
        # The SDK re-validates the merged memo on replay: a start memo it rejects cannot merge.
        ({"not a memo key": 1}, {"codec": "avro", "blob": payloads.encode({"a": 1})}),
    ],
)
async def test_bad_memo_upserts_are_refused(
    w: Worker, start_memo: dict[str, Any], entries: dict[str, Any]
) -> None:
    await w.start("memo-2", memo=start_memo)
    task = await w.task()
    body = await w.complete(task, [{"type": "upsert_memo", "entries": entries}], status=422)
    assert body["reason"] == "validation_failed"
    assert any(k.startswith("commands.0.entries") for k in body["errors"]), body
    assert (await w.describe("memo-2"))["memo"] == start_memo


@pytest.mark.parametrize(
    ("command", "field"),
    [
        ({"type": "record_side_effect", "result": "not base64 {"}, "commands.0.result"),
        ({"type": "record_side_effect"}, "commands.0.result"),
        (
            {
                "type": "record_version_marker",
                "change_id": "c",
                "version": 3,
                "min_supported": 1,
                "max_supported": 2,
            },
            "commands.0.version",
        ),
        (
            {"type": "record_version_marker", "version": 1, "min_supported": 1, "max_supported": 1},
            "commands.0.change_id",
        ),
        (
            {"type": "upsert_search_attributes", "attributes": {"1bad": "x"}},
            "commands.0.attributes",
        ),
        ({"type": "upsert_search_attributes", "attributes": ["x"]}, "commands.0.attributes"),
        (
            {"type": "start_child_workflow", "queue": Q, "arguments": ARGS},
            "commands.0.workflow_type",
        ),
        (child_cmd(parent_close_policy="explode"), "commands.0.parent_close_policy"),
        (
            {"type": "continue_as_new", "queue": "", "arguments": ARGS},
            "commands.0.queue",
        ),
    ],
)
async def test_bad_fields_are_refused_and_nothing_is_recorded(
    w: Worker, command: dict[str, Any], field: str
) -> None:
    await w.start("bad-1", search_attributes={"Keep": "me"})
    task = await w.task()
    body = await w.complete(task, [command], status=422)
    assert body["reason"] == "validation_failed"
    assert field in body["errors"], body
    assert await w.types("bad-1", task["run_id"]) == ["StartAccepted", "WorkflowStarted"]
    assert (await w.describe("bad-1"))["search_attributes"] == {"Keep": "me"}


async def test_child_retry_policies_are_refused_as_unsupported(w: Worker) -> None:
    await w.start("bad-2")
    task = await w.task()
    body = await w.complete(task, [child_cmd(retry_policy={"max_attempts": 2})], status=409)
    assert body["reason"] == "invalid_commands"


# --- continue-as-new ---------------------------------------------------------------------
async def test_continue_as_new_chains_runs_of_one_instance(w: Worker) -> None:
    first = await w.start("can-1", search_attributes={"Color": "red"})
    run_ids = [first["run_id"]]
    task = await w.task()
    for n in (1, 2):
        body = await w.complete(
            task, [{"type": "continue_as_new", "queue": Q, "arguments": value([n])}]
        )
        assert body["run_status"] == "completed"
        task = await w.task()
        assert task["workflow_id"] == "can-1" and task["run_id"] not in run_ids
        assert payloads.decode(task["arguments"]["blob"]) == [n]
        run_ids.append(task["run_id"])
    await w.complete(task, [{"type": "complete_workflow", "result": value("end")}])

    for previous, current in itertools.pairwise(run_ids):
        events = await w.history("can-1", previous)
        assert events[-1]["event_type"] == "WorkflowContinuedAsNew"
        assert events[-1]["payload"]["continued_to_run_id"] == current
        started = await w.history("can-1", current)
        assert started[0]["event_type"] == "WorkflowStarted"
        assert started[0]["payload"]["continued_from_run_id"] == previous
        assert started[0]["payload"]["search_attributes"] == {"Color": "red"}
    assert (await w.types("can-1", run_ids[2]))[-1] == "WorkflowCompleted"

    described = await w.describe("can-1")
    assert described["run_id"] == run_ids[2]
    assert described["run_count"] == 3 and described["status"] == "completed"
    r = await w.cc.get("/api/workflows/can-1/runs")
    assert r.status_code == 200, r.text
    runs = r.json()["runs"]
    assert [x["run_id"] for x in runs] == run_ids
    assert [x["run_number"] for x in runs] == [1, 2, 3]
    assert [x["closed_reason"] for x in runs] == ["continued", "continued", "completed"]
    assert [x["status"] for x in runs] == ["completed"] * 3
    assert [x["is_current_run"] for x in runs] == [False, False, True]


async def test_continue_as_new_may_change_type_and_queue(w: Worker) -> None:
    await w.start("can-2")
    task = await w.task()
    await w.complete(
        task,
        [
            {"type": "record_side_effect", "result": SIDE_EFFECT},
            {
                "type": "continue_as_new",
                "queue": "other-q",
                "workflow_type": "next-type",
                "arguments": value([]),
            },
        ],
    )
    assert (await w.types("can-2", task["run_id"]))[-2:] == [
        "SideEffectRecorded",
        "WorkflowContinuedAsNew",
    ]
    await w.no_task()
    nxt = await w.task("other-q")
    assert nxt["workflow_type"] == "next-type" and nxt["task_queue"] == "other-q"
    described = await w.describe("can-2")
    assert described["run_id"] == nxt["run_id"]
    assert described["workflow_type"] == "next-type"


# --- children ----------------------------------------------------------------------------
async def _parent_with_child(
    w: Worker, workflow_id: str, **extra: Any
) -> tuple[str, dict[str, Any]]:
    """Start a parent that starts one child; return the parent run id and the child's task."""
    parent = await w.start(workflow_id)
    task = await w.task()
    body = await w.complete(task, [child_cmd(**extra)])
    child_task = await w.task()
    assert child_task["workflow_type"] == "child"
    assert body["created_task_ids"] == [child_task["task_id"]]
    return parent["run_id"], child_task


async def test_a_child_result_is_delivered_to_the_parent(w: Worker) -> None:
    parent_run, child = await _parent_with_child(w, "par-1")
    assert child["workflow_id"] == f"{parent_run}:child:1"
    assert payloads.decode(child["arguments"]["blob"]) == ["world"]
    started = (await w.history(child["workflow_id"], child["run_id"]))[0]
    assert started["event_type"] == "WorkflowStarted"
    assert started["payload"]["parent_workflow_instance_id"] == "par-1"
    assert started["payload"]["parent_workflow_run_id"] == parent_run
    assert started["payload"]["parent_sequence"] == 1

    events = await w.history("par-1", parent_run)
    scheduled = payload_of(events, "ChildWorkflowScheduled")
    assert scheduled["sequence"] == 1
    assert scheduled["child_workflow_type"] == "child"
    assert scheduled["child_workflow_instance_id"] == child["workflow_id"]
    assert "parent_close_policy" not in scheduled and "workflow_type" not in scheduled
    assert payload_of(events, "ChildRunStarted")["child_workflow_run_id"] == child["run_id"]
    await w.no_task()  # the parent sleeps until its child closes

    await w.complete(child, [{"type": "complete_workflow", "result": value("from child")}])
    task = await w.task()
    assert task["run_id"] == parent_run
    completed = payload_of(await w.history("par-1", parent_run), "ChildRunCompleted")
    assert completed["sequence"] == 1
    assert payloads.decode(completed["output"]) == "from child"
    assert completed["payload_codec"] == "avro"
    assert completed["child_workflow_run_id"] == child["run_id"]
    await w.complete(task, [{"type": "complete_workflow", "result": value("ok")}])
    assert (await w.describe("par-1"))["status"] == "completed"


async def test_a_failing_child_is_reported_as_child_run_failed(w: Worker) -> None:
    parent_run, child = await _parent_with_child(w, "par-2")
    await w.complete(
        child,
        [
            {
                "type": "fail_workflow",
                "message": "child broke",
                "exception_type": "ValueError",
                "exception_class": "builtins.ValueError",
            }
        ],
    )
    await w.task()
    failed = payload_of(await w.history("par-2", parent_run), "ChildRunFailed")
    assert failed["sequence"] == 1
    assert failed["message"] == "child broke"
    assert failed["exception_class"] == "builtins.ValueError"
    assert failed["child_status"] == "failed"


async def test_a_continued_child_reports_from_its_last_run(w: Worker) -> None:
    parent_run, child = await _parent_with_child(w, "par-3")
    await w.complete(child, [{"type": "continue_as_new", "queue": Q, "arguments": value([])}])
    second = await w.task()
    assert second["workflow_id"] == child["workflow_id"] and second["run_id"] != child["run_id"]
    assert (await w.history(second["workflow_id"], second["run_id"]))[0]["payload"][
        "parent_workflow_run_id"
    ] == parent_run
    await w.no_task()  # continuing is not closing: the parent is not woken
    await w.complete(second, [{"type": "complete_workflow", "result": value(7)}])
    await w.task()
    events = await w.history("par-3", parent_run)
    assert [e["event_type"] for e in events][2:] == [
        "ChildWorkflowScheduled",
        "ChildRunStarted",
        "ChildRunStarted",
        "ChildRunCompleted",
    ]
    assert events[4]["payload"]["child_workflow_run_id"] == second["run_id"]
    assert payloads.decode(payload_of(events, "ChildRunCompleted")["output"]) == 7


@pytest.mark.parametrize(
    ("policy", "child_status", "event"),
    [
        ("terminate", "terminated", "WorkflowTerminated"),
        ("request_cancel", "cancelled", "WorkflowCancelled"),
        ("abandon", "pending", None),
        (None, "pending", None),
    ],
)
async def test_parent_close_policy_applies_to_open_children(
    w: Worker, policy: str | None, child_status: str, event: str | None
) -> None:
    extra = {} if policy is None else {"parent_close_policy": policy}
    parent = await w.start("par-4")
    task = await w.task()
    await w.complete(task, [child_cmd(**extra), {"type": "complete_workflow", "result": value(1)}])
    child_id = f"{parent['run_id']}:child:1"
    described = await w.describe(child_id)
    assert described["status"] == child_status
    events = await w.history(child_id, described["run_id"])
    if event is None:
        assert [e["event_type"] for e in events] == ["WorkflowStarted"]
        assert (await w.task())["workflow_id"] == child_id  # abandoned: it runs on
    else:
        assert events[-1]["event_type"] == event
        assert "parent_close_policy" in events[-1]["payload"]["reason"]
        await w.no_task()
    # The parent's history ends with its own completion, not with news of its child.
    assert (await w.types("par-4", parent["run_id"]))[-1] == "WorkflowCompleted"


async def test_closing_a_parent_closes_its_grandchildren_through_the_child(w: Worker) -> None:
    parent = await w.start("par-6")
    task = await w.task()
    await w.complete(task, [child_cmd(parent_close_policy="terminate"), activity()])
    child = await w.task()
    await w.complete(child, [child_cmd(parent_close_policy="terminate")])
    grandchild = await w.task()
    assert grandchild["workflow_id"] == f"{child['run_id']}:child:1"

    # The parent's activity finishes, the parent wakes and completes.
    r = await w.wc.post(
        "/api/worker/activity-tasks/poll",
        json={"worker_id": "w1", "task_queue": Q, "timeout_seconds": 2},
    )
    act = r.json()["task"]
    r = await w.wc.post(
        f"/api/worker/activity-tasks/{act['task_id']}/complete",
        json={
            "activity_attempt_id": act["activity_attempt_id"],
            "lease_owner": act["lease_owner"],
            "result": value("done"),
        },
    )
    assert r.status_code == 200, r.text
    task = await w.task()
    assert task["run_id"] == parent["run_id"]
    await w.complete(task, [{"type": "complete_workflow", "result": value(1)}])

    assert (await w.describe(child["workflow_id"]))["status"] == "terminated"
    assert (await w.describe(grandchild["workflow_id"]))["status"] == "terminated"
    # The grandchild's lease is gone with its run.
    r = await w.wc.post(
        f"/api/worker/workflow-tasks/{grandchild['task_id']}/complete",
        json={
            "lease_owner": grandchild["lease_owner"],
            "workflow_task_attempt": grandchild["workflow_task_attempt"],
            "commands": [{"type": "complete_workflow", "result": value(0)}],
        },
    )
    assert r.status_code in (404, 409), r.text


async def test_a_taken_child_id_falls_back_to_a_fresh_one(w: Worker) -> None:
    parent = await w.start("par-7")
    taken = f"{parent['run_id']}:child:1"
    r = await w.cc.post("/api/workflows", json={"workflow_id": taken, "workflow_type": "other"})
    assert r.status_code == 201, r.text
    task = await w.task()
    await w.complete(task, [child_cmd()])
    scheduled = payload_of(await w.history("par-7", parent["run_id"]), "ChildWorkflowScheduled")
    child_id = scheduled["child_workflow_instance_id"]
    assert child_id != taken and len(child_id) == 26
    assert (await w.describe(child_id))["workflow_type"] == "child"


async def test_the_pending_children_limit_refuses_the_completion(
    start_server: StartServer,
) -> None:
    async with Worker.open(start_server, TOKEN, max_pending_children=1) as lw:
        parent = await lw.start("par-8")
        task = await lw.task()
        body = await lw.complete(task, [child_cmd(), child_cmd()], status=409)
        assert body["reason"] == "invalid_commands" and "limit 1" in body["message"]
        assert await lw.types("par-8", parent["run_id"]) == ["StartAccepted", "WorkflowStarted"]


async def test_a_terminated_child_is_reported_to_its_parent(w: Worker) -> None:
    parent_run, child = await _parent_with_child(w, "par-9")
    r = await w.cc.post(f"/api/workflows/{child['workflow_id']}/terminate", json={"reason": "ops"})
    assert r.status_code == 200, r.text
    task = await w.task()
    assert task["run_id"] == parent_run
    terminated = payload_of(await w.history("par-9", parent_run), "ChildRunTerminated")
    assert terminated["sequence"] == 1 and terminated["child_status"] == "terminated"
    assert "ops" in terminated["message"]


async def test_a_timed_out_child_is_reported_to_its_parent(w: Worker) -> None:
    # The child's run timeout is enforced by the timeout loop like any run's.
    parent_run, child = await _parent_with_child(w, "par-timeout", run_timeout_seconds=1)
    child_view = (await w.history(child["workflow_id"], child["run_id"]))[0]["payload"]
    assert child_view["run_timeout_seconds"] == 1
    with trio.fail_after(15):
        while True:  # the parent's task arrives once the child has timed out
            r = await w.wc.post(
                "/api/worker/workflow-tasks/poll",
                json={"worker_id": "w1", "task_queue": Q, "timeout_seconds": 2},
            )
            if r.json()["task"] is not None:
                break
    assert r.json()["task"]["run_id"] == parent_run
    failed = payload_of(await w.history("par-timeout", parent_run), "ChildRunFailed")
    assert failed["timeout_kind"] == "run"
    assert failed["child_status"] == "failed"
