"""``GET /api/workflows/{wf}/runs/{run}/history/export``: the replay bundle (control-plane.md §6.2).

The checksum is recomputed here without dwtrio's code (sorted keys, compact JSON,
ASCII escapes: the SDK verifier's canonical form for bundles without floats), and
every bundle also goes through the SDK's own offline verifier in a subprocess
(``python -m durable_workflow.history_bundle_verify``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from dwtrio import cli, payloads
from dwtrio.store.pool import Conn, connect_once

from conftest import StartServer
from http_clients import Clients

TOKEN = "t"
QUEUE = "export-q"
KEY, KEY_ID = "export-secret", "k-2026"
SECTIONS = ("commands", "signals", "updates", "tasks", "activities", "timers", "failures")


def canonical_bytes(bundle: dict[str, Any]) -> bytes:
    rest = {k: v for k, v in bundle.items() if k != "integrity"}
    return json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sdk_verify(tmp_path: Path, raw: bytes, *extra: str) -> dict[str, Any]:
    path = tmp_path / "bundle.json"
    path.write_bytes(raw)
    proc = subprocess.run(
        [sys.executable, "-m", "durable_workflow.history_bundle_verify", str(path), *extra],
        capture_output=True,
        check=False,
        timeout=60,
    )
    report: dict[str, Any] = json.loads(proc.stdout)
    report["exit_code"] = proc.returncode
    return report


@attrs.define
class Exporter(Clients):
    async def export(self, wf: str, run_id: str, **headers: str) -> httpx.Response:
        return await self.cc.get(
            f"/api/workflows/{wf}/runs/{run_id}/history/export", headers=headers
        )

    async def poll(self) -> dict[str, Any]:
        r = await self.wc.post(
            "/api/worker/workflow-tasks/poll",
            json={"worker_id": "w1", "task_queue": QUEUE, "timeout_seconds": 5},
        )
        assert r.status_code == 200, r.text
        task: dict[str, Any] = r.json()["task"]
        assert task is not None
        return task

    async def finished_run(self, wf: str) -> str:
        """A run that was signalled, then completed with ``"done"``; returns its run id."""
        run_id: str = (await self.start_workflow(wf, "exported", QUEUE, ["in", 1]))["run_id"]
        r = await self.cc.post(
            f"/api/workflows/{wf}/signal/poke",
            json={"input": {"codec": "avro", "blob": payloads.encode(["é ☃ 𝄞"])}},
        )
        assert r.status_code == 202, r.text
        task = await self.poll()
        await self.complete(task, [{"type": "complete_workflow", "result": "done"}])
        return run_id


@pytest.fixture
async def ex(start_server: StartServer) -> AsyncIterator[Exporter]:
    async with Exporter.open(start_server, TOKEN) as exporter:
        yield exporter


@pytest.fixture
async def signed(start_server: StartServer) -> AsyncIterator[Exporter]:
    async with Exporter.open(
        start_server,
        TOKEN,
        history_export_signing_key=KEY,
        history_export_signing_key_id=KEY_ID,
    ) as exporter:
        yield exporter


async def test_the_bundle_of_a_closed_run(ex: Exporter, tmp_path: Path) -> None:
    run_id = await ex.finished_run("exp-1")
    r = await ex.export("exp-1", run_id)
    assert r.status_code == 200, r.text
    assert r.headers["x-durable-workflow-control-plane-version"] == "2"
    assert r.headers["content-type"].startswith("application/json")
    bundle = r.json()
    assert "control_plane" not in bundle
    assert bundle["schema"] == "durable-workflow.v2.history-export"
    assert bundle["schema_version"] == 1
    assert bundle["history_complete"] is True
    assert bundle["exported_at"].endswith("Z")

    # Events: the paged history's, in sequence order, under the export's names.
    paged = await ex.history("exp-1", run_id)
    events = bundle["history_events"]
    assert [e["sequence"] for e in events] == list(range(1, len(paged) + 1))
    assert [e["type"] for e in events] == [e["event_type"] for e in paged]
    assert [e["recorded_at"] for e in events] == [e["timestamp"] for e in paged]
    assert [e["payload"] for e in events] == [e["payload"] for e in paged]
    assert events[-1]["type"] == "WorkflowCompleted"
    assert len({e["id"] for e in events}) == len(events)

    wf = bundle["workflow"]
    assert (wf["instance_id"], wf["run_id"], wf["run_number"]) == ("exp-1", run_id, 1)
    assert wf["is_current_run"] is True and wf["current_run_id"] == run_id
    assert (wf["workflow_type"], wf["queue"]) == ("exported", QUEUE)
    assert (wf["status"], wf["status_bucket"], wf["closed_reason"]) == (
        "completed",
        "completed",
        "completed",
    )
    assert wf["last_history_sequence"] == len(events)
    assert wf["closed_at"] is not None

    p = bundle["payloads"]
    assert p["codec"] == "avro"
    assert payloads.decode(p["arguments"]["data"]) == ["in", 1]
    assert payloads.decode(p["output"]["data"]) == "done"
    assert p["arguments"]["available"] and p["output"]["available"]

    for section in SECTIONS:
        assert isinstance(bundle[section], list), section
    [signal] = bundle["signals"]
    assert signal["signal_name"] == "poke"
    assert payloads.decode(signal["arguments"]) == ["é ☃ 𝄞"]
    assert {c["type"] for c in bundle["commands"]} >= {"start", "signal"}
    assert {t["task_type"] for t in bundle["tasks"]} == {"workflow"}
    assert bundle["activities"] == [] and bundle["timers"] == [] and bundle["updates"] == []
    assert bundle["links"] == {"parents": [], "children": []}
    assert bundle["redaction"] == {"applied": False, "policy": None, "paths": []}
    assert bundle["waits"] == [] and bundle["timeline"] == []
    manifest = bundle["payload_manifest"]
    assert manifest["version"] == 1
    paths = {e["path"]: e for e in manifest["entries"]}
    assert paths["payloads.arguments.data"]["avro_framing"] == "single_object"
    assert "signals.0.arguments" in paths
    assert bundle["codec_schemas"]["avro"]["writer_schema_fingerprint"].startswith("crc64-avro:")

    integrity = bundle["integrity"]
    assert integrity["canonicalization"] == "json-recursive-ksort-v1"
    assert integrity["checksum_algorithm"] == "sha256"
    assert integrity["checksum"] == hashlib.sha256(canonical_bytes(bundle)).hexdigest()
    assert integrity["signature"] is None and integrity["signature_algorithm"] is None
    assert integrity["key_id"] is None
    # The body is the canonical form itself, with integrity appended last.
    assert r.content.startswith(canonical_bytes(bundle)[:-1] + b',"integrity":')

    report = sdk_verify(tmp_path, r.content)
    assert report["status"] == "ok", report["findings"]
    assert report["integrity"]["checksum_matches"] is True
    assert report["exit_code"] == 0


async def test_an_open_run_exports_what_it_has(ex: Exporter, tmp_path: Path) -> None:
    run_id = (await ex.start_workflow("exp-open", "exported", QUEUE, []))["run_id"]
    r = await ex.export("exp-open", run_id)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["history_complete"] is False
    assert bundle["workflow"]["status"] in ("pending", "running", "waiting")
    assert bundle["workflow"]["closed_at"] is None
    assert bundle["payloads"]["output"] == {"available": False, "data": None}
    assert [e["type"] for e in bundle["history_events"]][-1] == "WorkflowStarted"
    assert [t["status"] for t in bundle["tasks"]] == ["ready"]
    report = sdk_verify(tmp_path, r.content)
    assert report["status"] == "ok", report["findings"]


async def test_a_signed_bundle(signed: Exporter, tmp_path: Path) -> None:
    run_id = await signed.finished_run("exp-signed")
    r = await signed.export("exp-signed", run_id)
    bundle = r.json()
    integrity = bundle["integrity"]
    data = canonical_bytes(bundle)
    assert integrity["checksum"] == hashlib.sha256(data).hexdigest()
    assert integrity["signature_algorithm"] == "hmac-sha256"
    assert integrity["key_id"] == KEY_ID
    assert integrity["signature"] == hmac.new(KEY.encode(), data, hashlib.sha256).hexdigest()

    good = sdk_verify(tmp_path, r.content, "--signing-key", KEY)
    assert good["status"] == "ok", good["findings"]
    assert good["integrity"]["signature_verified"] is True
    wrong = sdk_verify(tmp_path, r.content, "--signing-key", "not-the-key")
    assert wrong["status"] == "failed" and wrong["exit_code"] == 1
    assert "integrity.signature_mismatch" in wrong["summary"]["findings_by_rule"]
    keyless = sdk_verify(tmp_path, r.content)
    assert keyless["status"] == "warning"  # signed, but no key to check it with


async def test_unknown_runs_are_404_without_an_envelope(ex: Exporter) -> None:
    run_id = await ex.finished_run("exp-404")
    other = (await ex.start_workflow("exp-other", "exported", QUEUE, []))["run_id"]
    for wf, run in [
        ("exp-404", "no-such-run"),
        ("no-such-workflow", run_id),
        ("exp-404", other),  # a run of another instance
        ("bad id!", run_id),  # an id no workflow can have
    ]:
        r = await ex.export(wf, run)
        assert r.status_code == 404, (wf, run, r.text)
        body = r.json()
        assert body["reason"] == "run_not_found"
        assert (body["workflow_id"], body["run_id"]) == (wf, run)
        assert "control_plane" not in body
        assert r.headers["x-durable-workflow-control-plane-version"] == "2"
    # Another namespace does not see the run.
    r = await ex.cc.post("/api/namespaces", json={"name": "elsewhere"})
    assert r.status_code in (200, 201), r.text
    r = await ex.export("exp-404", run_id, **{"X-Namespace": "elsewhere"})
    assert r.status_code == 404 and r.json()["reason"] == "run_not_found"


async def test_export_is_advertised(ex: Exporter) -> None:
    r = await ex.cc.get("/api/cluster/info")
    assert r.json()["capabilities"]["history_export"] is True


# --- a long history, streamed ----------------------------------------------------------

BIG = 20_000


async def add_events(dsn: str, run_id: str, count: int) -> None:
    """Append ``count`` signal events to a run straight in the database (a bulk load)."""

    async def run(conn: Conn) -> None:
        await conn.execute(
            """
            WITH base AS (SELECT last_history_sequence AS s FROM workflow_runs WHERE id = $1)
            INSERT INTO history_events (id, run_id, sequence, event_type, payload)
            SELECT 'bulk-' || lpad(g::text, 8, '0'), $1, base.s + g, 'SignalReceived',
                   jsonb_build_object('signal_name', 'tick', 'n', g, 'note', 'ünïcode ' || g)
              FROM base, generate_series(1, $2::int) AS g
            """,
            run_id,
            count,
        )
        await conn.execute(
            "UPDATE workflow_runs SET last_history_sequence = last_history_sequence + $2 "
            "WHERE id = $1",
            run_id,
            count,
        )

    await connect_once(dsn, run)


async def test_a_long_history_is_streamed(
    start_server: StartServer, db_dsn: str, tmp_path: Path
) -> None:
    async with Exporter.open(start_server, TOKEN) as ex:
        run_id = (await ex.start_workflow("exp-big", "exported", QUEUE, []))["run_id"]
        before = len(await ex.history("exp-big", run_id))
        await add_events(db_dsn, run_id, BIG)
        chunks = 0
        body = bytearray()
        async with ex.cc.stream("GET", f"/api/workflows/exp-big/runs/{run_id}/history/export") as r:
            assert r.status_code == 200
            assert "content-length" not in r.headers  # sent as it is made
            assert r.headers.get("transfer-encoding") == "chunked"
            async for chunk in r.aiter_raw():
                chunks += 1
                body += chunk
    assert chunks > 10
    bundle = json.loads(body)
    events = bundle["history_events"]
    assert len(events) == before + BIG
    assert [e["sequence"] for e in events] == list(range(1, before + BIG + 1))
    assert events[-1]["payload"]["n"] == BIG
    assert bundle["integrity"]["checksum"] == hashlib.sha256(canonical_bytes(bundle)).hexdigest()
    report = await trio.to_thread.run_sync(sdk_verify, tmp_path, bytes(body))
    assert report["status"] == "ok", report["findings"]
    assert report["bundle"]["history_event_count"] == before + BIG


# --- dwtrio history verify -------------------------------------------------------------


async def test_the_cli_verifies_a_bundle(
    signed: Exporter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = await signed.finished_run("exp-cli")
    raw = (await signed.export("exp-cli", run_id)).content
    good = tmp_path / "good.json"
    good.write_bytes(raw)

    assert cli.main(["history", "verify", str(good), "--signing-key", KEY]) == 0
    out = capsys.readouterr()
    assert "ok" in out.out and "signature ok" in out.out and KEY_ID in out.out

    assert cli.main(["history", "verify", str(good)]) == 0  # no key: checksum only
    assert "signature not checked" in capsys.readouterr().out

    assert cli.main(["history", "verify", str(good), "--signing-key", "wrong"]) == 1
    assert "signature mismatch" in capsys.readouterr().err

    bundle = json.loads(raw)
    bundle["history_events"][0]["type"] = "WorkflowTampered"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(bundle))
    assert cli.main(["history", "verify", str(tampered)]) == 1
    assert "checksum mismatch" in capsys.readouterr().err

    broken = tmp_path / "broken.json"
    broken.write_bytes(raw[: len(raw) // 2])  # a transfer cut short
    assert cli.main(["history", "verify", str(broken)]) == 1
    assert "cannot read the bundle" in capsys.readouterr().err


async def test_a_run_deleted_mid_export_cuts_the_body_short(
    start_server: StartServer, db_dsn: str
) -> None:
    async with Exporter.open(start_server, TOKEN) as ex:
        run_id = (await ex.start_workflow("exp-gone", "exported", QUEUE, []))["run_id"]
        await add_events(db_dsn, run_id, 40_000)  # ~18 MB: far more than socket buffers hold

        async def delete_run(conn: Conn) -> None:
            await conn.execute("DELETE FROM workflow_runs WHERE id = $1", run_id)

        body = bytearray()
        with pytest.raises(httpx.RemoteProtocolError):
            async with ex.cc.stream(
                "GET", f"/api/workflows/exp-gone/runs/{run_id}/history/export"
            ) as r:
                assert r.status_code == 200
                async for chunk in r.aiter_raw():
                    if not body:
                        await connect_once(db_dsn, delete_run)
                    body += chunk
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
