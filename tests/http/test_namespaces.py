"""Namespace admin routes (control-plane.md §4) and using a new namespace.

List, create, describe, update and the external-storage policy, with the
documented status codes, reasons, extra fields, timestamp rendering and the
``errors`` / ``validation_errors`` maps of a 422.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
import pytest

from conftest import CP, WP, RunningServer, StartServer

CP_HEADER = "X-Durable-Workflow-Control-Plane-Version"
OFFSET_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")
NAMESPACE_KEYS = {
    "name",
    "description",
    "retention_days",
    "status",
    "external_payload_storage",
    "created_at",
    "updated_at",
}
WORKFLOW_ROUTE = "/api/workflows/wf-1/no-such-route"
WORKER_ROUTE = "/api/worker/no-such-route"
JSON_CT = {"Content-Type": "application/json"}


def assert_error(r: httpx.Response, status: int, reason: str, **fields: Any) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers.get(CP_HEADER) == "2"
    body = r.json()
    assert body["reason"] == reason, body
    assert isinstance(body["message"], str) and body["message"]
    for key, value in fields.items():
        assert body[key] == value, (key, body)
    return body


def assert_validation(r: httpx.Response, fields: set[str]) -> dict[str, list[str]]:
    body = assert_error(r, 422, "validation_failed")
    errors = body["errors"]
    assert body["validation_errors"] == errors
    assert set(errors) == fields, errors
    for messages in errors.values():
        assert isinstance(messages, list) and messages
        assert all(isinstance(m, str) and m for m in messages)
    first = next(iter(errors.values()))[0]
    assert body["message"].startswith(first)
    return errors  # type: ignore[no-any-return]


def assert_namespace(body: dict[str, Any], keys: set[str] = NAMESPACE_KEYS) -> None:
    assert set(body) == keys, body
    assert body["status"] == "active"
    for key in ("created_at", "updated_at"):
        if key in keys:
            assert OFFSET_TIMESTAMP.match(body[key]), body[key]


async def names(c: httpx.AsyncClient) -> list[str]:
    r = await c.get("/api/namespaces")
    assert r.status_code == 200, r.text
    return [n["name"] for n in r.json()["namespaces"]]


# --- list --------------------------------------------------------------------------------
async def test_list_returns_every_namespace_sorted(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        for name in ("zeta", "Alpha", "mid"):
            assert (await c.post("/api/namespaces", json={"name": name})).status_code == 201
        r = await c.get("/api/namespaces")
    assert r.status_code == 200
    assert r.headers[CP_HEADER] == "2"
    body = r.json()
    assert set(body) == {"namespaces"}
    assert [n["name"] for n in body["namespaces"]] == ["alpha", "default", "mid", "zeta"]
    for entry in body["namespaces"]:
        assert_namespace(entry)
    default = body["namespaces"][1]
    assert default["retention_days"] == 30
    assert default["external_payload_storage"] is None


# --- create ------------------------------------------------------------------------------
async def test_create(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        r = await c.post(
            "/api/namespaces",
            json={"name": "Billing", "description": "Billing workflows", "retention_days": 90},
        )
        assert r.status_code == 201, r.text
        assert r.headers[CP_HEADER] == "2"
        body = r.json()
        assert_namespace(body, NAMESPACE_KEYS - {"updated_at"})
        assert body["name"] == "billing"
        assert body["description"] == "Billing workflows"
        assert body["retention_days"] == 90
        assert body["external_payload_storage"] is None
        # it is stored (lowercased) and describable
        r = await c.get("/api/namespaces/billing")
        assert r.status_code == 200
        stored = r.json()
        assert_namespace(stored)
        assert stored["created_at"] == body["created_at"]
        assert stored["description"] == "Billing workflows"


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "orders"},
        {"name": "orders", "retention_days": None, "description": None},
    ],
)
async def test_create_default_retention(server: RunningServer, payload: dict[str, Any]) -> None:
    async with server.client(**CP) as c:
        r = await c.post("/api/namespaces", json=payload)
    assert r.status_code == 201, r.text
    assert r.json()["retention_days"] == 30
    assert r.json()["description"] is None


async def test_create_default_retention_follows_setting(start_server: StartServer) -> None:
    srv = await start_server(history_retention_days=7)
    async with srv.client(**CP) as c:
        r = await c.post("/api/namespaces", json={"name": "short"})
    assert r.status_code == 201, r.text
    assert r.json()["retention_days"] == 7


async def test_create_sdk_shape_and_unknown_fields(server: RunningServer) -> None:
    """The SDK always sends name, description (maybe null) and retention_days 30."""
    async with server.client(**CP) as c:
        r = await c.post(
            "/api/namespaces",
            json={"name": "a.b_c-9", "description": None, "retention_days": 30, "future": {"x": 1}},
        )
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "a.b_c-9"
    assert "future" not in r.json()


@pytest.mark.parametrize("name", ["billing", "BILLING", "Billing"])
async def test_create_duplicate_is_409(server: RunningServer, name: str) -> None:
    async with server.client(**CP) as c:
        assert (await c.post("/api/namespaces", json={"name": "billing"})).status_code == 201
        r = await c.post("/api/namespaces", json={"name": name, "description": "again"})
        assert_error(r, 409, "namespace_already_exists", namespace="billing")
        r = await c.post("/api/namespaces", json={"name": "default"})
        assert_error(r, 409, "namespace_already_exists", namespace="default")
        # the original is untouched
        assert (await c.get("/api/namespaces/billing")).json()["description"] is None


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"name": "bad name"}, {"name"}),
        ({"name": "a/b"}, {"name"}),
        ({"name": "ünïcode"}, {"name"}),
        ({"name": "x" * 129}, {"name"}),
        ({"name": ""}, {"name"}),
        ({"name": None}, {"name"}),
        ({"name": 12}, {"name"}),
        ({}, {"name"}),
        ({"description": "only"}, {"name"}),
        ({"name": "ok", "retention_days": 0}, {"retention_days"}),
        ({"name": "ok", "retention_days": 366}, {"retention_days"}),
        ({"name": "ok", "retention_days": -1}, {"retention_days"}),
        ({"name": "ok", "retention_days": "x"}, {"retention_days"}),
        ({"name": "ok", "retention_days": "30"}, {"retention_days"}),
        ({"name": "ok", "retention_days": True}, {"retention_days"}),
        ({"name": "ok", "retention_days": 10.5}, {"retention_days"}),
        ({"name": "ok", "description": "d" * 1001}, {"description"}),
        ({"name": "ok", "description": 5}, {"description"}),
        (
            {"name": "ok", "retention_days": "x", "description": 5},
            {"retention_days", "description"},
        ),
        ([{"name": "ok"}], {"body"}),
        ("ok", {"body"}),
    ],
)
async def test_create_validation(server: RunningServer, payload: Any, fields: set[str]) -> None:
    async with server.client(**CP) as c:
        r = await c.post("/api/namespaces", json=payload)
        assert_validation(r, fields)
        assert await names(c) == ["default"]


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "x" * 128},
        {"name": "edge", "retention_days": 1},
        {"name": "edge", "retention_days": 365},
        {"name": "edge", "description": "d" * 1000},
        {"name": "edge", "description": ""},
    ],
)
async def test_create_validation_bounds_accepted(
    server: RunningServer, payload: dict[str, Any]
) -> None:
    async with server.client(**CP) as c:
        r = await c.post("/api/namespaces", json=payload)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == payload["name"]


async def test_validation_message_names_the_first_error(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        r = await c.post("/api/namespaces", json={"name": "ok", "retention_days": 0})
    errors = assert_validation(r, {"retention_days"})
    assert errors["retention_days"] == ["The retention days must be between 1 and 365."]
    assert r.json()["message"] == "The retention days must be between 1 and 365."


# --- describe ----------------------------------------------------------------------------
async def test_describe(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        r = await c.get("/api/namespaces/default")
        assert r.status_code == 200, r.text
        body = r.json()
        assert_namespace(body)
        assert body["name"] == "default"
        # path lookups are lowercased
        r = await c.get("/api/namespaces/DEFAULT")
        assert r.status_code == 200
        assert r.json()["name"] == "default"


async def test_describe_unknown_is_404(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        r = await c.get("/api/namespaces/ghost")
        body = assert_error(r, 404, "namespace_not_found", namespace="ghost")
        assert "control_plane" not in body
        r = await c.get("/api/namespaces/Ghost")
        assert_error(r, 404, "namespace_not_found", namespace="ghost")


# --- update ------------------------------------------------------------------------------
async def test_update(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        r = await c.post(
            "/api/namespaces", json={"name": "ops", "description": "first", "retention_days": 10}
        )
        assert r.status_code == 201
        r = await c.put("/api/namespaces/ops", json={"description": "second"})
        assert r.status_code == 200, r.text
        assert r.headers[CP_HEADER] == "2"
        body = r.json()
        assert_namespace(body, NAMESPACE_KEYS - {"created_at"})
        assert body["name"] == "ops"
        assert body["description"] == "second"
        assert body["retention_days"] == 10  # absent: unchanged

        r = await c.put("/api/namespaces/OPS", json={"retention_days": 200, "description": None})
        assert r.status_code == 200, r.text
        assert r.json()["description"] == "second"  # null: unchanged
        assert r.json()["retention_days"] == 200

        r = await c.put("/api/namespaces/ops", json={"description": None, "retention_days": None})
        assert r.status_code == 200
        assert (r.json()["description"], r.json()["retention_days"]) == ("second", 200)

        r = await c.put("/api/namespaces/ops")  # no body at all
        assert r.status_code == 200, r.text
        assert (r.json()["description"], r.json()["retention_days"]) == ("second", 200)

        stored = (await c.get("/api/namespaces/ops")).json()
        assert stored["description"] == "second"
        assert stored["retention_days"] == 200


async def test_update_unknown_is_404(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        r = await c.put("/api/namespaces/ghost", json={"description": "x"})
        assert_error(r, 404, "namespace_not_found", namespace="ghost")


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"retention_days": 0}, {"retention_days"}),
        ({"retention_days": 366}, {"retention_days"}),
        ({"retention_days": "x"}, {"retention_days"}),
        ({"description": "d" * 1001}, {"description"}),
        ([], {"body"}),
        (None, {"body"}),
    ],
)
async def test_update_validation(server: RunningServer, payload: Any, fields: set[str]) -> None:
    async with server.client(**CP) as c:
        r = await c.put("/api/namespaces/default", content=orjson.dumps(payload), headers=JSON_CT)
        assert_validation(r, fields)
        assert (await c.get("/api/namespaces/default")).json()["retention_days"] == 30


# --- external storage --------------------------------------------------------------------
async def test_external_storage_policy(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        r = await c.put(
            "/api/namespaces/default/external-storage",
            json={
                "driver": "s3",
                "threshold_bytes": 1024,
                "config": {
                    "bucket": "payloads",
                    "region": "",
                    "prefix": None,
                    "endpoint": "http://minio:9000",
                    "not_a_field": "ignored",
                },
            },
        )
        assert r.status_code == 200, r.text
        assert r.headers[CP_HEADER] == "2"
        body = r.json()
        assert_namespace(body)  # the full object, both timestamps
        assert body["external_payload_storage"] == {
            "driver": "s3",
            "enabled": True,
            "threshold_bytes": 1024,
            "config": {"bucket": "payloads", "endpoint": "http://minio:9000"},
        }
        stored = (await c.get("/api/namespaces/default")).json()
        assert stored["external_payload_storage"] == body["external_payload_storage"]

        # a new policy replaces the old one entirely
        r = await c.put(
            "/api/namespaces/DEFAULT/external-storage", json={"driver": "local", "enabled": False}
        )
        assert r.status_code == 200, r.text
        assert r.json()["external_payload_storage"] == {"driver": "local", "enabled": False}

        # a config whose values are all empty is dropped
        r = await c.put(
            "/api/namespaces/default/external-storage",
            json={"driver": "gcs", "config": {"bucket": "", "uri": None}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["external_payload_storage"] == {"driver": "gcs", "enabled": True}
        listed = (await c.get("/api/namespaces")).json()["namespaces"][0]
        assert listed["external_payload_storage"] == {"driver": "gcs", "enabled": True}


@pytest.mark.parametrize("driver", ["local", "s3", "gcs", "azure"])
async def test_external_storage_drivers(server: RunningServer, driver: str) -> None:
    async with server.client(**CP) as c:
        r = await c.put("/api/namespaces/default/external-storage", json={"driver": driver})
    assert r.status_code == 200, r.text
    assert r.json()["external_payload_storage"] == {"driver": driver, "enabled": True}


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"driver"}),
        ({"driver": "ftp"}, {"driver"}),
        ({"driver": "S3"}, {"driver"}),
        ({"driver": None}, {"driver"}),
        ({"driver": "s3", "enabled": "yes"}, {"enabled"}),
        ({"driver": "s3", "threshold_bytes": 0}, {"threshold_bytes"}),
        ({"driver": "s3", "threshold_bytes": "big"}, {"threshold_bytes"}),
        ({"driver": "s3", "config": "bucket"}, {"config"}),
        ({"driver": "s3", "config": ["uri"]}, {"config"}),
        ({"driver": "s3", "config": {"bucket": "b" * 256}}, {"config.bucket"}),
        ({"driver": "s3", "config": {"region": "r" * 129}}, {"config.region"}),
        ({"driver": "s3", "config": {"uri": 5}}, {"config.uri"}),
        (["s3"], {"body"}),
    ],
)
async def test_external_storage_validation(
    server: RunningServer, payload: Any, fields: set[str]
) -> None:
    async with server.client(**CP) as c:
        r = await c.put("/api/namespaces/default/external-storage", json=payload)
        assert_validation(r, fields)
        stored = (await c.get("/api/namespaces/default")).json()
        assert stored["external_payload_storage"] is None


async def test_external_storage_unknown_namespace_is_404(server: RunningServer) -> None:
    async with server.client(**CP) as c:
        r = await c.put("/api/namespaces/ghost/external-storage", json={"driver": "s3"})
        assert_error(r, 404, "namespace_not_found", namespace="ghost")


# --- a new namespace is usable -----------------------------------------------------------
async def test_new_namespace_passes_the_namespace_gate(start_server: StartServer) -> None:
    srv = await start_server(worker_token="w")
    async with srv.client(**CP) as c:
        r = await c.get(WORKFLOW_ROUTE, headers={"X-Namespace": "newns"})
        assert_error(r, 404, "namespace_not_found", namespace="newns")
        assert (await c.post("/api/namespaces", json={"name": "NewNS"})).status_code == 201

        r = await c.get("/api/namespaces", headers={"X-Namespace": "newns"})
        assert r.status_code == 200
        for headers, params in [
            ({"X-Namespace": "newns"}, {}),
            ({"X-Namespace": "NEWNS"}, {}),
            ({}, {"namespace": "newns"}),
        ]:
            r = await c.get(WORKFLOW_ROUTE, headers=headers, params=params)
            # past the namespace gate: the route itself is unknown
            assert_error(r, 404, "not_found")
    async with srv.client(token="w", **WP, **{"X-Namespace": "newns"}) as c:
        r = await c.post(WORKER_ROUTE)
        assert r.status_code == 404
        assert r.json()["reason"] == "not_found"
