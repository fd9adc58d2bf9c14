"""SDK 2.12.0 ``export_history`` against dwtrio (driver in a subprocess): the bundle the SDK
fetches passes the SDK's own offline verifier, signed and unsigned, and its events replay
under the SDK's ``Replayer`` to the workflow's completion.

Contract: control-plane.md §6.2; the verifier is ``durable_workflow.history_bundle_verify``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from conftest import RunningServer, StartServer
from sdk_helpers import DRIVER_TIMEOUT_S, TOKEN, start_sdk_server

DRIVER = Path(__file__).with_name("history_export_driver.py")
KEY, KEY_ID = "sdk-export-key", "sdk-k1"

pytestmark = pytest.mark.sdk


async def run_export(server: RunningServer, key: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    if key:
        env["EXPORT_SIGNING_KEY"] = key
    with trio.fail_after(DRIVER_TIMEOUT_S):
        proc = await trio.run_process(
            [sys.executable, str(DRIVER), "export", server.url, TOKEN],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    out: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return out


def check_closed_run(out: dict[str, Any]) -> None:
    assert out["result"] == "hello, sdk"
    assert out["schema"] == "durable-workflow.v2.history-export"
    assert out["workflow"]["status"] == "completed"
    assert out["workflow"]["run_id"] == out["run_id"]
    assert out["same_events"] is True
    assert "WorkflowStarted" in out["event_types"]
    assert out["event_types"][-1] == "WorkflowCompleted"
    assert out["activities"] == ["export-greet"]
    assert out["replay_completes"] is True
    assert {"type": "CompleteWorkflow", "result": "hello, sdk"} in out["replay"]
    assert out["open"]["history_complete"] is False
    assert out["open"]["verify"]["checksum_matches"] is True


async def test_an_unsigned_export_verifies_and_replays(start_server: StartServer) -> None:
    server = await start_sdk_server(start_server)
    out = await run_export(server, None)
    check_closed_run(out)
    assert out["signed"] is False
    assert out["verify"]["status"] == "ok", out["verify"]
    assert out["verify"]["checksum_matches"] is True
    assert out["open"]["verify"]["status"] == "ok", out["open"]


async def test_a_signed_export_verifies_under_its_key(start_server: StartServer) -> None:
    server = await start_sdk_server(
        start_server, history_export_signing_key=KEY, history_export_signing_key_id=KEY_ID
    )
    out = await run_export(server, KEY)
    check_closed_run(out)
    assert out["signed"] is True
    assert out["verify_with_key"]["status"] == "ok", out["verify_with_key"]
    assert out["verify_with_key"]["signature_verified"] is True
    assert out["verify_wrong_key"]["status"] == "failed"
    assert "integrity.signature_mismatch" in out["verify_wrong_key"]["rules"]
    # Without the key the SDK cannot check the signature: a warning, not a failure.
    assert out["verify"]["status"] == "warning"
    assert out["verify"]["checksum_matches"] is True
    assert out["open"]["verify"]["status"] == "ok", out["open"]
