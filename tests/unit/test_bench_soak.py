"""bench soak's arithmetic: slopes, the bounded verdict, the projection without
retention, the books' checks of one run, and the CLI options. No server runs here; the
60-second soak itself is tests/drills/test_soak.py."""

from __future__ import annotations

from typing import Any

import pytest

from bench.__main__ import build_parser
from bench.soak import (
    NODES,
    Books,
    slope_per_hour,
    unpruned_projection,
    verdict,
)
from bench.soak_driver import expected_output
from dwtrio import payloads

HOUR = 3600.0


def minutes(values: list[float], every_s: float = 60.0) -> list[tuple[float, float]]:
    return [(i * every_s, v) for i, v in enumerate(values)]


def test_slope_is_units_per_hour() -> None:
    assert slope_per_hour(minutes([10, 11, 12, 13])) == pytest.approx(60.0)
    assert slope_per_hour(minutes([5.0])) == 0.0
    assert slope_per_hour([(1.0, 1.0), (1.0, 2.0)]) == 0.0


def test_a_steady_leak_is_growing() -> None:
    leak = minutes([100 + i for i in range(30)])  # +1 a minute for 30 minutes
    v = verdict(leak, 30 * 60)
    assert v["why"] == "growing" and not v["bounded"]
    assert v["first_half_per_h"] == pytest.approx(60.0)
    assert v["last_half_per_h"] == pytest.approx(60.0)


def test_growth_that_stops_is_levelled() -> None:
    ramp = minutes([min(100 + 10 * i, 200) for i in range(30)])  # flat from minute 10
    v = verdict(ramp, 30 * 60)
    assert v["why"] == "levelled" and v["bounded"]
    assert v["last_half_per_h"] == pytest.approx(0.0)


def test_noise_around_a_level_is_flat() -> None:
    noise = minutes([30 + (3 if i % 3 == 0 else -1) for i in range(30)])
    v = verdict(noise, 30 * 60)
    assert v["why"] == "flat" and v["bounded"]


def test_a_pool_at_its_cap_is_capped() -> None:
    filling = minutes([1 + i // 3 for i in range(30)])  # reaches 10 in minute 27
    assert verdict(filling, 30 * 60, cap=10)["why"] == "capped"
    assert verdict(filling, 30 * 60, cap=9)["why"] == "growing"


def row(t: float, tables_mb: float, closed: int, pruned: int) -> dict[str, Any]:
    return {
        "t_s": t,
        "tables_mb": tables_mb,
        "closed": closed,
        **{f"{n}.pruned": pruned for n in NODES},
    }


def test_projection_uses_the_samples_before_the_first_prune() -> None:
    rows = [row(0, 1.0, 0, 0), row(10, 2.0, 100, 0), row(20, 3.0, 100, 0), row(30, 3.1, 100, 5)]
    # 2 MB over 200 runs closed before any prune: 10.24 kB a run; 1,000 runs closed.
    assert unpruned_projection(rows, 1000) == {
        "kb_per_closed_run": 10.24,
        "measured_over_runs": 200,
        "tables_mb_without_retention": 11.0,
    }
    assert unpruned_projection([*rows[:1], row(10, 2.0, 100, 1)], 1000) == {}


def run_row(**overrides: Any) -> dict[str, Any]:
    """An audited run as AUDIT_SQL reads it: a greeter that did everything once."""
    base = {
        "workflow_id": "soak-x-0000001",
        "workflow_type": "soak-greeter",
        "status": "completed",
        "arguments": payloads.encode(["n1"]),
        "output": payloads.encode("hello, n1"),
        "last_history_sequence": 7,
        "runs": 1,
        "attempts": 1,
        "events": 7,
        "distinct_sequences": 7,
        "max_sequence": 7,
        "types": ["StartAccepted", "WorkflowStarted", "ActivityScheduled", "WorkflowCompleted"],
    }
    return {**base, **overrides}


def test_books_pass_a_clean_run_and_count_each_fault() -> None:
    books = Books()
    books.check(run_row())
    books.check(run_row(workflow_id="b", output=payloads.encode("hello, n2")))
    books.check(run_row(workflow_id="c", status="failed"))
    books.check(run_row(workflow_id="d", events=6))
    books.check(run_row(workflow_id="e", types=["WorkflowCompleted"] * 2))
    books.check(run_row(workflow_id="f", attempts=3))
    books.check(run_row())  # the same workflow id again
    started = [{"workflow_id": i} for i in ("soak-x-0000001", "b", "c", "lost-one")]
    s = books.summary(started, open_runs=0)
    assert (s["wrong_results"], s["not_completed"], s["history_gaps"]) == (1, 1, 1)
    assert (s["duplicated"], s["redelivered_attempts"]) == (2, 2)
    assert (s["lost"], s["lost_ids"]) == (1, ["lost-one"])
    assert s["runs_checked"] == 7 and len(s["problems"]) == 5  # a redelivery is counted


def test_expected_outputs() -> None:
    assert expected_output("soak-child", "n3") == "hello, n3"
    assert expected_output("soak-parent", "n3") == {"child": "hello, n3"}
    assert expected_output("soak-waiter", "n3") == {
        "greeting": "hello, n3",
        "items": ["s-n3"],
        "ok": True,
    }
    with pytest.raises(ValueError):
        expected_output("other", "n3")


def test_soak_options() -> None:
    args = build_parser().parse_args(["soak"])
    assert (args.duration, args.rate, args.retention_after, args.out) == (1800, 3, 120, None)
    assert args.vacuum_every is None  # decided from the server's autovacuum
    argv = ["soak", "--duration", "60", "--rate", "3", "--retention-after", "20", "--out", "/tmp/x"]
    args = build_parser().parse_args(argv)
    assert (args.duration, args.rate, args.retention_after) == (60, 3, 20)
