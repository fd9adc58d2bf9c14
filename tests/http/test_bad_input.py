"""Bodies and paths no store can hold are refused at the edge, never a 500.

* JSON nested deeper than ``wire.MAX_JSON_DEPTH`` (64): ``400 malformed_json``
  with ``max_depth``, from the body gate. Nesting of 255-1024 levels used to
  parse, then break ``orjson.dumps`` (a response or the jsonb codec) with a 500.
* NUL (``\\u0000``) in any string or key of a body: ``422 validation_failed``
  keyed by the field's dotted path. PostgreSQL text and jsonb cannot hold it;
  it used to reach the database and fail there with a 500.
* NUL in a worker-plane path id: the route's own 404 (no row can have that
  id), like the control plane's workflow, run and namespace paths.
* Lone surrogates (``\\ud800``): ``400 malformed_json`` from the parser.
* Payload blobs may nest deeper (up to ``payloads.MAX_DEPTH``): the JSON views
  of such values (describe, query and update results) are null, not a 500.

Each refusal is followed by ordinary requests, to show the server goes on
answering.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
import trio

from dwtrio import payloads, wire

from conftest import StartServer
from http_clients import Clients

TOKEN = "t"
Q = "bad-q"
LIMIT = wire.MAX_JSON_DEPTH
#: Deeper than orjson.dumps can go (about 254), shallower than orjson.loads' limit (1024).
DEEP = 300
ARGS = {"codec": "avro", "blob": payloads.encode(["world"])}
REGISTER = {
    "worker_id": "w1",
    "task_queue": Q,
    "runtime": "python",
    "supported_workflow_types": ["greeter"],
    "supported_activity_types": ["greet"],
}
POLL = {"worker_id": "w1", "task_queue": Q, "timeout_seconds": 0}
START = {"workflow_id": "wf-ok", "workflow_type": "greeter", "task_queue": Q, "input": ["world"]}


def nested(levels: int, leaf: Any = 1) -> Any:
    """An object ``levels`` deep: ``nested(2) == {"a": {"a": 1}}``."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


@attrs.define
class Harness(Clients):
    #: The leased tasks a case needs: "wf" (workflow task), "act" (activity task).
    tasks: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    async def wpost(self, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        r = await self.wc.post(path, json=body)
        assert r.status_code == status, r.text
        return r.json()  # type: ignore[no-any-return]

    async def lease_workflow_task(self) -> dict[str, Any]:
        await self.start_workflow("wf-bad", "greeter", Q, ["world"])
        body = await self.wpost("/api/worker/workflow-tasks/poll", {**POLL, "timeout_seconds": 5})
        assert body["task"] is not None
        self.tasks["wf"] = body["task"]
        return body["task"]  # type: ignore[no-any-return]

    async def lease_activity_task(self) -> None:
        task = await self.lease_workflow_task()
        command = {
            "type": "schedule_activity",
            "activity_type": "greet",
            "queue": Q,
            "arguments": ARGS,
        }
        await self.complete(task, [command])
        body = await self.wpost("/api/worker/activity-tasks/poll", {**POLL, "timeout_seconds": 5})
        assert body["task"] is not None
        self.tasks["act"] = body["task"]

    async def still_serves(self) -> None:
        """Ordinary requests on both planes, on the same connections, still work."""
        r = await self.cc.get("/api/namespaces")
        assert r.status_code == 200, r.text
        await self.wpost("/api/worker/heartbeat", {"worker_id": "w1"})
        r = await self.cc.post("/api/workflows", json=START)
        assert r.status_code in (200, 201), r.text


@pytest.fixture
async def h(start_server: StartServer) -> AsyncIterator[Harness]:
    async with Harness.open(start_server, TOKEN) as hh:
        await hh.wpost("/api/worker/register", REGISTER, 201)
        yield hh


def wf_lease(t: dict[str, Any]) -> dict[str, Any]:
    return {"lease_owner": t["lease_owner"], "workflow_task_attempt": t["workflow_task_attempt"]}


def act_lease(t: dict[str, Any]) -> dict[str, Any]:
    return {"activity_attempt_id": t["activity_attempt_id"], "lease_owner": t["lease_owner"]}


Body = Callable[[dict[str, dict[str, Any]]], Any]


@attrs.frozen
class Case:
    id: str
    method: str
    #: May name ``{wf}`` / ``{act}``: the leased task's id.
    path: str
    #: The JSON body (built from the leased tasks), or raw bytes sent as is.
    body: Body | bytes | None
    status: int
    reason: str
    #: For a 422: the one key of its errors map.
    field: str | None = None
    #: "wf" or "act": lease that task first.
    needs: str | None = None

    def param(self) -> Any:
        return pytest.param(self, id=self.id)


def fixed(body: Any) -> Body:
    return lambda _t: body


def nul(
    path: str, method: str, route: str, body: Body, field: str, needs: str | None = None
) -> Case:
    return Case(f"nul-{path}", method, route, body, 422, "validation_failed", field, needs)


def deep(path: str, method: str, route: str, body: Body, needs: str | None = None) -> Case:
    return Case(f"deep-{path}", method, route, body, 400, "malformed_json", None, needs)


WF = "/api/worker/workflow-tasks"
ACT = "/api/worker/activity-tasks"
QRY = "/api/worker/query-tasks"
FAIL_WF = {"type": "fail_workflow", "message": "boom"}

CASES = [
    # --- NUL in worker-plane bodies: 422 on the field's path ---------------------------
    nul(
        "register.worker_id",
        "POST",
        "/api/worker/register",
        fixed({**REGISTER, "worker_id": "w\x00"}),
        "worker_id",
    ),
    nul(
        "register.task_queue",
        "POST",
        "/api/worker/register",
        fixed({**REGISTER, "task_queue": "q\x00"}),
        "task_queue",
    ),
    nul(
        "register.supported_workflow_types",
        "POST",
        "/api/worker/register",
        fixed({**REGISTER, "supported_workflow_types": ["greeter", "g\x00"]}),
        "supported_workflow_types.1",
    ),
    nul(
        "register.supported_activity_types",
        "POST",
        "/api/worker/register",
        fixed({**REGISTER, "supported_activity_types": ["\x00"]}),
        "supported_activity_types.0",
    ),
    nul(
        "register.task_slots",
        "POST",
        "/api/worker/register",
        fixed({**REGISTER, "task_slots": {"workflow_available": 1, "x": {"y": "\x00"}}}),
        "task_slots.x.y",
    ),
    nul(
        "register.process_metrics-key",
        "POST",
        "/api/worker/register",
        fixed({**REGISTER, "process_metrics": {"rss\x00": 1}}),
        "process_metrics",
    ),
    nul(
        "heartbeat.worker_id",
        "POST",
        "/api/worker/heartbeat",
        fixed({"worker_id": "w1\x00"}),
        "worker_id",
    ),
    nul(
        "heartbeat.task_slots",
        "POST",
        "/api/worker/heartbeat",
        fixed({"worker_id": "w1", "task_slots": {"s": ["\x00"]}}),
        "task_slots.s.0",
    ),
    nul(
        "wf-poll.worker_id", "POST", f"{WF}/poll", fixed({**POLL, "worker_id": "\x00"}), "worker_id"
    ),
    nul(
        "wf-poll.task_queue",
        "POST",
        f"{WF}/poll",
        fixed({**POLL, "task_queue": "q\x00"}),
        "task_queue",
    ),
    nul(
        "wf-poll.poll_request_id",
        "POST",
        f"{WF}/poll",
        fixed({**POLL, "poll_request_id": "p\x00"}),
        "poll_request_id",
    ),
    nul(
        "act-poll.task_queue",
        "POST",
        f"{ACT}/poll",
        fixed({**POLL, "task_queue": "\x00"}),
        "task_queue",
    ),
    nul(
        "act-poll.poll_request_id",
        "POST",
        f"{ACT}/poll",
        fixed({**POLL, "poll_request_id": "\x00"}),
        "poll_request_id",
    ),
    nul(
        "query-poll.worker_id",
        "POST",
        f"{QRY}/poll",
        fixed({**POLL, "worker_id": "w\x00"}),
        "worker_id",
    ),
    nul(
        "query-poll.task_queue",
        "POST",
        f"{QRY}/poll",
        fixed({**POLL, "task_queue": "\x00"}),
        "task_queue",
    ),
    nul(
        "wf-complete.lease_owner",
        "POST",
        WF + "/{wf}/complete",
        lambda t: {**wf_lease(t["wf"]), "lease_owner": "w1\x00", "commands": []},
        "lease_owner",
        "wf",
    ),
    nul(
        "wf-complete.activity_type",
        "POST",
        WF + "/{wf}/complete",
        lambda t: {
            **wf_lease(t["wf"]),
            "commands": [
                {
                    "type": "schedule_activity",
                    "activity_type": "g\x00",
                    "queue": Q,
                    "arguments": ARGS,
                }
            ],
        },
        "commands.0.activity_type",
        "wf",
    ),
    nul(
        "wf-complete.fail_workflow.exception",
        "POST",
        WF + "/{wf}/complete",
        lambda t: {
            **wf_lease(t["wf"]),
            "commands": [{**FAIL_WF, "exception": {"message": "\x00"}}],
        },
        "commands.0.exception.message",
        "wf",
    ),
    nul(
        "wf-fail.failure",
        "POST",
        WF + "/{wf}/fail",
        lambda t: {**wf_lease(t["wf"]), "failure": {"message": "bad\x00"}},
        "failure.message",
        "wf",
    ),
    nul(
        "wf-heartbeat.lease_owner",
        "POST",
        WF + "/{wf}/heartbeat",
        lambda t: {**wf_lease(t["wf"]), "lease_owner": "\x00"},
        "lease_owner",
        "wf",
    ),
    nul(
        "wf-history.page_token",
        "POST",
        WF + "/{wf}/history",
        lambda t: {**wf_lease(t["wf"]), "next_history_page_token": "\x00"},
        "next_history_page_token",
        "wf",
    ),
    nul(
        "act-complete.activity_attempt_id",
        "POST",
        ACT + "/{act}/complete",
        lambda t: {**act_lease(t["act"]), "activity_attempt_id": "a\x00", "result": ARGS},
        "activity_attempt_id",
        "act",
    ),
    nul(
        "act-fail.failure",
        "POST",
        ACT + "/{act}/fail",
        lambda t: {**act_lease(t["act"]), "failure": {"message": "m", "type": "E\x00"}},
        "failure.type",
        "act",
    ),
    nul(
        "act-heartbeat.details",
        "POST",
        ACT + "/{act}/heartbeat",
        lambda t: {**act_lease(t["act"]), "details": {"progress": "\x00"}},
        "details.progress",
        "act",
    ),
    nul(
        "query-complete.result",
        "POST",
        f"{QRY}/qt-1/complete",
        fixed({"lease_owner": "w1", "query_task_attempt": 1, "result": {"k": "\x00"}}),
        "result.k",
    ),
    # --- NUL in control-plane bodies ---------------------------------------------------
    nul(
        "namespace-create.description",
        "POST",
        "/api/namespaces",
        fixed({"name": "billing", "description": "d\x00"}),
        "description",
    ),
    nul(
        "namespace-update.description",
        "PUT",
        "/api/namespaces/default",
        fixed({"description": "\x00"}),
        "description",
    ),
    nul(
        "start.memo",
        "POST",
        "/api/workflows",
        fixed({**START, "memo": {"k": ["ok", "\x00"]}}),
        "memo.k.1",
    ),
    nul(
        "start.search_attributes",
        "POST",
        "/api/workflows",
        fixed({**START, "search_attributes": {"Key": "\x00"}}),
        "search_attributes.Key",
    ),
    nul("start.input", "POST", "/api/workflows", fixed({**START, "input": ["a\x00"]}), "input.0"),
    nul(
        "signal.input",
        "POST",
        "/api/workflows/wf-bad/signal/go",
        fixed({"input": ["\x00"]}),
        "input.0",
        "wf",
    ),
    # --- NUL in a path id: the route's own 404 ------------------------------------------
    Case(
        "nul-path-wf-task",
        "POST",
        f"{WF}/t%00/complete",
        fixed({"lease_owner": "w1", "workflow_task_attempt": 1}),
        404,
        "task_not_found",
    ),
    Case(
        "nul-path-wf-heartbeat",
        "POST",
        WF + "/{wf}%00/heartbeat",
        lambda t: wf_lease(t["wf"]),
        404,
        "task_not_found",
        needs="wf",
    ),
    Case(
        "nul-path-act-task",
        "POST",
        ACT + "/{act}%00/heartbeat",
        lambda t: act_lease(t["act"]),
        404,
        "task_not_found",
        needs="act",
    ),
    Case(
        "nul-path-query-task",
        "POST",
        f"{QRY}/q%00/fail",
        fixed({"lease_owner": "w1", "query_task_attempt": 1}),
        404,
        "query_task_not_found",
    ),
    Case(
        "nul-path-registration",
        "DELETE",
        "/api/worker/registrations/w1%00",
        None,
        404,
        "worker_not_found",
    ),
    Case(
        "nul-path-fenced-registration",
        "POST",
        "/api/worker/registrations/w1%00/deregister",
        fixed({"registration_token": "a" * 32}),
        404,
        "worker_not_found",  # the plane's guard: no row can hold a NUL
    ),
    Case(
        "nul-path-namespace", "GET", "/api/namespaces/de%00fault", None, 404, "namespace_not_found"
    ),
    Case(
        "nul-namespace-param",
        "POST",
        "/api/worker/register?namespace=a%00",
        fixed(REGISTER),
        404,
        "namespace_not_found",
    ),
    # --- nesting beyond the limit: 400 malformed_json --------------------------------------
    deep(
        "register.task_slots",
        "POST",
        "/api/worker/register",
        fixed({**REGISTER, "task_slots": nested(DEEP)}),
    ),
    deep(
        "heartbeat.task_slots",
        "POST",
        "/api/worker/heartbeat",
        fixed({"worker_id": "w1", "task_slots": nested(DEEP)}),
    ),
    deep(
        "heartbeat.task_slots-limit+1",
        "POST",
        "/api/worker/heartbeat",
        fixed({"worker_id": "w1", "task_slots": nested(LIMIT)}),  # the body is one more level
    ),
    deep("wf-poll", "POST", f"{WF}/poll", fixed({**POLL, "x": nested(DEEP)})),
    deep(
        "wf-complete.fail_workflow.exception",
        "POST",
        WF + "/{wf}/complete",
        lambda t: {**wf_lease(t["wf"]), "commands": [{**FAIL_WF, "exception": nested(DEEP)}]},
        "wf",
    ),
    deep(
        "act-heartbeat.details",
        "POST",
        ACT + "/{act}/heartbeat",
        lambda t: {**act_lease(t["act"]), "details": nested(DEEP)},
        "act",
    ),
    deep("start.memo", "POST", "/api/workflows", fixed({**START, "memo": {"k": nested(DEEP)}})),
    deep(
        "start.search_attributes",
        "POST",
        "/api/workflows",
        fixed({**START, "search_attributes": nested(DEEP)}),
    ),
    deep(
        "namespace-create", "POST", "/api/namespaces", fixed({"name": "billing", "x": nested(DEEP)})
    ),
    deep("register-beyond-orjson", "POST", "/api/worker/register", b"[" * 2000 + b"]" * 2000),
    deep("start-beyond-orjson", "POST", "/api/workflows", b"[" * 2000 + b"]" * 2000),
    # --- lone surrogates: the parser refuses them ------------------------------------------
    Case(
        "surrogate-register.worker_id",
        "POST",
        "/api/worker/register",
        b'{"worker_id": "\\ud800", "task_queue": "bad-q"}',
        400,
        "malformed_json",
    ),
    Case(
        "surrogate-start.memo",
        "POST",
        "/api/workflows",
        b'{"workflow_type": "greeter", "memo": {"k": "\\udc00"}}',
        400,
        "malformed_json",
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
async def test_bad_input_is_refused(h: Harness, case: Case) -> None:
    if case.needs == "wf":
        await h.lease_workflow_task()
    elif case.needs == "act":
        await h.lease_activity_task()
    path = case.path.format(**{k: t["task_id"] for k, t in h.tasks.items()})
    client = h.wc if path.startswith("/api/worker/") else h.cc
    content = (
        case.body
        if isinstance(case.body, bytes)
        else None
        if case.body is None
        else json.dumps(case.body(h.tasks)).encode()  # orjson cannot write 300 levels
    )
    headers = {"Content-Type": "application/json"} if content is not None else {}
    r = await client.request(case.method, path, content=content, headers=headers)
    assert r.status_code == case.status, (r.status_code, r.text[:300])
    body = r.json()
    assert body["reason"] == case.reason, body
    assert isinstance(body["message"], str) and body["message"]
    if client is h.wc:
        assert body["protocol_version"] == "1.20" and body["error"] == body["message"]
    if case.reason == "validation_failed":
        assert (
            body["errors"] == body["validation_errors"] == {case.field: body["errors"][case.field]}
        )
        assert "NUL" in body["errors"][case.field][0]
    if case.id.startswith("deep-"):
        assert body["max_depth"] == LIMIT, body
        assert body["json_error"].startswith("depth limit exceeded"), body
    await h.still_serves()


async def test_depth_at_the_limit_is_accepted(h: Harness) -> None:
    """A body exactly MAX_JSON_DEPTH deep passes, and what it stored reads back."""
    body = {"worker_id": "w1", "task_slots": nested(LIMIT - 1)}
    await h.wpost("/api/worker/heartbeat", body)
    r = await h.cc.post("/api/workflows", json={**START, "memo": {"k": nested(LIMIT - 2)}})
    assert r.status_code == 201, r.text
    assert (await h.describe("wf-ok"))["memo"] == {"k": nested(LIMIT - 2)}


async def test_deep_payloads_are_stored_but_not_shown(h: Harness) -> None:
    """A payload blob may nest deeper than a JSON body (payloads.MAX_DEPTH): stored and
    handed to workers as sent, but its JSON view is null instead of a 500."""
    deep_input = {"codec": "avro", "blob": payloads.encode([nested(DEEP)])}
    r = await h.cc.post(
        "/api/workflows", json={**START, "workflow_id": "wf-deep", "input": deep_input}
    )
    assert r.status_code == 201, r.text
    described = await h.describe("wf-deep")
    assert described["input"] is None
    body = await h.wpost("/api/worker/workflow-tasks/poll", {**POLL, "timeout_seconds": 5})
    assert body["task"]["arguments"]["blob"] == deep_input["blob"]
    await h.still_serves()


async def test_deep_memo_upsert_is_refused(h: Harness) -> None:
    """upsert_memo entries arrive as an Avro map: deeper than the limit is a 422, not a 500."""
    task = await h.lease_workflow_task()
    entries = {"codec": "avro", "blob": payloads.encode({"k": nested(DEEP)})}
    body = await h.complete(task, [{"type": "upsert_memo", "entries": entries}], status=422)
    assert body["reason"] == "validation_failed"
    assert list(body["errors"]) == ["commands.0.entries"], body
    await h.still_serves()


@pytest.mark.parametrize(
    "value", [pytest.param(nested(DEEP), id="deep"), pytest.param("a\x00b", id="nul")]
)
async def test_query_answers_json_cannot_hold(h: Harness, value: Any) -> None:
    """A worker's query answer whose value JSON (or jsonb) cannot hold is recorded, and
    the caller gets it as ``result_envelope`` only (``result`` null), not a 500."""
    await h.lease_workflow_task()
    envelope = {"codec": "avro", "blob": payloads.encode(value)}
    answered: list[int] = []

    async def worker() -> None:
        body = await h.wpost("/api/worker/query-tasks/poll", {**POLL, "timeout_seconds": 5})
        task = body["task"]
        assert task is not None
        r = await h.wc.post(
            f"/api/worker/query-tasks/{task['query_task_id']}/complete",
            json={
                "lease_owner": task["lease_owner"],
                "query_task_attempt": task["query_task_attempt"],
                "result_envelope": envelope,
            },
        )
        answered.append(r.status_code)

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker)
            r = await h.cc.post("/api/workflows/wf-bad/query/count", json={})
    assert answered == [200]
    assert r.status_code == 200, r.text
    assert r.json()["result"] is None
    assert r.json()["result_envelope"] == envelope
    await h.still_serves()


def test_checks_find_every_nul_and_depth() -> None:
    assert wire.nul_errors({"a": ["x", "\x00"], "b\x00": 1, "c": {"d": "\x00"}}) == {
        "a.1": ["The a.1 field may not contain NUL characters."],
        "body": ["The keys of the body field may not contain NUL characters."],
        "c.d": ["The c.d field may not contain NUL characters."],
    }
    assert wire.nul_errors("\x00") == {"body": ["The body field may not contain NUL characters."]}
    # The raw bytes let a body without the escape skip the walk.
    assert wire.nul_errors({"a": "\x00"}, b'{"a": "x"}') == {}
    # An escaped backslash before u0000 is text, not NUL: the walk finds nothing.
    assert wire.nul_errors(json.loads(b'{"a": "\\\\u0000"}'), b'{"a": "\\\\u0000"}') == {}
    assert wire.too_deep(nested(LIMIT)) is False
    assert wire.too_deep(nested(LIMIT + 1)) is True
    assert wire.too_deep([[[]]], limit=3) is False and wire.too_deep([[[[]]]], limit=3) is True
    assert wire.too_deep([[], {"a": [1, {"b": []}]}], limit=5) is False
    assert wire.too_deep([[], {"a": [1, {"b": [[]]}]}], limit=5) is True
    assert wire.too_deep("x") is False
    assert wire.too_deep(nested(LIMIT + 1), limit=LIMIT + 1) is False
