"""The health rules of engine/system_metrics.py on plain values: when a background loop
warns, how the checks roll up, and which failures make the answer 503."""

from __future__ import annotations

from typing import Any

import pytest

from dwtrio.engine import system_metrics as sm
from dwtrio.engine.task_queues import QueueView
from dwtrio.settings import Settings

VIEW = sm.MetricsView(
    queues=QueueView(
        admission=Settings.from_env({}).admission_policy,
        stale_after_s=60,
        repair_interval_s=3.0,
        query_max_pending=1024,
    ),
    loop_stall_s=60.0,
    backlog_age_s=300.0,
    schedule_lag_s=60.0,
)


def loop(**overrides: Any) -> sm.LoopState:
    base: dict[str, Any] = {
        "name": "task_repair",
        "interval_s": 3.0,
        "ticks": 10,
        "failures": 0,
        "consecutive_failures": 0,
        "running_for_s": None,
        "late_by_s": 0.0,
        "last_ok_unix": 1_800_000_000.0,
        "last_error": None,
    }
    base.update(overrides)
    return sm.LoopState(**base)


@pytest.mark.parametrize(
    ("overrides", "status", "message"),
    [
        ({}, "ok", None),
        ({"running_for_s": 59.9, "late_by_s": None}, "ok", None),
        ({"running_for_s": 61.0, "late_by_s": None}, "warning", "a pass has run 61 s"),
        ({"late_by_s": 75.0}, "warning", "the next pass is 75 s late"),
        ({"consecutive_failures": 2, "last_error": "x"}, "ok", None),
        (
            {"consecutive_failures": 3, "last_error": "store unavailable: down"},
            "warning",
            "the last 3 passes failed (store unavailable: down)",
        ),
    ],
)
def test_loop_check(overrides: dict[str, Any], status: str, message: str | None) -> None:
    check = sm.loop_check(loop(**overrides), VIEW.loop_stall_s)
    assert check["name"] == "background_loop.task_repair"
    assert check["status"] == status
    assert check.get("message") == message
    assert check["blocking"] is False and check["category"] == "correctness"
    assert check["last_successful_pass_at"] == "2027-01-15T08:00:00.000000Z"


def test_without_the_database_the_answer_is_503_and_work_checks_unknown() -> None:
    body = sm.health(
        "default", None, "database unavailable: refused", [loop()], {"status": "ok"}, VIEW
    )
    assert body["http_status"] == 503 and body["status"] == "error"
    assert body["error_checks"] == ["database", "migrations"]
    assert body["warning_checks"] == [
        "task_backlog_age",
        "expired_leases",
        "stale_workers",
        "schedule_lag",
    ]
    assert body["categories"] == {
        "correctness": {"status": "error", "check_count": 7},
        "acceleration": {"status": "ok", "check_count": 1},
    }
    assert body["routing_drains"]["active_worker_count"] is None


def test_a_degraded_wake_bus_only_warns() -> None:
    bus = {"status": "ok", "store": "redis", "degraded": True, "message": "connecting"}
    body = sm.health("default", None, "down", [], bus, VIEW)
    (check,) = [c for c in body["checks"] if c["name"] == "wake_bus"]
    assert check == {
        "name": "wake_bus",
        "status": "warning",
        "category": "acceleration",
        "blocking": False,
        "store": "redis",
        "message": "connecting",
    }
    assert body["categories"]["acceleration"]["status"] == "warning"


def test_runs_metrics_name_every_status() -> None:
    assert sm.runs_metrics({"open": 3, "completed": 2, "terminated": 1}) == {
        "total": 6,
        "running": 3,
        "completed": 2,
        "failed": 0,
        "cancelled": 0,
        "terminated": 1,
    }
