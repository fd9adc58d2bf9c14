"""Task repair and activity timeouts on demand: ``/api/system/repair[/pass]`` and
``/api/system/activity-timeouts[/pass]`` over real HTTP.

Contract: control-plane.md §11 (the shapes; the repair pass always carries the
command-contract and failure lists; 207 when a failure list is non-empty or
``failed > 0``), §3.6 (admin role). The background loops are slowed to an hour so
the passes here are the only ones acting; failures are provoked with a trigger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from retention_support import execute
from test_retention import ok
from test_worker_plane import TOKEN, Harness, activity_cmd

from conftest import StartServer

SLOW_LOOPS = {
    "timeout_check_interval_s": 3600.0,
    "task_repair_interval_s": 3600.0,
    "retention_enabled": False,
}
REFUSE = (
    "CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'refused by test trigger'; END $$"
)


@pytest.fixture
async def h(start_server: StartServer) -> AsyncIterator[Harness]:
    async with Harness.open(start_server, TOKEN, **SLOW_LOOPS) as hh:
        yield hh


async def timed_out_attempt(h: Harness, workflow_id: str, policy: dict[str, Any]) -> str:
    """Schedule an activity with a 1 s start-to-close, claim it, let the deadline pass."""
    task = await h.begin(workflow_id)
    cmd = activity_cmd(start_to_close_timeout=1, retry_policy=policy)
    await h.complete_wf(task, [cmd])
    act = await h.act_task()
    await trio.sleep(1.3)
    return str(act["activity_execution_id"])


async def test_activity_timeouts_status_and_pass(h: Harness, db_dsn: str) -> None:
    empty = ok(await h.cc.get("/api/system/activity-timeouts"))
    assert empty == {
        "namespace": "default",
        "expired_count": 0,
        "expired_execution_ids": [],
        "scan_limit": 100,
        "scan_pressure": False,
    }
    execution_id = await timed_out_attempt(h, "wf-to", {"max_attempts": 2, "backoff_seconds": [0]})
    status = ok(await h.cc.get("/api/system/activity-timeouts"))
    assert status["expired_count"] == 1 and status["expired_execution_ids"] == [execution_id]
    other = ok(
        await h.cc.post("/api/system/activity-timeouts/pass", json={"execution_ids": ["nope"]})
    )
    assert other["processed"] == 0 and other["results"] == []
    first = ok(await h.cc.post("/api/system/activity-timeouts/pass", json={"limit": 5}))
    assert first == {
        "namespace": "default",
        "processed": 1,
        "enforced": 1,
        "skipped": 0,
        "failed": 0,
        "results": [
            {
                "execution_id": execution_id,
                "outcome": "enforced",
                "has_retry": True,
                "timeout_kind": "start_to_close",
            }
        ],
    }
    # The retry is claimed and runs out of time too; this time the pass fails.
    await h.act_task("w2", timeout=4)
    await trio.sleep(1.3)
    await execute(
        db_dsn,
        REFUSE,
        "CREATE TRIGGER refuse BEFORE UPDATE ON activity_attempts FOR EACH ROW "
        "EXECUTE FUNCTION refuse_change()",
    )
    failed = ok(await h.cc.post("/api/system/activity-timeouts/pass", json={}), 207)
    assert failed["failed"] == 1 and failed["processed"] == 1
    [result] = failed["results"]
    assert result["execution_id"] == execution_id and result["outcome"] == "error"
    assert result["reason"] == "enforcement_failed" and "refused" in result["message"]
    await execute(db_dsn, "DROP TRIGGER refuse ON activity_attempts")
    last = ok(
        await h.cc.post(
            "/api/system/activity-timeouts/pass", json={"execution_ids": [execution_id]}
        )
    )
    assert last["results"] == [
        {
            "execution_id": execution_id,
            "outcome": "enforced",
            "has_retry": False,
            "timeout_kind": "start_to_close",
        }
    ]
    wf = await h.wf_task(timeout=4)  # the workflow hears of the timeout
    assert any(e["event_type"] == "ActivityTimedOut" for e in wf["history_events"])


REPAIR_PASS_KEYS = {
    "run_ids",
    "selected_existing_task_candidates",
    "repaired_existing_tasks",
    "expired_leases_repaired",
    "lost_worker_leases_repaired",
    "selected_missing_task_candidates",
    "repaired_missing_tasks",
    "dispatched_tasks",
    "selected_command_contract_candidates",
    "backfilled_command_contracts",
    "command_contract_backfill_unavailable",
    "command_contract_failures",
    "existing_task_failures",
    "missing_run_failures",
}


async def expire_leases(db_dsn: str) -> None:
    await execute(
        db_dsn,
        "UPDATE workflow_tasks SET lease_expires_at = now() - interval '1 second' "
        "WHERE state = 'leased'",
    )


async def test_repair_status_and_pass(h: Harness, db_dsn: str) -> None:
    status = ok(await h.cc.get("/api/system/repair"))
    assert status["policy"] == {
        "redispatch_after_seconds": 3600,
        "loop_throttle_seconds": 3600,
        "scan_limit": 500,
        "scan_strategy": "oldest_lease_expiry_first",
        "failure_backoff_max_seconds": 3600,
        "failure_backoff_strategy": "fixed_interval",
        "lost_worker_after_seconds": 60,
    }
    assert status["candidates"]["total_candidates"] == 0
    assert status["candidates"]["oldest_task_candidate_created_at"] is None
    started = await h.start("wf-rp")
    await h.wf_task()
    await expire_leases(db_dsn)
    status = ok(await h.cc.get("/api/system/repair"))
    cand = status["candidates"]
    assert cand["existing_task_candidates"] == 1 and cand["expired_lease_candidates"] == 1
    assert cand["missing_task_candidates"] == 0 and cand["scan_pressure"] is False
    assert cand["oldest_task_candidate_created_at"].endswith("Z")
    assert cand["max_task_candidate_age_ms"] >= 0

    swept = ok(await h.cc.post("/api/system/repair/pass", json={}))
    assert set(swept) == REPAIR_PASS_KEYS
    assert swept["run_ids"] is None
    assert swept["repaired_existing_tasks"] == 1 and swept["expired_leases_repaired"] == 1
    assert swept["existing_task_failures"] == [] and swept["command_contract_failures"] == []
    again = await h.wf_task("w2")  # ready again, for the next worker
    assert again["workflow_task_attempt"] == 2

    # Named runs: by run id, then by instance; an unknown run is simply not selected.
    await expire_leases(db_dsn)
    named = ok(
        await h.cc.post(
            "/api/system/repair/pass", json={"run_ids": [started["run_id"], "run-nobody"]}
        )
    )
    assert named["run_ids"] == [started["run_id"], "run-nobody"]
    assert named["selected_missing_task_candidates"] == 1
    assert named["repaired_existing_tasks"] == 1
    await h.wf_task("w3")
    await expire_leases(db_dsn)
    by_instance = ok(await h.cc.post("/api/system/repair/pass", json={"instance_id": "wf-rp"}))
    assert by_instance["run_ids"] == [started["run_id"]]
    assert by_instance["repaired_existing_tasks"] == 1

    # A sweep step that fails is listed, and the answer is 207.
    await h.wf_task("w4")
    await expire_leases(db_dsn)
    await execute(
        db_dsn,
        REFUSE,
        "CREATE TRIGGER refuse BEFORE UPDATE ON workflow_tasks FOR EACH ROW "
        "EXECUTE FUNCTION refuse_change()",
    )
    failed = ok(await h.cc.post("/api/system/repair/pass", json={}), 207)
    [failure] = failed["existing_task_failures"]
    assert failure["kind"] == "expired_workflow_task" and "refused" in failure["message"]
    failed_named = ok(
        await h.cc.post("/api/system/repair/pass", json={"run_ids": [started["run_id"]]}), 207
    )
    [failure] = failed_named["missing_run_failures"]
    assert failure["run_id"] == started["run_id"]
    await execute(db_dsn, "DROP TRIGGER refuse ON workflow_tasks")
    assert ok(await h.cc.post("/api/system/repair/pass", json={}))["repaired_existing_tasks"] == 1


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/system/repair/pass", {"run_ids": "r"}, "run_ids"),
        ("/api/system/repair/pass", {"run_ids": [""]}, "run_ids.0"),
        ("/api/system/repair/pass", {"run_ids": ["r"] * 101}, "run_ids"),
        ("/api/system/repair/pass", {"instance_id": ""}, "instance_id"),
        ("/api/system/repair/pass", {"instance_id": "x" * 129}, "instance_id"),
        ("/api/system/repair/pass", {"instance_id": 7}, "instance_id"),
        ("/api/system/activity-timeouts/pass", {"limit": 0}, "limit"),
        ("/api/system/activity-timeouts/pass", {"limit": "1"}, "limit"),
        ("/api/system/activity-timeouts/pass", {"execution_ids": {"a": 1}}, "execution_ids"),
        ("/api/system/activity-timeouts/pass", {"execution_ids": ["e"] * 101}, "execution_ids"),
    ],
)
async def test_bad_bodies_are_422(h: Harness, path: str, body: dict[str, Any], field: str) -> None:
    err = ok(await h.cc.post(path, json=body), 422)
    assert err["reason"] == "validation_failed" and field in err["errors"], err


@pytest.mark.parametrize("body", [[], "x", 5])
async def test_a_body_that_is_not_an_object_is_422(h: Harness, body: Any) -> None:
    for path in (
        "/api/system/repair/pass",
        "/api/system/activity-timeouts/pass",
        "/api/system/retention/pass",
    ):
        assert (await h.cc.post(path, json=body)).status_code == 422
