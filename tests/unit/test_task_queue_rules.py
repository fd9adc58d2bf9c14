"""The pure rules of the task-queue views (``engine/task_queues.py``): the backlog age
label and the admission status of one task kind (schedules-and-admission.md §2.5)."""

from __future__ import annotations

import pytest

from dwtrio.engine.task_queues import age_label, task_status


@pytest.mark.parametrize(
    ("seconds", "label"),
    [
        (None, None),
        (0, "0s"),
        (59, "59s"),
        (60, "1m00s"),
        (187, "3m07s"),
        (3599, "59m59s"),
        (3600, "1h00m00s"),
        (7509, "2h05m09s"),
        (90061, "25h01m01s"),
    ],
)
def test_age_label(seconds: int | None, label: str | None) -> None:
    assert age_label(seconds) == label


@pytest.mark.parametrize(
    ("server", "workers", "slots", "leased", "status"),
    [
        # A reached server cap comes first, whatever the workers offer.
        ("throttled", 0, 0, 0, "throttled"),
        ("throttled", 3, 30, 0, "throttled"),
        # Then the workers: none, none with slots, all slots taken, room.
        ("unlimited", 0, 0, 0, "no_active_workers"),
        ("accepting", 0, 10, 0, "no_active_workers"),
        ("unlimited", 2, 0, 0, "no_slots"),
        ("unlimited", 2, 10, 10, "saturated"),
        ("accepting", 2, 10, 12, "saturated"),
        ("unlimited", 2, 10, 9, "accepting"),
        ("accepting", 1, 1, 0, "accepting"),
    ],
)
def test_task_status_takes_the_first_rule_that_holds(
    server: str, workers: int, slots: int, leased: int, status: str
) -> None:
    assert task_status(server, workers, slots, leased) == status
