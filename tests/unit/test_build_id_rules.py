"""The build-id rollout rules without a database: rollout_status, the list order, the
request model (schedules-and-admission.md §3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dwtrio import wire
from dwtrio.engine.build_ids import _list_order, cohort_body, rollout_status
from dwtrio.errors import ValidationFailedError
from dwtrio.protocol.build_ids import BuildIdRolloutChange, task_queue_errors
from dwtrio.protocol.responses import render
from dwtrio.store.build_ids import CohortRow

T0 = datetime(2026, 4, 22, 6, 24, tzinfo=UTC)


def cohort(
    build_id: str = "b1",
    active: int = 0,
    draining: int = 0,
    stale: int = 0,
    intent: str = "active",
    heartbeat: datetime | None = T0,
) -> CohortRow:
    return CohortRow(
        build_id=build_id,
        active_worker_count=active,
        draining_worker_count=draining,
        stale_worker_count=stale,
        total_worker_count=active + draining + stale,
        runtimes=["python", "go"],
        sdk_versions=["b", "a"],
        last_heartbeat_at=heartbeat,
        first_seen_at=T0 if heartbeat else None,
        drain_intent=intent,
        drained_at=T0 if intent == "draining" else None,
        promoted_at=None,
        new_start_selected=False,
    )


@pytest.mark.parametrize(
    ("counts", "status"),
    [
        ({"active": 2}, "active"),
        ({"active": 1, "stale": 3}, "active"),
        ({"active": 1, "intent": "draining"}, "active_with_draining"),
        ({"active": 1, "draining": 1}, "active_with_draining"),
        ({"draining": 1}, "draining"),
        ({"draining": 1, "stale": 1}, "draining"),
        ({"intent": "draining"}, "draining"),
        ({"stale": 1, "intent": "draining"}, "draining"),
        ({"stale": 2}, "stale_only"),
        ({}, "no_workers"),
    ],
)
def test_rollout_status(counts: dict[str, Any], status: str) -> None:
    assert rollout_status(cohort(**counts)) == status


def test_the_list_order() -> None:
    rows = [
        cohort("", heartbeat=T0 + timedelta(minutes=5), active=1),  # unversioned, newest
        cohort("stale", stale=1),
        cohort("nobody", heartbeat=None),
        cohort("old", active=1, heartbeat=T0),
        cohort("new", active=1, heartbeat=T0 + timedelta(seconds=1)),
        cohort("mixed", active=1, draining=1),
        cohort("", heartbeat=None),  # unversioned no_workers after named no_workers
        cohort("drain-b", intent="draining", heartbeat=None),
        cohort("drain-a", intent="draining", heartbeat=None),
        cohort("draining", draining=1),
    ]
    # Two unversioned rows never coexist; here they sit in different ranks.
    order = [(r.build_id, rollout_status(r)) for r in sorted(rows, key=_list_order)]
    assert order == [
        ("new", "active"),
        ("old", "active"),
        ("", "active"),
        ("mixed", "active_with_draining"),
        ("draining", "draining"),
        ("drain-a", "draining"),
        ("drain-b", "draining"),
        ("stale", "stale_only"),
        ("nobody", "no_workers"),
        ("", "no_workers"),
    ]


def test_a_cohort_body_sorts_its_lists_and_names_the_unversioned_cohort_null() -> None:
    body = render(cohort_body(cohort("", active=1)))
    assert body["build_id"] is None
    assert body["runtimes"] == ["go", "python"] and body["sdk_versions"] == ["a", "b"]
    assert body["last_heartbeat_at"] == "2026-04-22T06:24:00.000000Z"


@pytest.mark.parametrize(
    ("sent", "build_id"),
    [("b1", "b1"), ("  b1 ", "b1"), ("", None), ("  ", None), (None, None)],
)
def test_the_change_body_trims_and_blank_is_unversioned(sent: Any, build_id: Any) -> None:
    assert wire.structure({"build_id": sent, "x": 1}, BuildIdRolloutChange).build_id == build_id


@pytest.mark.parametrize(
    "body", [{}, {"build_id": 1}, {"build_id": False}, {"build_id": "x" * 256}]
)
def test_the_change_body_refuses(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailedError) as exc:
        wire.structure(body, BuildIdRolloutChange)
    assert list(exc.value.errors) == ["build_id"]


def test_task_queue_names() -> None:
    assert task_queue_errors("orders/eu") == []
    assert task_queue_errors("x" * 255) == []
    assert task_queue_errors("x" * 256) and task_queue_errors("a\x00b")
