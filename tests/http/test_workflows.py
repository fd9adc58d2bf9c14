"""Workflow control-plane routes over real HTTP: start, list, describe, runs, history.

Contract: control-plane.md §2.4 (control_plane envelope), §5.1-§5.4, §6.1;
payloads.md §4 (start input); history-events.md §1.2, §4.1;
greeter-walkthrough.md §2, §5, §16-17.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from typing import Any

import httpx
import pytest
import trio

from dwtrio.manifest import OPERATIONS, PROJECTED_FIELDS, response_contract
from dwtrio.store.pool import Conn, connect_once

from conftest import ADMIN_TOKEN, CP, RunningServer

GREETER_BLOB = "wwHioz3/VYAiNwwCCgp3b3JsZAA="  # ["world"]
EMPTY_LIST_BLOB = "wwHioz3/VYAiNwwA"
ULID = re.compile(r"[0-9a-z]{26}")
ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
LEGACY_KEYS = ("query", "signal", "update", "wait_policy")
JSON_CT = {"Content-Type": "application/json"}

START_KEYS = {
    "workflow_id",
    "run_id",
    "workflow_type",
    "namespace",
    "status",
    "business_key",
    "payload_codec",
    "outcome",
    "reason",
    "rejection_reason",
    "command_status",
    "command_source",
    "control_plane",
}


def envelope_input(blob: str = GREETER_BLOB) -> dict[str, str]:
    return {"codec": "avro", "blob": blob}


def assert_envelope(
    body: dict[str, Any],
    operation: str,
    *,
    success: bool,
    operation_name: str | None = None,
) -> dict[str, Any]:
    """The control_plane envelope as control-plane.md §2.4 and the dw CLI require it."""
    cp = body["control_plane"]
    assert cp["schema"] == "durable-workflow.v2.control-plane-response"
    assert cp["version"] == 1
    assert cp["operation"] == operation
    assert cp["contract"] == response_contract(operation)
    assert cp["workflow_id"] == body.get("workflow_id")
    spec = OPERATIONS[operation]
    for field in spec.required_fields:
        assert isinstance(cp.get(field), str) and cp[field], (field, cp)
    if success:
        for field in spec.success_fields:
            assert field in cp, (field, cp)
    if operation_name is None:
        assert "operation_name" not in cp and "operation_name_field" not in cp
    else:
        assert cp["operation_name"] == operation_name
        assert cp["operation_name_field"] == spec.operation_name_field
    for key in PROJECTED_FIELDS:
        if key in body:
            assert cp[key] == body[key], key
        else:
            assert key not in cp, key
    for key in ("run_id", "update_id"):
        if key in cp:
            assert cp[key] == body.get(key)
    assert not set(LEGACY_KEYS) & set(body)
    return cp


def assert_validation(r: httpx.Response, *fields: str, operation: str = "start") -> dict[str, Any]:
    assert r.status_code == 422, r.text
    assert r.headers["X-Durable-Workflow-Control-Plane-Version"] == "2"
    body = r.json()
    assert body["reason"] == "validation_failed", body
    assert body["message"]
    assert body["errors"] == body["validation_errors"]
    for field in fields:
        assert field in body["errors"], (field, body["errors"])
        assert all(isinstance(m, str) and m for m in body["errors"][field])
    assert_envelope(body, operation, success=False)
    return body


async def start(
    c: httpx.AsyncClient, headers: dict[str, str] | None = None, **fields: Any
) -> httpx.Response:
    body = {"workflow_type": "greeter", "task_queue": "python-workers", **fields}
    return await c.post("/api/workflows", json=body, headers={**CP, **(headers or {})})


# --- start -------------------------------------------------------------------------------


async def test_start_returns_201_with_the_documented_body(server: RunningServer) -> None:
    async with server.client() as c:
        r = await start(
            c,
            workflow_id="greet-1",
            input=envelope_input(),
            execution_timeout_seconds=3600,
            run_timeout_seconds=600,
        )
    assert r.status_code == 201, r.text
    assert r.headers["X-Durable-Workflow-Control-Plane-Version"] == "2"
    body = r.json()
    assert set(body) == START_KEYS
    assert ULID.fullmatch(body["run_id"])
    assert {k: v for k, v in body.items() if k not in ("run_id", "control_plane")} == {
        "workflow_id": "greet-1",
        "workflow_type": "greeter",
        "namespace": "default",
        "status": "pending",
        "business_key": None,
        "payload_codec": "avro",
        "outcome": "started_new",
        "reason": None,
        "rejection_reason": None,
        "command_status": "accepted",
        "command_source": "control_plane",
    }
    cp = assert_envelope(body, "start", success=True)
    assert cp["workflow_id"] == "greet-1" and cp["run_id"] == body["run_id"]
    assert cp["outcome"] == "started_new"
    assert "payload_codec" not in cp  # not a projected field


async def test_start_generates_a_ulid_and_applies_defaults(server: RunningServer) -> None:
    async with server.client() as c:
        r = await c.post("/api/workflows", json={"workflow_type": "greeter"}, headers=CP)
        assert r.status_code == 201, r.text
        wf = r.json()["workflow_id"]
        assert ULID.fullmatch(wf)
        assert r.json()["control_plane"]["workflow_id"] == wf
        d = (await c.get(f"/api/workflows/{wf}", headers=CP)).json()
    assert d["task_queue"] == "default"
    assert d["input_envelope"] == {"codec": "avro", "blob": EMPTY_LIST_BLOB}
    assert d["input"] == []
    assert d["execution_timeout_seconds"] is None and d["execution_deadline_at"] is None
    assert d["run_timeout_seconds"] is None and d["run_deadline_at"] is None


@pytest.mark.parametrize(
    ("input_value", "blob", "decoded"),
    [
        (["world"], GREETER_BLOB, ["world"]),
        ({"codec": "avro", "blob": GREETER_BLOB}, GREETER_BLOB, ["world"]),
        (None, EMPTY_LIST_BLOB, []),
        ([], EMPTY_LIST_BLOB, []),
        ([1, 2.5, {"k": [True, None]}], "wwHioz3/VYAiNwwGBAIGAAAAAAAABEAOAgJrDAQCAQAAAAA=", None),
    ],
)
async def test_start_input_forms_store_the_sdk_blob(
    server: RunningServer, input_value: Any, blob: str, decoded: Any
) -> None:
    async with server.client() as c:
        r = await start(c, workflow_id="wf-input", input=input_value)
        assert r.status_code == 201, r.text
        d = (await c.get("/api/workflows/wf-input", headers=CP)).json()
    if decoded is None:  # computed here: the expected blob is the SDK's encoding
        decoded = input_value
        from durable_workflow import serializer

        assert serializer.encode(input_value, "avro") == blob
    assert d["input_envelope"] == {"codec": "avro", "blob": blob}
    assert d["input"] == decoded


async def test_start_ignores_unknown_and_newer_sdk_fields(server: RunningServer) -> None:
    async with server.client() as c:
        r = await start(
            c,
            workflow_id="wf-extra",
            priority=3,
            fairness_key="tenant-a",
            fairness_weight=5,
            build_id="build-1",
            compatibility="build-1",
            observability_context={"traceparent": "00-abc"},
            payload_codec="avro",
            something_new={"x": 1},
        )
    assert r.status_code == 201, r.text


OK = {"workflow_type": "greeter"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "workflow_type"),
        ({"workflow_type": ""}, "workflow_type"),
        ({"workflow_type": "   "}, "workflow_type"),
        ({"workflow_type": 5}, "workflow_type"),
        ({"workflow_type": "t" * 256}, "workflow_type"),
        ({**OK, "workflow_id": "bad id!"}, "workflow_id"),
        ({**OK, "workflow_id": "a/b"}, "workflow_id"),
        ({**OK, "workflow_id": "w" * 129}, "workflow_id"),
        ({**OK, "workflow_id": 12}, "workflow_id"),
        ({**OK, "task_queue": "q" * 256}, "task_queue"),
        ({**OK, "business_key": "b" * 256}, "business_key"),
        ({**OK, "memo": "not an object"}, "memo"),
        ({**OK, "memo": ["a"]}, "memo"),
        ({**OK, "memo": {"big": "x" * 262_200}}, "memo"),
        ({**OK, "search_attributes": ["a"]}, "search_attributes"),
        ({**OK, "search_attributes": {"1bad": "x"}}, "search_attributes"),
        ({**OK, "search_attributes": {"bad-key": "x"}}, "search_attributes"),
        ({**OK, "search_attributes": {"": "x"}}, "search_attributes"),
        ({**OK, "search_attributes": {"K" * 129: "x"}}, "search_attributes"),
        ({**OK, "search_attributes": {"Key": "v" * 2049}}, "search_attributes"),
        ({**OK, "search_attributes": {"Key": ["ok", "v" * 2049]}}, "search_attributes"),
        ({**OK, "search_attributes": {f"K{i}": i for i in range(101)}}, "search_attributes"),
        ({**OK, "duplicate_policy": "use_existing"}, "duplicate_policy"),
        ({**OK, "duplicate_policy": "reject"}, "duplicate_policy"),
        ({**OK, "execution_timeout_seconds": 0}, "execution_timeout_seconds"),
        ({**OK, "execution_timeout_seconds": "60"}, "execution_timeout_seconds"),
        ({**OK, "execution_timeout_seconds": 1.5}, "execution_timeout_seconds"),
        ({**OK, "execution_timeout_seconds": True}, "execution_timeout_seconds"),
        ({**OK, "run_timeout_seconds": -1}, "run_timeout_seconds"),
        ({**OK, "run_timeout_seconds": 2**31}, "run_timeout_seconds"),
        ({**OK, "execution_timeout_seconds": 2**63}, "execution_timeout_seconds"),
        ({**OK, "input": "world"}, "input"),
        ({**OK, "input": 42}, "input"),
        ({**OK, "input": {"name": "world"}}, "input"),
        ({**OK, "input": {"codec": "json", "blob": GREETER_BLOB}}, "input.codec"),
        ({**OK, "input": {"blob": GREETER_BLOB}}, "input.codec"),
        ({**OK, "input": {"codec": "avro"}}, "input.blob"),
        ({**OK, "input": {"codec": "avro", "blob": "bm90IGF2cm8="}}, "input.blob"),
        ({**OK, "input": {"codec": "avro", "blob": '["world"]'}}, "input.blob"),
        ({**OK, "input": {"codec": "avro", "blob": "wwHioz3/VYAiNwoKd29y"}}, "input.blob"),
        ({**OK, "input": [2**63]}, "input"),
        # Postgres text and jsonb cannot hold NUL: a 422 on the field's path, never a 500
        ({"workflow_type": "a\x00b"}, "workflow_type"),
        ({**OK, "task_queue": "q\x00"}, "task_queue"),
        ({**OK, "business_key": "\x00"}, "business_key"),
        ({**OK, "memo": {"k": ["\x00"]}}, "memo.k.0"),
        ({**OK, "memo": {"\x00": 1}}, "memo"),
        ({**OK, "search_attributes": {"Key": "\x00"}}, "search_attributes.Key"),
    ],
)
async def test_start_validation_failures(
    server: RunningServer, body: dict[str, Any], field: str
) -> None:
    async with server.client() as c:
        r = await c.post("/api/workflows", json=body, headers=CP)
    assert_validation(r, field)


@pytest.mark.parametrize(
    "field",
    [
        "workflow_execution_timeout",
        "workflow_run_timeout",
        "workflow_task_timeout",
        "retry_policy",
        "idempotency_key",
        "request_id",
    ],
)
@pytest.mark.parametrize("value", [None, 30, {"maximum_attempts": 1}])
async def test_start_rejected_fields_even_when_null(
    server: RunningServer, field: str, value: Any
) -> None:
    async with server.client() as c:
        r = await start(c, workflow_id="wf-rejected", **{field: value})
        assert_validation(r, field)
        # nothing was created
        d = await c.get("/api/workflows/wf-rejected", headers=CP)
        assert d.status_code == 404


async def test_start_reports_every_problem_at_once(server: RunningServer) -> None:
    async with server.client() as c:
        r = await c.post(
            "/api/workflows",
            json={
                "workflow_type": "",
                "retry_policy": None,
                "duplicate_policy": "nope",
                "memo": 1,
                "input": "x",
            },
            headers=CP,
        )
        # attrs validators stop at the first invalid field; rejected fields always add up
        body = assert_validation(r, "workflow_type", "retry_policy")
        assert body["message"].endswith("more error)")
        r = await c.post(
            "/api/workflows",
            json={"workflow_type": "ok", "memo": 1, "input": "x", "workflow_id": "w"},
            headers=CP,
        )
        body = assert_validation(r, "memo", "input")
        assert body["control_plane"]["workflow_id"] is None  # not taken from the body


@pytest.mark.parametrize("body", [[], "x", 3, None])
async def test_start_body_must_be_an_object(server: RunningServer, body: Any) -> None:
    async with server.client() as c:
        r = await c.post("/api/workflows", content=json.dumps(body), headers={**CP, **JSON_CT})
    assert_validation(r, "body")


async def test_start_empty_post_is_a_validation_error(server: RunningServer) -> None:
    async with server.client() as c:
        r = await c.post("/api/workflows", headers=CP)
    assert_validation(r, "workflow_type")


async def test_start_refuses_external_payload_references(server: RunningServer) -> None:
    reference = {
        "schema": "durable-workflow.v2.external-payload-reference.v1",
        "uri": "s3://bucket/key",
        "sha256": "ab" * 32,
        "size_bytes": 10,
        "codec": "avro",
    }
    async with server.client() as c:
        r = await start(c, input={"codec": "avro", "external_storage": reference})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["reason"] == "external_payload_unsupported"
    assert "input" in body["errors"]
    assert_envelope(body, "start", success=False)


# --- duplicates ----------------------------------------------------------------------------


async def test_duplicate_start_fail_policy_is_409(server: RunningServer) -> None:
    async with server.client() as c:
        first = (await start(c, workflow_id="dup", business_key="bk-1")).json()
        for policy in (None, "fail"):
            extra = {} if policy is None else {"duplicate_policy": policy}
            r = await start(c, workflow_id="dup", **extra)
            assert r.status_code == 409, r.text
            body = r.json()
            assert set(body) == START_KEYS | {"message", "request_id"}
            assert body["request_id"] == r.headers["x-request-id"]
            assert body["outcome"] == "rejected_duplicate"
            assert body["reason"] == "instance_already_started"
            assert body["rejection_reason"] == "instance_already_started"
            assert body["command_status"] == "rejected"
            assert body["command_source"] == "control_plane"
            assert body["message"]
            assert body["run_id"] == first["run_id"]
            assert body["status"] == "pending" and body["business_key"] == "bk-1"
            cp = assert_envelope(body, "start", success=False)
            assert cp["reason"] == "instance_already_started" and cp["message"] == body["message"]
        # the rejections were recorded on the existing run, after its start events
        h = (await c.get(f"/api/workflows/dup/runs/{first['run_id']}/history", headers=CP)).json()
    assert [e["event_type"] for e in h["events"]] == [
        "StartAccepted",
        "WorkflowStarted",
        "StartRejected",
        "StartRejected",
    ]


async def test_duplicate_start_use_existing_returns_the_active_run(
    server: RunningServer,
) -> None:
    async with server.client() as c:
        first = (await start(c, workflow_id="reuse")).json()
        r = await start(c, workflow_id="reuse", duplicate_policy="use-existing", input=["x"])
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == START_KEYS
        assert body["outcome"] == "returned_existing_active"
        assert body["run_id"] == first["run_id"]
        assert body["reason"] is None and body["rejection_reason"] is None
        assert body["command_status"] == "accepted"
        assert_envelope(body, "start", success=True)
        # the original input is kept
        d = (await c.get("/api/workflows/reuse", headers=CP)).json()
        assert d["input"] == []
        assert d["run_count"] == 1


async def test_concurrent_starts_of_one_id_give_exactly_one_201(server: RunningServer) -> None:
    results: list[httpx.Response] = []
    async with server.client() as c:

        async def one() -> None:
            results.append(await start(c, workflow_id="race", input=["world"]))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one)
        statuses = sorted(r.status_code for r in results)
        assert statuses == [201, 409, 409, 409, 409], [r.text for r in results]
        winner = next(r.json() for r in results if r.status_code == 201)
        assert {r.json().get("run_id") for r in results} == {winner["run_id"]}, [
            r.text for r in results if "run_id" not in r.json()
        ]
        runs = (await c.get("/api/workflows/race/runs", headers=CP)).json()
    assert runs["run_count"] == 1 and len(runs["runs"]) == 1


async def test_workflow_id_is_global_across_namespaces(server: RunningServer) -> None:
    async with server.client() as c:
        r = await c.post("/api/namespaces", json={"name": "billing"}, headers=CP)
        assert r.status_code == 201, r.text
        assert (await start(c, workflow_id="shared-id")).status_code == 201
        r = await start(c, headers={"X-Namespace": "billing"}, workflow_id="shared-id")
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["reason"] == "workflow_id_reserved_in_namespace"
        assert body["workflow_id"] == "shared-id"
        assert "namespace" not in body
        assert "default" not in body["message"]
        cp = assert_envelope(body, "start", success=False)
        assert "namespace" not in cp
        # the other namespace never sees the instance
        r = await c.get("/api/workflows/shared-id", headers={**CP, "X-Namespace": "billing"})
        assert r.status_code == 404 and r.json()["reason"] == "instance_not_found"
        # a fresh id works there
        r = await start(c, headers={"X-Namespace": "billing"}, workflow_id="billing-only")
        assert r.status_code == 201 and r.json()["namespace"] == "billing"


async def test_same_id_with_another_type_is_422(server: RunningServer) -> None:
    async with server.client() as c:
        assert (await start(c, workflow_id="typed")).status_code == 201
        r = await c.post(
            "/api/workflows",
            json={"workflow_type": "other", "workflow_id": "typed"},
            headers=CP,
        )
        body = assert_validation(r, "workflow_type")
    assert "greeter" in body["errors"]["workflow_type"][0]


# --- describe, runs, history ------------------------------------------------------------


async def test_describe_current_run_and_run(server: RunningServer) -> None:
    async with server.client() as c:
        s = (
            await start(
                c,
                workflow_id="desc-1",
                input=["world"],
                business_key="order-42",
                memo={"owner": "ops", "n": 1},
                search_attributes={"CustomerId": "cust-42", "Tags": ["a", "b"]},
                execution_timeout_seconds=3600,
                run_timeout_seconds=600,
            )
        ).json()
        r = await c.get("/api/workflows/desc-1", headers=CP)
        assert r.status_code == 200, r.text
        d = r.json()
        r2 = await c.get(f"/api/workflows/desc-1/runs/{s['run_id']}", headers=CP)
        assert r2.status_code == 200, r2.text
    run_view = r2.json()
    assert_envelope(d, "describe", success=True)
    assert_envelope(run_view, "describe_run", success=True)
    assert {k: v for k, v in run_view.items() if k != "control_plane"} == {
        k: v for k, v in d.items() if k != "control_plane"
    }
    for key in ("started_at", "last_progress_at", "execution_deadline_at", "run_deadline_at"):
        assert ISO_Z.fullmatch(d[key]), (key, d[key])
    assert d["started_at"] < d["run_deadline_at"] < d["execution_deadline_at"]
    expected = {
        "workflow_id": "desc-1",
        "run_id": s["run_id"],
        "namespace": "default",
        "workflow_type": "greeter",
        "business_key": "order-42",
        "status": "pending",
        "status_bucket": "running",
        "is_terminal": False,
        "closed_reason": None,
        "task_queue": "python-workers",
        "run_number": 1,
        "run_count": 1,
        "is_current_run": True,
        "compatibility": None,
        "payload_codec": "avro",
        "execution_timeout_seconds": 3600,
        "run_timeout_seconds": 600,
        "input": ["world"],
        "output": None,
        "input_envelope": {"codec": "avro", "blob": GREETER_BLOB},
        "output_envelope": None,
        "closed_at": None,
        "wait_kind": None,
        "wait_reason": None,
        "memo": {"owner": "ops", "n": 1},
        "search_attributes": {"CustomerId": "cust-42", "Tags": ["a", "b"]},
        "actions": {
            "can_signal": True,
            "can_query": True,
            "can_update": True,
            "can_cancel": True,
            "can_terminate": True,
            "can_repair": True,
            "can_archive": False,
        },
    }
    timestamps = ("started_at", "last_progress_at", "execution_deadline_at", "run_deadline_at")
    assert {k: v for k, v in d.items() if k not in (*timestamps, "control_plane")} == expected
    cp = d["control_plane"]
    assert cp["run_id"] == s["run_id"] and cp["status"] == "pending"
    assert cp["run_count"] == 1 and cp["is_current_run"] is True
    assert cp["started_at"] == d["started_at"]


async def test_list_runs(server: RunningServer) -> None:
    async with server.client() as c:
        s = (await start(c, workflow_id="runs-1", business_key="bk")).json()
        r = await c.get("/api/workflows/runs-1/runs", headers=CP)
    assert r.status_code == 200, r.text
    body = r.json()
    assert_envelope(body, "list_runs", success=True)
    assert body["workflow_id"] == "runs-1" and body["run_count"] == 1
    [run] = body["runs"]
    assert ISO_Z.fullmatch(run.pop("started_at"))
    assert run == {
        "workflow_id": "runs-1",
        "run_id": s["run_id"],
        "run_number": 1,
        "workflow_type": "greeter",
        "business_key": "bk",
        "status": "pending",
        "status_bucket": "running",
        "is_current_run": True,
        "closed_reason": None,
        "task_queue": "python-workers",
        "compatibility": None,
        "payload_codec": "avro",
        "closed_at": None,
    }


async def test_history_has_the_start_events(server: RunningServer) -> None:
    async with server.client() as c:
        s = (
            await start(
                c,
                workflow_id="hist-1",
                input=["world"],
                memo={"m": 1},
                execution_timeout_seconds=60,
                run_timeout_seconds=30,
            )
        ).json()
        run_id = s["run_id"]
        r = await c.get(f"/api/workflows/hist-1/runs/{run_id}/history", headers=CP)
    assert r.status_code == 200, r.text
    body = r.json()
    cp = assert_envelope(body, "history", success=True)
    assert cp["run_id"] == run_id and cp["next_page_token"] is None
    assert set(body) == {"workflow_id", "run_id", "events", "next_page_token", "control_plane"}
    assert body["next_page_token"] is None
    events = body["events"]
    assert [(e["sequence"], e["event_type"]) for e in events] == [
        (1, "StartAccepted"),
        (2, "WorkflowStarted"),
    ]
    for e in events:
        assert set(e) == {"sequence", "event_type", "timestamp", "payload"}
        assert ISO_Z.fullmatch(e["timestamp"])
    accepted, started = events[0]["payload"], events[1]["payload"]
    ids = {"workflow_instance_id": "hist-1", "workflow_run_id": run_id}
    assert accepted.items() >= {**ids, "outcome": "started_new", "workflow_type": "greeter"}.items()
    assert (
        started.items()
        >= {
            **ids,
            "workflow_type": "greeter",
            "memo": {"m": 1},
            "execution_timeout_seconds": 60,
            "run_timeout_seconds": 30,
        }.items()
    )
    assert ULID.fullmatch(accepted["workflow_command_id"])
    assert accepted["workflow_command_id"] == started["workflow_command_id"]
    assert ISO_Z.fullmatch(started["execution_deadline_at"])
    assert ISO_Z.fullmatch(started["run_deadline_at"])
    assert "payload_codec" not in accepted and "payload_codec" not in started
    assert "sequence" not in accepted and "sequence" not in started


async def test_history_paging_follows_tokens_to_the_end(server: RunningServer) -> None:
    async with server.client() as c:
        run_id = (await start(c, workflow_id="page-1")).json()["run_id"]
        await start(c, workflow_id="page-1")  # StartRejected: 3 events in all
        path = f"/api/workflows/page-1/runs/{run_id}/history"
        seen: list[int] = []
        tokens: list[str] = []
        params: dict[str, str] = {"page_size": "1"}
        while True:
            body = (await c.get(path, params=params, headers=CP)).json()
            assert_envelope(body, "history", success=True)
            assert len(body["events"]) == 1
            seen += [e["sequence"] for e in body["events"]]
            token = body["next_page_token"]
            if token is None:
                break
            assert token not in tokens
            assert base64.b64decode(token).decode() == str(seen[-1])
            tokens.append(token)
            params["next_page_token"] = token
        assert seen == [1, 2, 3]
        # page_size 2: one full page with a token, then the rest
        body = (await c.get(path, params={"page_size": "2"}, headers=CP)).json()
        assert [e["sequence"] for e in body["events"]] == [1, 2]
        body = (
            await c.get(
                path,
                params={"page_size": "2", "next_page_token": body["next_page_token"]},
                headers=CP,
            )
        ).json()
        assert [e["sequence"] for e in body["events"]] == [3]
        assert body["next_page_token"] is None
        # a token past the end is an empty page, and the default size covers everything
        body = (
            await c.get(
                path, params={"next_page_token": base64.b64encode(b"99").decode()}, headers=CP
            )
        ).json()
        assert body["events"] == [] and body["next_page_token"] is None
        body = (await c.get(path, params={"wait_new_event": "1"}, headers=CP)).json()
        assert len(body["events"]) == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "1001"}, "page_size"),
        ({"page_size": "abc"}, "page_size"),
        ({"next_page_token": "!!"}, "next_page_token"),
        ({"next_page_token": base64.b64encode(b"abc").decode()}, "next_page_token"),
        ({"next_page_token": base64.b64encode(b"-1").decode()}, "next_page_token"),
    ],
)
async def test_history_parameter_validation(
    server: RunningServer, params: dict[str, str], field: str
) -> None:
    async with server.client() as c:
        run_id = (await start(c, workflow_id="hist-v")).json()["run_id"]
        r = await c.get(f"/api/workflows/hist-v/runs/{run_id}/history", params=params, headers=CP)
    body = assert_validation(r, field, operation="history")
    assert body["workflow_id"] == "hist-v" and body["control_plane"]["run_id"] == run_id


# --- not found, gates and the envelope on errors -------------------------------------


async def test_not_found_errors_carry_ids_and_the_envelope(server: RunningServer) -> None:
    async with server.client() as c:
        run_id = (await start(c, workflow_id="exists")).json()["run_id"]
        cases = [
            ("/api/workflows/missing", "describe", "instance_not_found", None),
            ("/api/workflows/missing/runs", "list_runs", "instance_not_found", None),
            ("/api/workflows/missing/runs/r1", "describe_run", "run_not_found", "r1"),
            ("/api/workflows/exists/runs/r1", "describe_run", "run_not_found", "r1"),
            ("/api/workflows/missing/runs/r1/history", "history", "run_not_found", "r1"),
            ("/api/workflows/exists/runs/r1/history", "history", "run_not_found", "r1"),
            ("/api/workflows/bad%20id", "describe", "instance_not_found", None),
            ("/api/workflows/exists/runs/r%001", "describe_run", "run_not_found", "r\x001"),
        ]
        for path, operation, reason, run in cases:
            r = await c.get(path, headers=CP)
            assert r.status_code == 404, (path, r.text)
            body = r.json()
            assert body["reason"] == reason, (path, body)
            wf = "bad id" if "bad" in path else path.split("/")[3]
            assert body["workflow_id"] == wf
            if run is not None:
                assert body["run_id"] == run
            assert_envelope(body, operation, success=False)
        # a run of another instance is not found through this one
        await start(c, workflow_id="other")
        r = await c.get(f"/api/workflows/other/runs/{run_id}", headers=CP)
        assert r.status_code == 404 and r.json()["reason"] == "run_not_found"


async def test_gate_errors_on_workflow_routes_carry_the_envelope(server: RunningServer) -> None:
    async with server.client(token=None) as anon, server.client() as c:
        r = await anon.get("/api/workflows/wf-1", headers=CP)
        assert r.status_code == 401
        cp = assert_envelope(r.json(), "describe", success=False)
        assert cp["workflow_id"] == "wf-1" and r.json()["workflow_id"] == "wf-1"

        r = await c.get("/api/workflows/wf-1/runs/r-9/history")  # no version header
        assert r.status_code == 400 and r.json()["reason"] == "missing_control_plane_version"
        cp = assert_envelope(r.json(), "history", success=False)
        assert cp["run_id"] == "r-9"

        r = await c.post("/api/workflows", json=OK, headers={**CP, "X-Namespace": "nope"})
        assert r.status_code == 404 and r.json()["reason"] == "namespace_not_found"
        assert_envelope(r.json(), "start", success=False)

        r = await c.post(
            "/api/workflows", content=b"{", headers={**CP, "Content-Type": "application/json"}
        )
        assert r.status_code == 400 and r.json()["reason"] == "malformed_json"
        assert_envelope(r.json(), "start", success=False)

        r = await c.post(
            "/api/workflows", content=b"x", headers={**CP, "Content-Type": "text/plain"}
        )
        assert r.status_code == 415
        assert_envelope(r.json(), "start", success=False)

        # unknown workflows: a reasoned 404 that still carries the envelope
        r = await c.post("/api/workflows/wf-1/signal/go%2Fnow", json={}, headers=CP)
        assert r.status_code == 404 and r.json()["reason"] == "instance_not_found"
        assert_envelope(r.json(), "signal", success=False, operation_name="go/now")
        r = await c.post("/api/workflows/wf-1/runs/r-2/cancel", json={}, headers=CP)
        assert r.status_code == 404
        cp = assert_envelope(r.json(), "cancel", success=False)
        assert cp["run_id"] == "r-2"

        # no envelope: history export, other resources, unknown workflow sub-routes
        for method, path in [
            ("GET", "/api/workflows/wf-1/runs/r-2/history/export"),
            ("GET", "/api/workflows/wf-1/no-such-route"),
            ("GET", "/api/namespaces"),
            ("GET", "/api/namespaces/nope"),
        ]:
            r = await c.request(method, path, headers=CP)
            assert "control_plane" not in r.json(), (path, r.json())


# --- list -------------------------------------------------------------------------------


async def test_list_workflows_filters_and_pages(server: RunningServer) -> None:
    async with server.client() as c:
        for i in range(3):
            await start(c, workflow_id=f"list-{i}", business_key=f"order-{i}")
        await c.post(
            "/api/workflows", json={"workflow_type": "other", "workflow_id": "x-9"}, headers=CP
        )
        r = await c.get("/api/workflows", headers=CP)
        assert r.status_code == 200, r.text
        body = r.json()
        cp = assert_envelope(body, "list", success=True)
        assert cp["workflow_id"] is None and cp["workflow_count"] == 4
        assert [w["workflow_id"] for w in body["workflows"]] == [
            "x-9",
            "list-2",
            "list-1",
            "list-0",
        ]
        item = body["workflows"][1]
        assert item["status"] == "pending" and item["status_bucket"] == "running"
        assert item["is_terminal"] is False and item["namespace"] == "default"
        assert item["search_attributes"] == {} and item["memo"] == {}
        assert ISO_Z.fullmatch(item["started_at"]) and item["closed_at"] is None

        seen: list[str] = []
        params = {"page_size": "3", "workflow_type": "greeter"}
        while True:
            page = (await c.get("/api/workflows", params=params, headers=CP)).json()
            seen += [w["workflow_id"] for w in page["workflows"]]
            if page["next_page_token"] is None:
                break
            params = {**params, "page_size": "2", "next_page_token": page["next_page_token"]}
        assert seen == ["list-2", "list-1", "list-0"]

        page = (await c.get("/api/workflows", params={"query": "order-1"}, headers=CP)).json()
        assert [w["workflow_id"] for w in page["workflows"]] == ["list-1"]
        for status, count in [("running", 4), ("completed", 0), ("failed", 0), ("cancelled", 0)]:
            page = (await c.get("/api/workflows", params={"status": status}, headers=CP)).json()
            assert page["workflow_count"] == count, status
        r = await c.get("/api/workflows", params={"status": "pending"}, headers=CP)
        assert_validation(r, "status", operation="list")
        r = await c.get("/api/workflows", params={"page_size": "201"}, headers=CP)
        assert_validation(r, "page_size", operation="list")
        r = await c.get("/api/workflows", params={"query": "a\x00"}, headers=CP)
        assert_validation(r, "query", operation="list")
        # an unreadable list token restarts at the first page
        page = (await c.get("/api/workflows", params={"next_page_token": "??"}, headers=CP)).json()
        assert page["workflow_count"] == 4


# --- what the start wrote ---------------------------------------------------------------


async def test_start_creates_one_ready_workflow_task_and_a_command(
    server: RunningServer, db_dsn: str
) -> None:
    async with server.client() as c:
        s = (await start(c, workflow_id="task-1", input=["world"])).json()
        await start(c, workflow_id="task-1")  # duplicate: a rejected command, no task

    async def read(conn: Conn) -> tuple[list[Any], list[Any], Any]:
        tasks = await conn.fetch(
            "SELECT kind, state, task_queue, namespace, workflow_id, workflow_type"
            " FROM workflow_tasks WHERE run_id = $1",
            s["run_id"],
        )
        commands = await conn.fetch(
            "SELECT command_type, status, outcome, rejection_reason, payload, payload_codec,"
            " command_sequence, source FROM workflow_commands WHERE workflow_id = $1"
            " ORDER BY command_sequence",
            "task-1",
        )
        run = await conn.fetchrow(
            "SELECT status, arguments, payload_codec, last_history_sequence, run_number"
            " FROM workflow_runs WHERE id = $1",
            s["run_id"],
        )
        return tasks, commands, run

    tasks, commands, run = await connect_once(db_dsn, read)
    assert [dict(t) for t in tasks] == [
        {
            "kind": "workflow",
            "state": "ready",
            "task_queue": "python-workers",
            "namespace": "default",
            "workflow_id": "task-1",
            "workflow_type": "greeter",
        }
    ]
    assert [dict(x) for x in commands] == [
        {
            "command_type": "start",
            "status": "accepted",
            "outcome": "started_new",
            "rejection_reason": None,
            "payload": GREETER_BLOB,
            "payload_codec": "avro",
            "command_sequence": 1,
            "source": "control_plane",
        },
        {
            "command_type": "start",
            "status": "rejected",
            "outcome": "rejected_duplicate",
            "rejection_reason": "instance_already_started",
            "payload": EMPTY_LIST_BLOB,
            "payload_codec": "avro",
            "command_sequence": 2,
            "source": "control_plane",
        },
    ]
    assert dict(run) == {
        "status": "pending",
        "arguments": GREETER_BLOB,
        "payload_codec": "avro",
        "last_history_sequence": 3,
        "run_number": 1,
    }


# --- the official SDK -------------------------------------------------------------------

SDK_SCRIPT = r"""
import asyncio, json, sys
from durable_workflow import Client
from durable_workflow.errors import WorkflowAlreadyStarted

async def main(url, token):
    out = {}
    async with Client(url, token=token, namespace="default", timeout=15) as client:
        handle = await client.start_workflow(
            workflow_type="greeter", workflow_id="sdk-greet-1",
            task_queue="python-workers", input=["world"],
        )
        out["handle"] = {"workflow_id": handle.workflow_id, "run_id": handle.run_id}
        ex = await client.describe_workflow("sdk-greet-1")
        out["describe"] = {
            "workflow_id": ex.workflow_id, "run_id": ex.run_id, "workflow_type": ex.workflow_type,
            "status": ex.status, "namespace": ex.namespace, "task_queue": ex.task_queue,
            "input": ex.input, "output": ex.output, "payload_codec": ex.payload_codec,
            "memo": ex.memo, "search_attributes": ex.search_attributes,
        }
        try:
            await client.start_workflow(
                workflow_type="greeter", workflow_id="sdk-greet-1", task_queue="python-workers",
            )
            out["duplicate"] = None
        except WorkflowAlreadyStarted as exc:
            out["duplicate"] = type(exc).__name__
        again = await client.start_workflow(
            workflow_type="greeter", workflow_id="sdk-greet-1", task_queue="python-workers",
            duplicate_policy="use-existing",
        )
        out["use_existing_run_id"] = again.run_id
        runs = await client.list_workflow_runs("sdk-greet-1")
        out["runs"] = {"run_count": runs.run_count, "run_ids": [r.run_id for r in runs.runs]}
        run = await client.describe_workflow_run("sdk-greet-1", handle.run_id)
        out["run"] = {"run_number": run.run_number, "is_current_run": run.is_current_run,
                      "status_bucket": run.status_bucket, "actions": run.actions}
        page = await client.get_history("sdk-greet-1", handle.run_id, page_size=1000)
        out["history"] = [e["event_type"] for e in page["events"]]
        try:
            await client.describe_workflow("sdk-missing")
            out["missing"] = None
        except Exception as exc:
            out["missing"] = type(exc).__name__
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.sdk
async def test_official_sdk_start_describe_and_duplicate(server: RunningServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_WORKFLOW_")}
    with trio.fail_after(120):
        proc = await trio.run_process(
            [sys.executable, "-c", SDK_SCRIPT, server.url, ADMIN_TOKEN],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = json.loads(proc.stdout)
    run_id = out["handle"]["run_id"]
    assert out["handle"]["workflow_id"] == "sdk-greet-1" and ULID.fullmatch(run_id)
    assert out["describe"] == {
        "workflow_id": "sdk-greet-1",
        "run_id": run_id,
        "workflow_type": "greeter",
        "status": "pending",
        "namespace": "default",
        "task_queue": "python-workers",
        "input": ["world"],
        "output": None,
        "payload_codec": "avro",
        "memo": {},
        "search_attributes": {},
    }
    assert out["duplicate"] == "WorkflowAlreadyStarted"
    assert out["use_existing_run_id"] == run_id
    assert out["runs"] == {"run_count": 1, "run_ids": [run_id]}
    assert out["run"]["run_number"] == 1 and out["run"]["is_current_run"] is True
    assert out["run"]["status_bucket"] == "running"
    assert out["history"][:2] == ["StartAccepted", "WorkflowStarted"]
    assert out["missing"] == "WorkflowNotFound"
