"""Worker-routed queries over real HTTP, with a hand-driven worker.

Contract: control-plane.md §5.8 (the query route, its errors and timeout),
worker-plane.md §10 (query-task poll, complete, fail, fencing). Query tasks
are ephemeral: they never write history and vanish once answered.
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
Q = "qq"
POLL = "/api/worker/query-tasks/poll"


@attrs.define
class Harness(Clients):
    async def start(self, workflow_id: str, workflow_type: str = "counter") -> str:
        return str((await self.start_workflow(workflow_id, workflow_type, Q, [5]))["run_id"])

    async def register(self, worker: str = "w1", types: list[str] | None = None) -> None:
        r = await self.wc.post(
            "/api/worker/register",
            json={
                "worker_id": worker,
                "task_queue": Q,
                "runtime": "python",
                "supported_workflow_types": types or ["counter"],
            },
        )
        assert r.status_code == 201, r.text

    async def poll(self, worker: str = "w1", timeout: int = 5) -> dict[str, Any] | None:
        r = await self.wc.post(
            POLL, json={"worker_id": worker, "task_queue": Q, "timeout_seconds": timeout}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["protocol_version"] == "1.20"
        return body["task"]  # type: ignore[no-any-return]

    async def answer(
        self, task: dict[str, Any], action: str, status: int = 200, **fields: Any
    ) -> dict[str, Any]:
        body = {
            "lease_owner": task["lease_owner"],
            "query_task_attempt": task["query_task_attempt"],
            **fields,
        }
        r = await self.wc.post(
            f"/api/worker/query-tasks/{task['query_task_id']}/{action}", json=body
        )
        assert r.status_code == status, r.text
        return r.json()  # type: ignore[no-any-return]

    async def close_run(self, workflow_id: str, command: dict[str, Any]) -> None:
        """Start a run and let its first workflow task close it with ``command``."""
        await self.start(workflow_id)
        await self.register()
        r = await self.wc.post(
            "/api/worker/workflow-tasks/poll",
            json={"worker_id": "w1", "task_queue": Q, "timeout_seconds": 5},
        )
        task = r.json()["task"]
        r = await self.wc.post(
            f"/api/worker/workflow-tasks/{task['task_id']}/complete",
            json={
                "lease_owner": "w1",
                "workflow_task_attempt": task["workflow_task_attempt"],
                "commands": [command],
            },
        )
        assert r.status_code == 200, r.text

    async def query(
        self, workflow_id: str, name: str, body: dict[str, Any] | None = None, path: str = ""
    ) -> httpx.Response:
        return await self.cc.post(
            f"/api/workflows/{workflow_id}{path}/query/{name}", json=body or {}
        )


@pytest.fixture
async def h(start_server: StartServer) -> AsyncIterator[Harness]:
    async with Harness.open(start_server, TOKEN, query_task_timeout_s=5) as hh:
        yield hh


async def ask_and_answer(
    h: Harness, answer: Any, workflow_id: str = "q1", **query: Any
) -> tuple[httpx.Response, dict[str, Any]]:
    """Run a query while a worker polls its task and answers it with ``answer(task)``."""
    seen: dict[str, Any] = {}

    async def worker() -> None:
        task = await h.poll()
        assert task is not None
        seen.update(task)
        await answer(task)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker)
            response = await h.query(workflow_id, "count", **query)
    return response, seen


async def test_query_round_trip_returns_the_workers_answer(h: Harness) -> None:
    run_id = await h.start("q1")
    await h.register()
    result = {"count": 7, "items": ["a"]}

    async def complete(task: dict[str, Any]) -> None:
        body = await h.answer(
            task,
            "complete",
            result=result,
            result_envelope={"codec": "avro", "blob": payloads.encode(result)},
        )
        assert body["outcome"] == "completed" and body["reason"] is None
        assert body["query_task_id"] == task["query_task_id"]

    r, task = await ask_and_answer(h, complete, body={"input": ["x", 2]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["result"] == result
    assert body["result_envelope"]["codec"] == "avro"
    assert payloads.decode(body["result_envelope"]["blob"]) == result
    assert body["query_name"] == "count" and body["run_id"] == run_id
    assert body["target_scope"] == "instance" and body["reason"] is None
    cp = body["control_plane"]
    assert cp["operation"] == "query" and cp["operation_name"] == "count"
    assert cp["result"] == result
    # What the SDK checks before running the query (worker-plane.md §10.1).
    assert task["query_task_attempt"] == 1 and task["lease_owner"] == "w1"
    assert task["task_queue"] == Q and task["namespace"] == "default"
    assert task["workflow_type"] == "counter" and task["run_id"] == run_id
    assert task["query_name"] == "count" and task["payload_codec"] == "avro"
    assert payloads.decode(task["query_arguments"]["blob"]) == ["x", 2]
    assert payloads.decode(task["workflow_arguments"]["blob"]) == [5]
    assert [e["event_type"] for e in task["history_events"]] == [
        "StartAccepted",
        "WorkflowStarted",
    ]
    assert task["lease_expires_at"].endswith("Z")
    # Ephemeral: no history written, and the answered task is gone.
    r = await h.cc.get(f"/api/workflows/q1/runs/{run_id}/history")
    assert [e["event_type"] for e in r.json()["events"]] == ["StartAccepted", "WorkflowStarted"]
    gone = await h.answer(task, "complete", 404, result_envelope={"codec": "avro", "blob": "AA=="})
    assert gone["reason"] == "query_task_not_found"


async def test_run_targeted_query_and_historical_run(h: Harness) -> None:
    run_id = await h.start("q1")
    await h.register()

    async def complete(task: dict[str, Any]) -> None:
        await h.answer(
            task, "complete", result_envelope={"codec": "avro", "blob": payloads.encode(1)}
        )

    r, _ = await ask_and_answer(h, complete, path=f"/runs/{run_id}")
    assert r.status_code == 200, r.text
    assert r.json()["target_scope"] == "run" and r.json()["result"] == 1
    r = await h.query("q1", "count", path="/runs/not-the-run")
    assert r.status_code == 409 and r.json()["reason"] == "historical_run_command_rejected"


@pytest.mark.parametrize(
    ("reason", "status"), [("rejected_unknown_query", 404), ("query_rejected", 409)]
)
async def test_worker_failure_is_relayed(h: Harness, reason: str, status: int) -> None:
    await h.start("q1")
    await h.register()

    async def fail(task: dict[str, Any]) -> None:
        body = await h.answer(
            task, "fail", failure={"message": "unknown query 'count'", "reason": reason}
        )
        assert body["outcome"] == "failed"

    r, _ = await ask_and_answer(h, fail)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["reason"] == reason and body["message"] == "unknown query 'count'"
    assert body["query_name"] == "count" and body["result"] is None
    assert body["control_plane"]["operation"] == "query"


async def test_fencing_of_query_task_answers(h: Harness) -> None:
    await h.start("q1")
    await h.register()
    envelope = {"codec": "avro", "blob": payloads.encode("ok")}

    async def fenced(task: dict[str, Any]) -> None:
        wrong = {**task, "query_task_attempt": 2}
        assert (await h.answer(wrong, "complete", 409, result_envelope=envelope))[
            "reason"
        ] == "query_task_attempt_mismatch"
        other = {**task, "lease_owner": "w2"}
        assert (await h.answer(other, "complete", 409, result_envelope=envelope))[
            "reason"
        ] == "lease_owner_mismatch"
        missing = {**task, "query_task_id": "nope"}
        body = await h.answer(missing, "fail", 404, failure={})
        assert body["reason"] == "query_task_not_found" and body["protocol_version"] == "1.20"
        bad = await h.answer(task, "complete", 422, result_envelope={"codec": "json"})
        assert bad["reason"] == "validation_failed"
        await h.answer(task, "complete", result_envelope=envelope)

    r, _ = await ask_and_answer(h, fenced)
    assert r.status_code == 200 and r.json()["result"] == "ok"


async def test_nobody_answers_times_out_and_forgets_the_task(
    start_server: StartServer,
) -> None:
    async with Harness.open(start_server, TOKEN, query_task_timeout_s=1) as h:
        await h.start("q1")
        await h.register()
        began = trio.current_time()
        with trio.fail_after(10):
            r = await h.query("q1", "count")
        assert r.status_code == 504, r.text
        assert r.json()["reason"] == "query_worker_timeout"
        assert r.json()["control_plane"]["operation"] == "query"
        assert 0.9 <= trio.current_time() - began < 5
        assert await h.poll(timeout=0) is None  # the abandoned task is gone


async def test_a_task_leased_too_late_cannot_answer(start_server: StartServer) -> None:
    async with Harness.open(start_server, TOKEN, query_task_timeout_s=2) as h:
        await h.start("q1")
        await h.register()
        leased: list[dict[str, Any]] = []

        async def slow_worker() -> None:
            task = await h.poll()
            assert task is not None
            leased.append(task)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow_worker)
                r = await h.query("q1", "count")
        assert r.status_code == 504
        late = await h.answer(
            leased[0], "complete", 404, result_envelope={"codec": "avro", "blob": "AA=="}
        )
        assert late["reason"] == "query_task_not_found"


async def test_pending_query_cap_per_queue(start_server: StartServer) -> None:
    async with Harness.open(
        start_server, TOKEN, query_task_timeout_s=10, query_task_max_pending_per_queue=1
    ) as h:
        await h.start("q1")
        await h.register()
        answers: list[httpx.Response] = []

        async def ask() -> None:
            answers.append(await h.query("q1", "count"))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask)
                nursery.start_soon(ask)
                while not answers:  # one of the two is refused, the other waits
                    await trio.sleep(0.02)
                assert answers[0].status_code == 429, answers[0].text
                assert answers[0].json()["reason"] == "query_task_queue_full"
                task = await h.poll()
                assert task is not None
                await h.answer(
                    task, "complete", result_envelope={"codec": "avro", "blob": payloads.encode(3)}
                )
        assert answers[1].status_code == 200 and answers[1].json()["result"] == 3


async def test_query_refusals(h: Harness) -> None:
    r = await h.query("missing", "count")
    assert r.status_code == 404 and r.json()["reason"] == "instance_not_found"
    await h.start("q1")
    r = await h.query("q1", "count")  # nobody registered for the queue
    assert r.status_code == 409 and r.json()["reason"] == "query_worker_unavailable"
    await h.register(types=["other"])
    r = await h.query("q1", "count")
    assert r.status_code == 409 and r.json()["reason"] == "query_worker_unavailable"
    r = await h.query("q1", "bad%01name")
    assert r.status_code == 422 and "query_name" in r.json()["errors"]
    r = await h.query("q1", "count", body={"input": "not-a-list"})
    assert r.status_code == 422 and "input" in r.json()["errors"]


async def test_query_to_a_failed_run_is_refused(h: Harness) -> None:
    await h.close_run("q1", {"type": "fail_workflow", "message": "boom"})
    r = await h.query("q1", "count")
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["reason"] == "run_not_active" and body["run_status"] == "failed"
    assert body["is_terminal"] is True and body["control_plane"]["operation"] == "query"


async def test_query_to_a_completed_run_is_routed_with_its_full_history(h: Harness) -> None:
    await h.close_run("q1", {"type": "complete_workflow", "result": None})

    async def complete(task: dict[str, Any]) -> None:
        assert task["history_events"][-1]["event_type"] == "WorkflowCompleted"
        await h.answer(
            task, "complete", result_envelope={"codec": "avro", "blob": payloads.encode(9)}
        )

    r, _ = await ask_and_answer(h, complete)
    assert r.status_code == 200 and r.json()["result"] == 9, r.text


async def test_a_retried_poll_gets_the_same_query_task(h: Harness) -> None:
    await h.start("q1")
    await h.register()
    body = {"worker_id": "w1", "task_queue": Q, "timeout_seconds": 5, "poll_request_id": "p-1"}
    answers: list[httpx.Response] = []

    async def caller() -> None:
        answers.append(await h.query("q1", "count"))

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            first = (await h.wc.post(POLL, json=body)).json()["task"]
            again = (await h.wc.post(POLL, json={**body, "timeout_seconds": 0})).json()["task"]
            assert first is not None and again is not None
            assert again["query_task_id"] == first["query_task_id"]
            assert again["query_task_attempt"] == first["query_task_attempt"] == 1
            await h.answer(
                first, "complete", result_envelope={"codec": "avro", "blob": payloads.encode(None)}
            )
    assert answers[0].status_code == 200 and answers[0].json()["result"] is None
