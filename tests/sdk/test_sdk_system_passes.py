"""SDK 2.12.0 ``repair_status``, ``repair_pass``, ``activity_timeout_status``,
``activity_timeout_pass``, ``retention_status`` and ``retention_pass`` against dwtrio
(driver in a subprocess), and retention pruning 10,000 old runs while an SDK worker
keeps running workflows in the same namespace.

Contract: control-plane.md §11 (the SDK passes the answers through as dicts),
data-model.md §4.7 (what retention prunes and keeps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from retention_support import KEEPERS, counts, load, shapes_of_the_keepers

from conftest import CP, StartServer
from sdk_helpers import TOKEN, history, run_driver, start_sdk_server

DRIVER = "system_passes_driver.py"

pytestmark = pytest.mark.sdk


async def test_the_six_sdk_methods(start_server: StartServer, db_dsn: str) -> None:
    server = await start_sdk_server(start_server, retention_enabled=False)
    await load(db_dsn, runs=4, prefix="sdk")
    out = await run_driver(server, DRIVER, "calls")
    assert out["repair_status"]["policy"]["scan_limit"] == 500
    assert out["repair_status"]["candidates"]["total_candidates"] == 0
    for key in ("repair_pass", "repair_pass_runs", "repair_pass_instance"):
        report = out[key]
        assert report["existing_task_failures"] == [] and report["missing_run_failures"] == []
        assert report["command_contract_failures"] == []
        assert report["selected_command_contract_candidates"] == 0
    assert out["repair_pass"]["run_ids"] is None
    assert out["repair_pass_runs"]["run_ids"] == ["run-nobody"]
    assert out["repair_pass_instance"]["run_ids"] == []
    assert out["activity_timeout_status"]["expired_count"] == 0
    assert out["activity_timeout_status"]["scan_limit"] == 100
    for key in ("activity_timeout_pass", "activity_timeout_pass_ids"):
        assert out[key]["processed"] == 0 and out[key]["failed"] == 0
    status = out["retention_status"]
    assert status["namespace"] == "default" and status["retention_days"] == 30
    assert status["expired_run_count"] == 4
    assert out["retention_pass_ids"]["results"] == [
        {"run_id": "run-sdk000000000", "outcome": "pruned", "history_events": 20}
    ]
    assert out["retention_pass_limit"]["pruned"] == 2
    assert out["retention_pass"]["pruned"] == 1
    assert out["refused"]["type"] == "InvalidArgument"  # the 422, as the SDK raises it
    assert all(v == 0 for v in (await counts(db_dsn, "sdk")).values())


async def test_ten_thousand_old_runs_are_pruned_while_an_sdk_worker_runs_workflows(
    start_server: StartServer, db_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Done means: the 10,000 runs leave no row in any table; nothing open, nothing
    inside the window and no SDK workflow is touched; the SDK workflows all complete."""
    # Closed 20 days ago: inside the default 30-day window until the operator shortens it.
    await load(db_dsn, runs=10_000, prefix="d", closed_days_ago=20)
    await shapes_of_the_keepers(db_dsn)
    loaded = await counts(db_dsn, "d")
    assert loaded["workflow_runs"] == 10_000 and loaded["history_events"] == 200_000
    server = await start_sdk_server(
        start_server, retention_interval_s=0.2, retention_batch_size=100
    )
    stop_file = tmp_path / "stop"
    monkeypatch.setenv("SP_STOP_FILE", str(stop_file))
    result: dict[str, Any] = {}

    async def drive() -> None:
        result.update(await run_driver(server, DRIVER, "busy"))

    async with trio.open_nursery() as n:
        n.start_soon(drive)
        await trio.sleep(3)  # the worker is polling and workflows are running
        assert (await counts(db_dsn, "d"))["workflow_runs"] == 10_000  # nothing expired yet
        async with server.client(TOKEN, **CP) as c:
            r = await c.put("/api/namespaces/default", json={"retention_days": 2})
            assert r.status_code == 200, r.text
        seen_during: list[int] = []
        with trio.fail_after(120):
            while (left := (await counts(db_dsn, "d"))["workflow_runs"]) > 0:
                seen_during.append(left)
                await trio.sleep(0.25)
        assert not result, "the SDK workload should still be running while pruning"
        stop_file.write_text("pruned")  # the driver finishes the workflows it started
    assert all(v == 0 for v in (await counts(db_dsn, "d")).values())
    for keeper in KEEPERS:
        kept = await counts(db_dsn, keeper)
        assert kept["workflow_runs"] == 1 and kept["history_events"] == 20, (keeper, kept)
    results = result["results"]
    assert [r["result"] for r in results] == [f"value={2 * i}" for i in range(len(results))]
    assert len(results) >= 8 and result["stopped_by_file"], result
    assert len(seen_during) >= 2  # pruning took more than one look: it overlapped the workload
    for r in results[:: len(results) // 6]:
        events = await history(server, r["workflow_id"], r["run_id"])
        assert events[-1]["event_type"] == "WorkflowCompleted"
