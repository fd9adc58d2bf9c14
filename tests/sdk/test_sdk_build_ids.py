"""SDK 2.12.0 list_task_queue_build_ids / drain / resume / promote_task_queue_build_id
against dwtrio, with two real SDK workers of different build ids on one queue (driver
in a subprocess): what the SDK's dataclasses parse, and what a drain does to the work.

Contract: schedules-and-admission.md §3, control-plane.md §9 and §14;
docs/rolling-upgrades.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import run_driver, start_sdk_server

DRIVER = "build_ids_driver.py"
SDK_VERSION_PREFIX = "durable-workflow-python/"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


def check_state(
    state: dict[str, Any], queue: str, build_id: str | None, intent: str, selected: bool
) -> None:
    assert state["namespace"] == "default" and state["task_queue"] == queue
    assert (state["build_id"], state["drain_intent"]) == (build_id, intent)
    assert state["new_start_selected"] is selected
    assert state["rolled_back_at"] is None
    assert (state["drained_at"] is not None) == (intent == "draining")


async def test_two_builds_are_two_cohorts_the_sdk_can_drain_promote_and_resume(
    sdk_server: RunningServer,
) -> None:
    out = await run_driver(sdk_server, DRIVER, "cohorts")
    queue = out["task_queue"]
    listed = out["listed"]
    assert (listed["namespace"], listed["task_queue"], listed["stale_after_seconds"]) == (
        "default",
        queue,
        60,
    )
    # Both active and named: the newest heartbeat first, so either order.
    assert sorted(c["build_id"] for c in listed["build_ids"]) == ["build-a", "build-b"]
    for cohort in listed["build_ids"]:
        assert cohort["rollout_status"] == "active"
        assert (
            cohort["active_worker_count"],
            cohort["draining_worker_count"],
            cohort["stale_worker_count"],
            cohort["total_worker_count"],
        ) == (1, 0, 0, 1)
        assert cohort["runtimes"] == ["python"]
        [sdk_version] = cohort["sdk_versions"]
        assert sdk_version.startswith(SDK_VERSION_PREFIX)
        assert cohort["last_heartbeat_at"] and cohort["first_seen_at"]
        assert (cohort["drain_intent"], cohort["drained_at"], cohort["promoted_at"]) == (
            "active",
            None,
            None,
        )
        assert cohort["new_start_selected"] is False
        assert cohort["workflow_definition_fingerprint_count"] == 0

    drained = out["drained"]
    check_state(drained, queue, "build-a", "draining", False)
    assert drained["deployment"] is None and drained["promoted_at"] is None
    assert out["drained_again"] == drained  # the first drained_at is kept
    after_drain = {c["build_id"]: c for c in out["after_drain"]["build_ids"]}
    assert [c["build_id"] for c in out["after_drain"]["build_ids"]] == ["build-b", "build-a"]
    a = after_drain["build-a"]
    assert (a["rollout_status"], a["drain_intent"], a["drained_at"]) == (
        "draining",
        "draining",
        drained["drained_at"],
    )
    assert (a["active_worker_count"], a["draining_worker_count"]) == (0, 1)

    assert out["promote_draining"] == {
        "type": "ServerError",
        "status": 409,
        "reason": "build_id_draining",
    }
    promoted = out["promoted"]
    check_state(promoted, queue, "build-b", "active", True)
    assert promoted["promoted_at"]
    assert promoted["deployment"] == {
        "task_queue": queue,
        "build_id": "build-b",
        "promoted_at": promoted["promoted_at"],
    }
    # A start after the promotion is pinned to build-b and run by it.
    assert out["pinned_compatibility"] == "build-b"
    assert out["pinned_result"] == ["build-b", "build-b"]

    resumed = out["resumed"]
    check_state(resumed, queue, "build-a", "active", False)
    after_resume = {c["build_id"]: c for c in out["after_resume"]["build_ids"]}
    assert after_resume["build-a"]["rollout_status"] == "active"
    assert after_resume["build-a"]["active_worker_count"] == 1
    assert after_resume["build-b"]["new_start_selected"] is True
    assert after_resume["build-b"]["promoted_at"] == promoted["promoted_at"]

    check_state(out["resume_unversioned"], queue, None, "active", False)
    check_state(out["drain_unversioned"], queue, None, "draining", False)
    other = out["promote_other_queue"]
    check_state(other, f"{queue}-other", None, "active", True)
    assert other["deployment"]["build_id"] is None
    final = out["final"]["build_ids"]
    assert [(c["build_id"], c["rollout_status"]) for c in final][-1] == (None, "draining")
    assert final[-1]["total_worker_count"] == 0

    unknown = out["unknown_queue"]
    assert (unknown["task_queue"], unknown["build_ids"]) == ("nobody-polls-this", [])


async def test_drain_stops_new_work_for_cohort(sdk_server: RunningServer) -> None:
    """A drained cohort's worker keeps running (and heartbeating) but takes no new
    workflow task or activity; the other build takes all of them. Resumed, it works
    again."""
    out = await run_driver(sdk_server, DRIVER, "drain")
    assert out["before"] == ["build-a", "build-b"]
    assert out["while_drained"] == [["build-b", "build-b"]] * 6
    assert out["cohorts_while_drained"] == {
        "build-b": ["active", 1, 0],
        "build-a": ["draining", 0, 1],
    }
    assert out["after_swap"] == [["build-a", "build-a"]] * 3
