"""Workflow updates over real HTTP, with a hand-driven worker.

Contract: control-plane.md §5.9 (route, wait stages, statuses, request_id),
commands.md §5.9 (update tasks, complete_update / fail_update, follow-up
task), history-events.md §4.5 (UpdateAccepted / UpdateApplied / UpdateCompleted).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import pytest
import trio

from dwtrio import payloads

from conftest import StartServer
from http_clients import Clients

TOKEN = "t"
Q = "uq"


def envelope(value: Any) -> dict[str, str]:
    return {"codec": "avro", "blob": payloads.encode(value)}


SCHEDULE = {"type": "schedule_activity", "activity_type": "hold", "queue": Q}


@attrs.define
class Harness(Clients):
    async def start(self, workflow_id: str = "u1") -> str:
        r = await self.cc.post(
            "/api/workflows",
            json={"workflow_id": workflow_id, "workflow_type": "counter", "task_queue": Q},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["run_id"])

    async def task(self, timeout: int = 5) -> dict[str, Any] | None:
        r = await self.wc.post(
            "/api/worker/workflow-tasks/poll",
            json={"worker_id": "w1", "task_queue": Q, "timeout_seconds": timeout},
        )
        assert r.status_code == 200, r.text
        return r.json()["task"]  # type: ignore[no-any-return]

    async def waiting(self, workflow_id: str = "u1") -> str:
        """Start a workflow and park it on an activity: no workflow task is open after."""
        run_id = await self.start(workflow_id)
        task = await self.task()
        assert task is not None
        await self.complete(task, [SCHEDULE])
        return run_id

    async def update(
        self, name: str = "add", workflow_id: str = "u1", path: str = "", **body: Any
    ) -> httpx.Response:
        return await self.cc.post(f"/api/workflows/{workflow_id}{path}/update/{name}", json=body)

    async def events(self, run_id: str, workflow_id: str = "u1") -> list[dict[str, Any]]:
        r = await self.cc.get(f"/api/workflows/{workflow_id}/runs/{run_id}/history")
        assert r.status_code == 200, r.text
        return r.json()["events"]  # type: ignore[no-any-return]

    async def types(self, run_id: str) -> list[str]:
        return [e["event_type"] for e in await self.events(run_id)]


@pytest.fixture
async def h(start_server: StartServer) -> AsyncIterator[Harness]:
    async with Harness.open(start_server, TOKEN) as hh:
        yield hh


async def test_accepted_stage_then_update_task_and_follow_up(h: Harness) -> None:
    run_id = await h.waiting()
    r = await h.update(input=[10], request_id="r-1")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["update_status"] == "accepted" and body["outcome"] is None
    assert body["wait_for"] == "accepted" and body["wait_timed_out"] is False
    assert body["update_name"] == "add" and body["command_status"] == "accepted"
    assert body["request_id"] == "r-1" and body["retained"] is False
    update_id = body["update_id"]
    cp = body["control_plane"]
    assert cp["operation"] == "update" and cp["update_id"] == update_id
    assert cp["operation_name"] == "add" and "outcome" in cp
    accepted = (await h.events(run_id))[-1]
    assert accepted["event_type"] == "UpdateAccepted"
    assert accepted["payload"]["update_id"] == update_id
    assert accepted["payload"]["update_name"] == "add"
    assert payloads.decode(accepted["payload"]["arguments"]["blob"]) == [10]

    task = await h.task()
    assert task is not None and task["workflow_update_id"] == update_id
    assert task["history_events"][-1]["event_type"] == "UpdateAccepted"
    done = await h.complete(
        task, [{"type": "complete_update", "update_id": update_id, "result": envelope(16)}]
    )
    assert done["run_status"] == "waiting"
    types = await h.types(run_id)
    assert types[-3:] == ["UpdateAccepted", "UpdateApplied", "UpdateCompleted"]
    applied, completed = (await h.events(run_id))[-2:]
    assert applied["payload"]["arguments"] == accepted["payload"]["arguments"]
    assert "sequence" not in applied["payload"]  # no open condition wait
    assert payloads.decode(completed["payload"]["result"]) == 16
    # The follow-up is an ordinary task, so the main workflow code can react.
    follow_up = await h.task()
    assert follow_up is not None and "workflow_update_id" not in follow_up
    # The retained receipt now shows the completed update.
    again = await h.update(input=[10], request_id="r-1")
    assert again.status_code == 200, again.text
    assert again.json()["update_id"] == update_id and again.json()["retained"] is True
    assert again.json()["update_status"] == "completed" and again.json()["result"] == 16


async def test_completed_stage_waits_for_the_handler(h: Harness) -> None:
    await h.waiting()
    answers: list[httpx.Response] = []

    async def caller() -> None:
        answers.append(await h.update(input=[10], wait_for="completed", wait_timeout_seconds=10))

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            task = await h.task()
            assert task is not None and answers == []
            await h.complete(
                task,
                [
                    {
                        "type": "complete_update",
                        "update_id": task["workflow_update_id"],
                        "result": envelope({"count": 16}),
                    }
                ],
            )
    r = answers[0]
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["update_status"] == "completed" and body["outcome"] == "update_completed"
    assert body["result"] == {"count": 16}
    assert payloads.decode(body["result_envelope"]["blob"]) == {"count": 16}
    assert body["wait_for"] == "completed" and body["wait_timeout_seconds"] == 10
    assert body["control_plane"]["update_status"] == "completed"


async def test_fail_update_answers_422_and_the_run_goes_on(h: Harness) -> None:
    run_id = await h.waiting()
    answers: list[httpx.Response] = []

    async def caller() -> None:
        answers.append(await h.update(input=[-1], wait_for="completed"))

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            task = await h.task()
            assert task is not None
            await h.complete(
                task,
                [
                    {
                        "type": "fail_update",
                        "update_id": task["workflow_update_id"],
                        "message": "update handler failed: negative not allowed",
                        "exception_type": "ValueError",
                        "exception_class": "builtins.ValueError",
                        "non_retryable": True,
                    }
                ],
            )
    r = answers[0]
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["update_status"] == "failed" and body["outcome"] == "update_failed"
    assert body["failure_message"] == "update handler failed: negative not allowed"
    assert body["failure_id"]
    types = await h.types(run_id)
    assert types[-2:] == ["UpdateAccepted", "UpdateCompleted"] and "UpdateApplied" not in types
    failed = (await h.events(run_id))[-1]["payload"]
    assert failed["exception_type"] == "ValueError" and failed["non_retryable"] is True
    r = await h.cc.get("/api/workflows/u1")
    assert r.json()["status"] == "waiting"
    follow_up = await h.task()
    assert follow_up is not None and "workflow_update_id" not in follow_up


async def test_wait_times_out_with_202(h: Harness) -> None:
    await h.waiting()
    began = trio.current_time()
    with trio.fail_after(10):
        r = await h.update(input=[1], wait_for="completed", wait_timeout_seconds=1)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["update_status"] == "accepted" and body["wait_timed_out"] is True
    assert body["outcome"] is None and body["wait_timeout_seconds"] == 1
    assert 0.9 <= trio.current_time() - began < 5


async def test_request_id_dedupe_and_conflict(h: Harness) -> None:
    run_id = await h.waiting()
    first = await h.update(input=[1], request_id="same")
    second = await h.update(input=[1], request_id="same")
    assert first.status_code == second.status_code == 202
    assert second.json()["update_id"] == first.json()["update_id"]
    assert second.json()["command_id"] == first.json()["command_id"]
    assert second.json()["retained"] is True
    assert (await h.types(run_id)).count("UpdateAccepted") == 1
    conflict = await h.update(input=[2], request_id="same")
    assert conflict.status_code == 409, conflict.text
    body = conflict.json()
    assert body["reason"] == "request_id_conflict"
    assert body["retained_command_type"] == "update"
    assert body["retained_command_id"] == first.json()["command_id"]
    assert "arguments" in body["conflict"]
    other_name = await h.update("sub", input=[1], request_id="same")
    assert other_name.status_code == 409


async def test_update_while_a_task_is_leased_is_queued_until_it_completes(h: Harness) -> None:
    run_id = await h.start()
    first = await h.task()
    assert first is not None
    r = await h.update(input=[1])
    assert r.status_code == 202
    update_id = r.json()["update_id"]
    assert await h.task(timeout=0) is None  # one open task per run
    await h.complete(first, [SCHEDULE])
    update_task = await h.task()
    assert update_task is not None and update_task["workflow_update_id"] == update_id
    await h.complete(
        update_task, [{"type": "complete_update", "update_id": update_id, "result": envelope(1)}]
    )
    follow_up = await h.task()
    assert follow_up is not None and "workflow_update_id" not in follow_up
    assert (await h.types(run_id))[-1] == "UpdateCompleted"


async def test_two_queued_updates_run_one_after_the_other(h: Harness) -> None:
    await h.start()
    first = await h.task()
    assert first is not None
    ids = [(await h.update(input=[i])).json()["update_id"] for i in (1, 2)]
    await h.complete(first, [SCHEDULE])
    for update_id in ids:
        task = await h.task()
        assert task is not None and task["workflow_update_id"] == update_id
        await h.complete(
            task, [{"type": "complete_update", "update_id": update_id, "result": envelope(0)}]
        )
    follow_up = await h.task()
    assert follow_up is not None and "workflow_update_id" not in follow_up
    assert await h.task(timeout=0) is None


async def test_update_commands_are_fenced_to_their_task(h: Harness) -> None:
    await h.waiting()
    update_id = (await h.update(input=[1])).json()["update_id"]
    task = await h.task()
    assert task is not None
    wrong = await h.complete(
        task, [{"type": "complete_update", "update_id": "other", "result": envelope(1)}], 409
    )
    assert wrong["reason"] == "invalid_commands"
    missing = await h.complete(task, [{"type": "fail_update"}], 422)
    assert missing["reason"] == "validation_failed"
    assert {"commands.0.update_id", "commands.0.message"} <= set(missing["errors"])
    await h.complete(
        task, [{"type": "complete_update", "update_id": update_id, "result": envelope(1)}]
    )
    follow_up = await h.task()
    assert follow_up is not None
    ordinary = await h.complete(
        follow_up, [{"type": "complete_update", "update_id": update_id, "result": None}], 409
    )
    assert ordinary["reason"] == "invalid_commands"


async def test_closing_the_run_fails_open_updates(h: Harness) -> None:
    run_id = await h.start()
    first = await h.task()
    assert first is not None
    answers: list[httpx.Response] = []

    async def caller() -> None:
        answers.append(await h.update(input=[1], wait_for="completed"))

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            while (await h.types(run_id))[-1] != "UpdateAccepted":
                await trio.sleep(0.02)
            await h.complete(first, [{"type": "complete_workflow", "result": envelope("done")}])
    assert answers[0].status_code == 422, answers[0].text
    assert answers[0].json()["update_status"] == "failed"
    assert "closed" in answers[0].json()["failure_message"]
    r = await h.update(input=[1])
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["reason"] == "run_not_active" and body["update_status"] == "rejected"
    assert body["outcome"] == "rejected_not_active"


async def test_update_refusals(h: Harness) -> None:
    r = await h.update(workflow_id="missing")
    assert r.status_code == 404 and r.json()["reason"] == "instance_not_found"
    run_id = await h.waiting()
    r = await h.update(wait_policy="completed")
    assert r.status_code == 422 and "wait_policy" in r.json()["errors"]
    r = await h.update(wait_for="soon")
    assert r.status_code == 422 and "wait_for" in r.json()["errors"]
    r = await h.update(wait_for="completed", wait_timeout_seconds=0)
    assert r.status_code == 422 and "wait_timeout_seconds" in r.json()["errors"]
    r = await h.update("bad%01name")
    assert r.status_code == 422 and "update_name" in r.json()["errors"]
    r = await h.update(path="/runs/other-run")
    assert r.status_code == 409 and r.json()["reason"] == "historical_run_command_rejected"
    r = await h.update(path=f"/runs/{run_id}", input=[3])
    assert r.status_code == 202 and r.json()["target_scope"] == "run"
    assert r.json()["run_id"] == run_id


async def test_update_names_may_contain_slashes(h: Harness) -> None:
    await h.waiting("u-slash")
    r = await h.update(name="a%2Fb", workflow_id="u-slash", input=[1])
    assert r.status_code == 202, r.text
    assert r.json()["update_name"] == "a/b"


async def test_an_update_task_must_answer_its_update(h: Harness) -> None:
    """Otherwise the update would stay open and get a new task at once, forever."""
    await h.waiting("u-silent")
    assert (await h.update(workflow_id="u-silent", input=[1])).status_code == 202
    task = await h.task()
    assert task is not None and task["workflow_update_id"]
    r = await h.wc.post(
        f"/api/worker/workflow-tasks/{task['task_id']}/complete",
        json={
            "lease_owner": task["lease_owner"],
            "workflow_task_attempt": task["workflow_task_attempt"],
            "commands": [{"type": "record_side_effect", "result": envelope(1)}],
        },
    )
    assert r.status_code == 409, r.text
    assert r.json()["reason"] == "invalid_commands"
    await h.complete(
        task,
        [
            {
                "type": "complete_update",
                "update_id": task["workflow_update_id"],
                "result": envelope(2),
            }
        ],
    )
