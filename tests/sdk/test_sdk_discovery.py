"""The official ``durable_workflow`` SDK discovers and manages a live dwtrio.

The SDK runs in a subprocess (``sdk_driver.py``, plain ``asyncio.run``): this
process runs Trio and the server under test. The
subprocess is started with ``trio.run_process`` so the in-process server keeps
answering while the SDK talks to it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from conftest import ADMIN_TOKEN, StartServer

pytestmark = pytest.mark.sdk

DRIVER = Path(__file__).with_name("sdk_driver.py")
DRIVER_TIMEOUT_S = 120

SHARED = "shared-token"
WORKER = "worker-token"
OPERATOR = "operator-token"


async def drive(scenario: str, base_url: str, **spec: Any) -> dict[str, Any]:
    """Run one driver scenario in a subprocess; return its ``result`` object."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_WORKFLOW_")}
    payload = json.dumps({"scenario": scenario, "base_url": base_url, **spec})
    with trio.fail_after(DRIVER_TIMEOUT_S):
        proc = await trio.run_process(
            [sys.executable, str(DRIVER), payload],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"driver {scenario} failed:\n{proc.stdout.decode()}\n{stderr}"
    out = json.loads(proc.stdout)
    assert out["ok"] is True, out
    return out["result"]


def assert_manifest(info: dict[str, Any]) -> None:
    assert info["control_plane"]["version"] == "2"
    assert info["control_plane"]["header"] == "X-Durable-Workflow-Control-Plane-Version"
    assert info["worker_protocol"]["version"] == "1.20"
    assert info["default_namespace"] == "default"
    assert info["auth_composition_contract"]["schema"]


@pytest.mark.parametrize("auth", ["admin", "legacy_shared"])
async def test_client_discovery_and_namespaces(start_server: StartServer, auth: str) -> None:
    if auth == "admin":
        server, token = await start_server(), ADMIN_TOKEN
    else:
        server, token = await start_server(admin_token=None, auth_token=SHARED), SHARED
    r = await drive("discovery", server.url, token=token, new_namespace="billing")

    assert_manifest(r["cluster_info"])
    assert r["compatibility"] == {"accepted": True}
    assert r["health"]["status"] == "serving"
    assert r["health"]["checks"] == {"database": "ok"}

    assert r["list_type"] == "NamespaceList"
    assert r["list_item_types"] == ["NamespaceDescription"]
    [default] = r["namespaces"]
    assert default["name"] == "default"
    assert default["status"] == "active"
    assert default["retention_days"] == 30
    assert default["created_at"]

    assert r["created_type"] == "NamespaceDescription"
    assert r["created"]["name"] == "billing"
    assert r["created"]["description"] == "made by the SDK"
    assert r["created"]["retention_days"] == 7
    assert r["created"]["status"] == "active"
    assert r["created"]["created_at"]

    assert r["described_type"] == "NamespaceDescription"
    described = r["described"]
    assert (described["name"], described["description"], described["retention_days"]) == (
        "billing",
        "made by the SDK",
        7,
    )
    assert described["status"] == "active"
    assert described["created_at"] == r["created"]["created_at"]

    assert r["updated_type"] == "NamespaceDescription"
    assert r["updated"]["name"] == "billing"
    assert r["updated"]["description"] == "changed by the SDK"
    assert r["updated"]["retention_days"] == 14
    assert r["updated"]["updated_at"]
    after = r["described_after_update"]
    assert (after["description"], after["retention_days"]) == ("changed by the SDK", 14)
    assert after["created_at"] == r["created"]["created_at"]
    assert r["listed_after"] == ["billing", "default"]

    dup = r["duplicate_create_error"]
    assert (dup["type"], dup["status"]) == ("ServerError", 409)
    assert dup["body"]["reason"] == "namespace_already_exists"

    ghost = r["ghost_error"]
    assert ghost["type"] == "NamespaceNotFound"
    assert ghost["module"] == "durable_workflow.errors"
    assert "ghost" in ghost["message"]


async def test_bad_token_raises_unauthorized(start_server: StartServer) -> None:
    server = await start_server()
    r = await drive("bad_token", server.url)
    for key in ("cluster_info_error", "list_namespaces_error"):
        err = r[key]
        assert err["type"] == "Unauthorized", err
        assert err["module"] == "durable_workflow.errors"
        assert err["is_sdk_error"] is True


async def test_discovery_with_role_tokens(start_server: StartServer) -> None:
    server = await start_server(admin_token=None, worker_token=WORKER, operator_token=OPERATOR)
    r = await drive("role_tokens", server.url, worker_token=WORKER, operator_token=OPERATOR)

    # Client(control_token=..., worker_token=...): discovery goes out as a worker request.
    assert_manifest(r["both_cluster_info"])
    assert r["both_compatibility"] == {"accepted": True}
    headers = r["both_discovery_headers"]
    assert headers["authorization"] == f"Bearer {WORKER}"
    assert headers["x-durable-workflow-protocol-version"] == "1.20"
    assert "x-durable-workflow-control-plane-version" not in headers
    assert r["both_namespaces"] == ["default"]  # the control plane uses the operator token

    assert_manifest(r["worker_only_cluster_info"])
    assert r["worker_only_compatibility"] == {"accepted": True}
    # The SDK itself refuses a worker-only client on the control plane, before any request.
    assert r["worker_only_list_error"]["type"] == "ValueError"
    assert "control_token" in r["worker_only_list_error"]["message"]

    assert_manifest(r["operator_only_cluster_info"])
    assert r["operator_only_compatibility"] == {"accepted": True}

    misused = r["worker_token_on_control_plane_error"]
    assert (misused["type"], misused["status"]) == ("ServerError", 403)
    assert misused["body"]["reason"] == "forbidden"
    assert misused["body"]["role"] == "worker"


@pytest.mark.parametrize("auth", ["legacy_shared", "role_tokens"])
async def test_worker_starts_registers_and_polls(start_server: StartServer, auth: str) -> None:
    """``Worker.run()``: manifest, compatibility gate, registration, both pollers, clean stop.

    The worker starts under the split role tokens too: discovery and every worker
    route with the worker token.
    """
    if auth == "legacy_shared":
        server = await start_server(admin_token=None, auth_token=SHARED)
        tokens: dict[str, str] = {"token": SHARED}
    else:
        server = await start_server(admin_token=None, worker_token=WORKER, operator_token=OPERATOR)
        tokens = {"worker_token": WORKER, "operator_token": OPERATOR}
    r = await drive("worker_start", server.url, **tokens)

    assert r["run_error"] is None, r
    assert r["registered"] is True
    assert r["polling"] is True, r["requests"]
    assert r["requests"][:2] == ["GET /api/cluster/info", "POST /api/worker/register"]
    assert r["responses"][:2] == [
        "GET /api/cluster/info -> 200",
        "POST /api/worker/register -> 201",
    ]
    assert {"POST /api/worker/workflow-tasks/poll", "POST /api/worker/activity-tasks/poll"} <= set(
        r["requests"]
    )
    failed = [x for x in r["responses"] if int(x.rsplit(" ", 1)[1]) >= 400]
    assert failed == [], failed
    # stop() cancels the long-polls and deregisters the worker, fenced by the
    # registration_token its registration was answered with.
    assert (
        r["responses"][-1] == "POST /api/worker/registrations/sdk-driver-worker/deregister -> 200"
    )
    assert r["stop_s"] < 15
