"""The public probes: ``GET /api/health`` and ``GET /api/ready``
(cluster-info-and-readiness.md §1-§2).

No authentication, no version headers (on requests or responses), and a
readiness verdict built from exactly five checks.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest

from dwtrio.store.pool import Conn, connect_once

from conftest import Databases, RunningServer, StartServer

OFFSET_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")
CHECKS = {"database", "migrations", "default_namespace", "cache", "auth"}
VERSION_HEADERS = (
    "x-durable-workflow-control-plane-version",
    "x-durable-workflow-protocol-version",
)


def assert_probe_response(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    for header in VERSION_HEADERS:
        assert header not in r.headers
    body = r.json()
    assert OFFSET_TIMESTAMP.match(body["timestamp"]), body["timestamp"]
    return body  # type: ignore[no-any-return]


async def ready(srv: RunningServer) -> httpx.Response:
    async with srv.client(token=None) as c:
        return await c.get("/api/ready")


# --- health ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer garbage"},
        {"X-Namespace": "ghost"},
        {
            "X-Durable-Workflow-Control-Plane-Version": "2",
            "X-Durable-Workflow-Protocol-Version": "1.0",
        },
        {"X-Durable-Workflow-Control-Plane-Version": "3"},
    ],
)
async def test_health(server: RunningServer, headers: dict[str, str]) -> None:
    async with server.client(token=None, **headers) as c:
        r = await c.get("/api/health")
    body = assert_probe_response(r, 200)
    assert set(body) == {"status", "timestamp", "checks"}
    assert body["status"] == "serving"
    assert body["checks"] == {"database": "ok"}


async def test_health_needs_no_auth_config(start_server: StartServer) -> None:
    srv = await start_server(admin_token=None)
    async with srv.client(token=None) as c:
        r = await c.get("/api/health")
    assert assert_probe_response(r, 200)["status"] == "serving"


# --- ready -------------------------------------------------------------------------------
async def test_ready(server: RunningServer) -> None:
    body = assert_probe_response(await ready(server), 200)
    assert set(body) == {"status", "timestamp", "checks"}
    assert body["status"] == "ready"
    checks = body["checks"]
    assert set(checks) == CHECKS
    assert all(check["status"] == "ok" for check in checks.values()), checks
    assert checks["database"] == {"status": "ok"}
    assert checks["migrations"] == {"status": "ok"}
    assert checks["default_namespace"] == {"status": "ok", "namespace": "default"}
    assert checks["auth"] == {"status": "ok", "driver": "token"}
    assert isinstance(checks["cache"]["store"], str) and checks["cache"]["store"]


async def test_ready_ignores_credentials_and_namespace(server: RunningServer) -> None:
    async with server.client(token="garbage", **{"X-Namespace": "ghost"}) as c:
        r = await c.get("/api/ready")
    assert assert_probe_response(r, 200)["status"] == "ready"


async def test_ready_on_empty_database(start_server: StartServer, databases: Databases) -> None:
    """No migrations applied: not ready, and it says why."""
    dsn = databases.dsn(await databases.create(empty=True))
    srv = await start_server(dsn=dsn)
    body = assert_probe_response(await ready(srv), 503)
    assert body["status"] == "not_ready"
    checks = body["checks"]
    assert set(checks) == CHECKS
    assert checks["database"] == {"status": "ok"}
    assert checks["migrations"]["status"] == "missing"
    assert isinstance(checks["migrations"]["remediation"], str)
    assert checks["migrations"]["remediation"]
    assert checks["default_namespace"]["status"] != "ok"
    assert checks["default_namespace"]["namespace"] == "default"
    assert checks["auth"] == {"status": "ok", "driver": "token"}
    # liveness only needs the database connection
    async with srv.client(token=None) as c:
        r = await c.get("/api/health")
    assert assert_probe_response(r, 200)["checks"] == {"database": "ok"}


async def test_ready_on_a_schema_migrated_by_a_newer_release(
    start_server: StartServer, databases: Databases, caplog: pytest.LogCaptureFixture
) -> None:
    """A node of the previous release during a rolling upgrade: the database holds a
    migration it does not know. It stays ready, lists the migration and says so at start."""
    dsn = databases.dsn(await databases.create(empty=True))
    await start_server(dsn=dsn, bootstrap=True)

    async def insert_future(conn: Conn) -> None:
        await conn.execute(
            "INSERT INTO dwtrio_schema_migrations (version, name, checksum)"
            " VALUES (9999, 'from_a_newer_release', 'x')"
        )

    await connect_once(dsn, insert_future)
    with caplog.at_level(logging.WARNING, logger="dwtrio.store.migrate"):
        srv = await start_server(dsn=dsn)  # no bootstrap: as under DW_AUTO_BOOTSTRAP=false
    assert "newer dwtrio release (9999_from_a_newer_release)" in caplog.text
    body = assert_probe_response(await ready(srv), 200)
    assert body["checks"]["migrations"] == {
        "status": "ok",
        "newer_migrations": ["9999_from_a_newer_release"],
    }


async def test_ready_when_default_namespace_missing(start_server: StartServer) -> None:
    srv = await start_server(default_namespace="elsewhere")
    body = assert_probe_response(await ready(srv), 503)
    assert body["status"] == "not_ready"
    check = body["checks"]["default_namespace"]
    assert check["status"] == "missing"
    assert check["namespace"] == "elsewhere"
    assert isinstance(check["remediation"], str) and check["remediation"]
    assert body["checks"]["migrations"] == {"status": "ok"}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"admin_token": None}, "missing"),
        ({"admin_token": None, "auth_token": "t", "auth_backward_compatible": False}, "missing"),
        ({"auth_driver": "signature"}, "missing"),
        ({"auth_driver": "ldap"}, "invalid"),
    ],
)
async def test_ready_when_auth_unusable(
    start_server: StartServer, overrides: dict[str, Any], expected: str
) -> None:
    srv = await start_server(**overrides)
    body = assert_probe_response(await ready(srv), 503)
    assert body["status"] == "not_ready"
    auth = body["checks"]["auth"]
    assert auth["status"] == expected
    assert auth["driver"] == overrides.get("auth_driver", "token")
    assert isinstance(auth["remediation"], str) and auth["remediation"]
    # every other check is fine: auth alone makes it not ready
    others = {k: v["status"] for k, v in body["checks"].items() if k != "auth"}
    assert others == dict.fromkeys(CHECKS - {"auth"}, "ok")


@pytest.mark.parametrize(
    ("overrides", "driver"),
    [
        ({"auth_driver": "none", "admin_token": None}, "none"),
        ({"admin_token": None, "auth_token": "legacy"}, "token"),
        ({"admin_token": None, "worker_token": "w"}, "token"),
        ({"auth_driver": "signature", "admin_token": None, "signature_key": "k"}, "signature"),
        ({"auth_driver": "signature", "operator_signature_key": "k"}, "signature"),
    ],
)
async def test_ready_auth_ok(
    start_server: StartServer, overrides: dict[str, Any], driver: str
) -> None:
    srv = await start_server(**overrides)
    body = assert_probe_response(await ready(srv), 200)
    assert body["checks"]["auth"] == {"status": "ok", "driver": driver}
