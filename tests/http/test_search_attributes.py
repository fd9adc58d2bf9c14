"""The search-attribute registry over real HTTP, and the registered types it enforces.

Contract: control-plane.md §8 (routes, reasons, limit), §2.1 (version header),
§2.6 (201 create, 200 + JSON delete), §3.5 (role O, namespace-scoped); §5.1 and
commands.md §5.11 (values at start and by ``upsert_search_attributes``; a
workflow's bad upsert is a 422 on the completion, the SDK then fails the task).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest
import trio

from dwtrio.store import search_attributes as sa_store

from conftest import ADMIN_TOKEN, CP, WP, RunningServer, StartServer

ROUTE = "/api/search-attributes"
Q = "saq"
ARGS = {"codec": "avro", "blob": "wwHioz3/VYAiNwwCCgp3b3JsZAA="}  # ["world"]
SYSTEM = {
    "WorkflowType": "keyword",
    "WorkflowId": "keyword",
    "RunId": "keyword",
    "Status": "keyword",
    "StartTime": "datetime",
    "CloseTime": "datetime",
    "TaskQueue": "keyword",
    "BuildId": "keyword",
}
#: One registered attribute per type, with a value that fits and one that does not.
TYPED: dict[str, tuple[str, Any, Any]] = {
    "Kw": ("keyword", "gold", 7),
    "Txt": ("text", "free text", ["x"]),
    "Count": ("int", 3, "3"),
    "Price": ("double", 9.5, "9.5"),
    "Flag": ("bool", True, 1),
    "When": ("datetime", "2026-04-22T06:24:00.000000Z", "yesterday"),
    "Tags": ("keyword_list", ["a", "b"], ["a", 1]),
}


def body_of(
    r: httpx.Response, status: int, reason: str | None = None, *, envelope: bool = False
) -> dict[str, Any]:
    """A control-plane answer: status, version header, the envelope only on workflow routes."""
    assert r.status_code == status, r.text
    assert r.headers["X-Durable-Workflow-Control-Plane-Version"] == "2"
    body = r.json()
    assert ("control_plane" in body) is envelope, body
    if reason is not None:
        assert body["reason"] == reason, body
        assert isinstance(body["message"], str) and body["message"]
    return body  # type: ignore[no-any-return]


def in_namespace(namespace: str | None) -> dict[str, str]:
    return {} if namespace is None else {"X-Namespace": namespace}


@attrs.define
class Registry:
    """An operator (control plane), a worker (worker plane) and an admin client."""

    server: RunningServer
    op: httpx.AsyncClient
    wc: httpx.AsyncClient
    admin: httpx.AsyncClient

    async def registered(self, namespace: str | None = None) -> dict[str, Any]:
        """``GET /api/search-attributes`` (in ``namespace``, else the default one)."""
        r = await self.op.get(ROUTE, headers=in_namespace(namespace))
        return body_of(r, 200)

    async def create(
        self,
        name: Any,
        type_: Any,
        status: int = 201,
        reason: str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        body = {"name": name, "type": type_}
        r = await self.op.post(ROUTE, json=body, headers=in_namespace(namespace))
        return body_of(r, status, reason)

    async def delete(
        self, name: str, status: int = 200, reason: str | None = None
    ) -> dict[str, Any]:
        return body_of(await self.op.delete(f"{ROUTE}/{name}"), status, reason)

    async def start(self, workflow_id: str, search_attributes: Any) -> httpx.Response:
        body = {
            "workflow_id": workflow_id,
            "workflow_type": "tagged",
            "task_queue": Q,
            "input": ["world"],
            "search_attributes": search_attributes,
        }
        return await self.op.post("/api/workflows", json=body)

    async def describe(self, workflow_id: str) -> httpx.Response:
        return await self.op.get(f"/api/workflows/{workflow_id}")

    async def task(self) -> dict[str, Any]:
        with trio.fail_after(10):
            r = await self.wc.post(
                "/api/worker/workflow-tasks/poll",
                json={"worker_id": "w1", "task_queue": Q, "timeout_seconds": 2},
            )
        assert r.status_code == 200, r.text
        task = r.json()["task"]
        assert task is not None
        return task  # type: ignore[no-any-return]

    async def task_call(self, task: dict[str, Any], action: str, **fields: Any) -> httpx.Response:
        body = {
            "lease_owner": task["lease_owner"],
            "workflow_task_attempt": task["workflow_task_attempt"],
            **fields,
        }
        return await self.wc.post(
            f"/api/worker/workflow-tasks/{task['task_id']}/{action}", json=body
        )

    async def history_types(self, workflow_id: str, run_id: str) -> list[str]:
        r = await self.op.get(f"/api/workflows/{workflow_id}/runs/{run_id}/history")
        assert r.status_code == 200, r.text
        return [e["event_type"] for e in r.json()["events"]]


OpenRegistry = Callable[..., AbstractAsyncContextManager[Registry]]


@pytest.fixture
def open_registry(start_server: StartServer) -> OpenRegistry:
    """A dwtrio with worker, operator and admin tokens (and ``settings``), and its clients."""

    @asynccontextmanager
    async def open_(**settings: Any) -> AsyncIterator[Registry]:
        server = await start_server(worker_token="w", operator_token="o", **settings)
        async with (
            server.client("o", **CP) as op,
            server.client("w", **WP) as wc,
            server.client(ADMIN_TOKEN, **CP) as admin,
        ):
            yield Registry(server, op, wc, admin)

    return open_


@pytest.fixture
async def reg(open_registry: OpenRegistry) -> AsyncIterator[Registry]:
    async with open_registry() as registry:
        yield registry


async def register_all(reg: Registry) -> None:
    for name, (type_, _good, _bad) in TYPED.items():
        await reg.create(name, type_)


# --- the routes --------------------------------------------------------------------------
async def test_list_create_delete(reg: Registry) -> None:
    assert await reg.registered() == {"system_attributes": SYSTEM, "custom_attributes": {}}
    assert list((await reg.registered())["system_attributes"]) == list(SYSTEM)
    for name, type_ in [("Zeta", "keyword"), ("alpha", "int"), ("Beta_2", "keyword_list")]:
        body = await reg.create(name, type_)
        assert body == {"name": name, "type": type_, "outcome": "created"}
    listed = await reg.registered()
    assert listed["system_attributes"] == SYSTEM
    assert listed["custom_attributes"] == {
        "Beta_2": "keyword_list",
        "Zeta": "keyword",
        "alpha": "int",
    }
    assert list(listed["custom_attributes"]) == sorted(listed["custom_attributes"])
    assert await reg.delete("Zeta") == {"name": "Zeta", "outcome": "deleted"}
    assert (await reg.registered())["custom_attributes"] == {
        "Beta_2": "keyword_list",
        "alpha": "int",
    }
    # Deleted, the name is free again, with another type.
    await reg.create("Zeta", "bool")
    assert (await reg.registered())["custom_attributes"]["Zeta"] == "bool"


@pytest.mark.parametrize("name", list(SYSTEM))
async def test_system_names_are_reserved_and_cannot_be_deleted(reg: Registry, name: str) -> None:
    await reg.create(name, "keyword", 409, "name_reserved")
    await reg.delete(name, 409, "system_attribute")
    assert (await reg.registered())["custom_attributes"] == {}


async def test_an_existing_name_is_a_conflict_naming_its_type(reg: Registry) -> None:
    await reg.create("Region", "keyword")
    body = await reg.create("Region", "int", 409, "attribute_already_exists")
    assert body["name"] == "Region" and body["type"] == "keyword"
    # Names are case-sensitive.
    await reg.create("region", "int")
    assert (await reg.registered())["custom_attributes"] == {"Region": "keyword", "region": "int"}


async def test_deleting_an_unknown_name_is_not_found(reg: Registry) -> None:
    await reg.delete("Nope", 404, "attribute_not_found")
    await reg.delete("bad-name", 404, "attribute_not_found")
    await reg.delete("N" * 200, 404, "attribute_not_found")
    await reg.create("Once", "text")
    await reg.delete("Once")
    await reg.delete("Once", 404, "attribute_not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "keyword"}, "name"),
        ({"name": "", "type": "keyword"}, "name"),
        ({"name": "1bad", "type": "keyword"}, "name"),
        ({"name": "bad-name", "type": "keyword"}, "name"),
        ({"name": "_x", "type": "keyword"}, "name"),
        ({"name": "N" * 129, "type": "keyword"}, "name"),
        ({"name": 5, "type": "keyword"}, "name"),
        ({"name": "Ok"}, "type"),
        ({"name": "Ok", "type": "string"}, "type"),
        ({"name": "Ok", "type": "Keyword"}, "type"),
        ({"name": "Ok", "type": None}, "type"),
        ({"name": "Ok", "type": 1}, "type"),
    ],
)
async def test_create_validation(reg: Registry, body: dict[str, Any], field: str) -> None:
    out = body_of(await reg.op.post(ROUTE, json=body), 422, "validation_failed")
    assert field in out["errors"], out
    assert out["validation_errors"] == out["errors"]
    assert (await reg.registered())["custom_attributes"] == {}


async def test_every_type_can_be_registered_and_128_characters_is_fine(reg: Registry) -> None:
    await register_all(reg)
    await reg.create("N" * 128, "text")
    custom = (await reg.registered())["custom_attributes"]
    assert custom == {**{n: t for n, (t, _g, _b) in TYPED.items()}, "N" * 128: "text"}


async def test_the_limit_counts_the_namespace(open_registry: OpenRegistry) -> None:
    async with open_registry(max_search_attributes=2) as reg:
        await reg.create("A", "keyword")
        await reg.create("B", "int")
        body = await reg.create("C", "bool", 422, "search_attribute_limit_reached")
        assert body["limit"] == 2
        # A taken name is still reported as such at the limit.
        await reg.create("A", "int", 409, "attribute_already_exists")
        await reg.delete("A")
        await reg.create("C", "bool")
        assert (await reg.registered())["custom_attributes"] == {"B": "int", "C": "bool"}
        # Another namespace has its own count.
        r = await reg.admin.post("/api/namespaces", json={"name": "other"})
        assert r.status_code == 201, r.text
        await reg.create("A", "keyword", namespace="other")


async def test_concurrent_creates_never_pass_the_limit(open_registry: OpenRegistry) -> None:
    async with open_registry(max_search_attributes=3) as reg:
        statuses: list[int] = []

        async def create(i: int) -> None:
            r = await reg.op.post(ROUTE, json={"name": f"Attr{i}", "type": "keyword"})
            statuses.append(r.status_code)

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(create, i)
        assert sorted(statuses) == [201] * 3 + [422] * 5
        assert len((await reg.registered())["custom_attributes"]) == 3


async def test_registrations_are_per_namespace(reg: Registry) -> None:
    r = await reg.admin.post("/api/namespaces", json={"name": "billing"})
    assert r.status_code == 201, r.text
    other = {"X-Namespace": "billing"}
    await reg.create("Region", "keyword")
    await reg.create("Region", "int", namespace="billing")
    assert (await reg.registered("billing"))["custom_attributes"] == {"Region": "int"}
    assert (await reg.registered())["custom_attributes"] == {"Region": "keyword"}
    r = await reg.op.delete(f"{ROUTE}/Region", headers=other)
    body_of(r, 200)
    assert (await reg.registered())["custom_attributes"] == {"Region": "keyword"}
    # A start in each namespace is checked against its own registry.
    assert (await reg.start("wf-kw", {"Region": "eu"})).status_code == 201
    r = await reg.op.post(
        "/api/workflows",
        json={"workflow_type": "t", "search_attributes": {"Region": "eu"}},
        headers=other,
    )
    assert r.status_code == 201, r.text  # no longer registered there


async def test_gates(reg: Registry) -> None:
    ghost = {"X-Namespace": "ghost"}
    for method, path in [("GET", ROUTE), ("POST", ROUTE), ("DELETE", f"{ROUTE}/X")]:
        body = {"name": "X", "type": "keyword"} if method == "POST" else None
        async with reg.server.client("w", **CP) as worker:
            r = await worker.request(method, path, json=body)
        assert body_of(r, 403, "forbidden")["role"] == "worker"
        async with reg.server.client("o") as no_version:
            r = await no_version.request(method, path, json=body)
        body_of(r, 400, "missing_control_plane_version")
        r = await reg.op.request(method, path, json=body, headers=ghost)
        body_of(r, 404, "namespace_not_found")
        async with reg.server.client(ADMIN_TOKEN, **CP) as admin:
            r = await admin.request(method, path, json=body)
        assert r.status_code in (200, 201), r.text


# --- values at start -----------------------------------------------------------------------
async def test_start_values_must_fit_the_registered_types(reg: Registry) -> None:
    await register_all(reg)
    good = {name: value for name, (_t, value, _b) in TYPED.items()}
    r = await reg.start("wf-good", {**good, "Unregistered": {"any": ["json"]}, "Count2": 1.5})
    assert r.status_code == 201, r.text
    described = (await reg.describe("wf-good")).json()
    assert described["search_attributes"]["When"] == TYPED["When"][1]
    for i, (name, (type_, _good, bad)) in enumerate(TYPED.items()):
        workflow_id = f"wf-bad-{i}"
        r = await reg.start(workflow_id, {**good, name: bad})
        body = body_of(r, 422, "validation_failed", envelope=True)
        assert body["errors"] == {f"search_attributes.{name}": [body["message"]]}, body
        assert name in body["message"] and type_ in body["message"]
        assert body["control_plane"]["operation"] == "start"
        r = await reg.describe(workflow_id)
        assert r.status_code == 404 and r.json()["reason"] == "instance_not_found"


@pytest.mark.parametrize(
    ("type_", "fits", "misfits"),
    [
        ("keyword", ["", "x"], [1, True, ["x"], {"a": 1}]),
        ("int", [0, -(2**63), 2**63 - 1], [True, False, 1.0, 2**63, "1"]),
        ("double", [0, 1.25, -3], [True, "1.5"]),
        ("bool", [True, False], [0, 1, "true"]),
        (
            "datetime",
            ["2026-04-22T06:24:00Z", "2026-04-22T06:24:00+02:00", "2026-04-22T06:24:00.000000Z"],
            ["", "now", "2026-13-01T00:00:00Z", 1700000000],
        ),
        ("keyword_list", [[], ["a"]], ["a", [None], [1], [["a"]]]),
    ],
)
async def test_type_rules_at_start(
    reg: Registry, type_: str, fits: list[Any], misfits: list[Any]
) -> None:
    await reg.create("Attr", type_)
    for i, value in enumerate(fits):
        r = await reg.start(f"fit-{i}", {"Attr": value})
        assert r.status_code == 201, (value, r.text)
    for value in misfits:
        r = await reg.start("misfit", {"Attr": value})
        body = body_of(r, 422, "validation_failed", envelope=True)
        assert "search_attributes.Attr" in body["errors"], value
    assert (await reg.start("null", {"Attr": None})).status_code == 201


async def test_registered_types_are_read_once_and_only_when_needed(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[list[str]] = []
    real = sa_store.types_of

    async def counted(conn: Any, namespace: str, names: Collection[str]) -> dict[str, str]:
        reads.append(sorted(names))
        return await real(conn, namespace, names)

    monkeypatch.setattr(sa_store, "types_of", counted)
    await reg.create("Count", "int")
    assert (await reg.start("no-sa", None)).status_code == 201
    assert (await reg.start("empty-sa", {})).status_code == 201
    assert (await reg.start("only-null", {"Count": None})).status_code == 201
    assert reads == []
    assert (await reg.start("with-sa", {"Count": 1, "Other": "x"})).status_code == 201
    assert reads == [["Count", "Other"]]
    # One completion with several upserts reads each name once.
    reads.clear()
    for workflow_id in ("no-sa", "empty-sa", "only-null", "with-sa"):
        task = await reg.task()
        if task["workflow_id"] == "with-sa":
            break
        r = await reg.task_call(task, "complete", commands=[{"type": "complete_workflow"}])
        assert r.status_code == 200, (workflow_id, r.text)
    assert reads == []
    commands = [
        {"type": "upsert_search_attributes", "attributes": {"Count": 2}},
        {"type": "upsert_search_attributes", "attributes": {"Count": 3, "Color": "red"}},
        {"type": "upsert_search_attributes", "attributes": {"Count": None}},
    ]
    r = await reg.task_call(task, "complete", commands=commands)
    assert r.status_code == 200, r.text
    assert reads == [["Count"], ["Color"]]
    search_attributes = (await reg.describe("with-sa")).json()["search_attributes"]
    assert search_attributes == {"Other": "x", "Color": "red"}


# --- values a workflow upserts --------------------------------------------------------------
async def test_a_mistyped_upsert_fails_the_task_and_is_never_stored(reg: Registry) -> None:
    await register_all(reg)
    r = await reg.start("wf-up", {"Kw": "start"})
    assert r.status_code == 201, r.text
    run_id = r.json()["run_id"]
    task = await reg.task()
    for name, (type_, good, bad) in TYPED.items():
        commands = [
            {"type": "upsert_search_attributes", "attributes": {"Kw": "fine"}},
            {"type": "upsert_search_attributes", "attributes": {name: good, "Free": 1}},
            {"type": "upsert_search_attributes", "attributes": {name: bad}},
        ]
        r = await reg.task_call(task, "complete", commands=commands)
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["reason"] == "validation_failed"
        assert body["errors"] == {f"commands.2.attributes.{name}": [body["message"]]}, body
        assert name in body["message"] and type_ in body["message"]
        assert body["task_id"] == task["task_id"] and body["workflow_task_attempt"] == 1
        assert r.headers["X-Durable-Workflow-Protocol-Version"]
    # Nothing of any completion was recorded.
    assert await reg.history_types("wf-up", run_id) == ["StartAccepted", "WorkflowStarted"]
    assert (await reg.describe("wf-up")).json()["search_attributes"] == {"Kw": "start"}
    # The task is still leased; the worker reports the refusal, which fails the task.
    message = "workflow task completion failed after commands were produced: bad type"
    r = await reg.task_call(task, "fail", failure={"message": message, "type": "InvalidArgument"})
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "failed"
    # Retried later, the same task with well-typed values is recorded.
    with trio.fail_after(10):
        again = await reg.task()
    assert again["task_id"] == task["task_id"] and again["workflow_task_attempt"] == 2
    good = {name: value for name, (_t, value, _b) in TYPED.items()}
    commands = [
        {"type": "upsert_search_attributes", "attributes": {**good, "Kw": None}},
        {"type": "complete_workflow"},
    ]
    r = await reg.task_call(again, "complete", commands=commands)
    assert r.status_code == 200, r.text
    stored = (await reg.describe("wf-up")).json()["search_attributes"]
    assert stored == {k: v for k, v in good.items() if k != "Kw"}
    assert (await reg.history_types("wf-up", run_id))[-2:] == [
        "SearchAttributesUpserted",
        "WorkflowCompleted",
    ]


async def test_a_deleted_definition_no_longer_constrains_values(reg: Registry) -> None:
    await reg.create("Count", "int")
    body_of(await reg.start("wf-x", {"Count": "three"}), 422, "validation_failed", envelope=True)
    await reg.delete("Count")
    assert (await reg.start("wf-x", {"Count": "three"})).status_code == 201
