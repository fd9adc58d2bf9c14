"""The drills' yardsticks on made-up data: the disruption time, the p99, and the books
catching what they are there to catch (a gap, a step recorded twice, an activity run
more often than its policy allows, a redelivery without a lost lease)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from books import ActivityBook, ActivityRun, RunBook, activity_books, event_identity, run_problems
from figures import disruption_seconds, p99


def test_disruption_is_the_time_until_two_buckets_in_a_row_are_back_to_the_baseline() -> None:
    steady = [i / 4 for i in range(40)]  # 4 completions a second from 0 to 10 s
    assert disruption_seconds(steady, fault=6.0, end=10.0) == 0.0
    # Nothing completes from 6.0 to 7.5 s, then the backlog and the steady pace resume.
    gap = [t for t in steady if not 6.0 <= t < 7.5] + [7.5, 7.5, 7.6]
    assert disruption_seconds(sorted(gap), fault=6.0, end=10.0) == 1.5
    # A half rate is not a recovery; never reaching 75% before the end gives None.
    half = [t for t in steady if t < 6.0 or int(t * 4) % 2 == 0]
    assert disruption_seconds(half, fault=6.0, end=10.0) is None


def test_p99_is_the_nearest_rank() -> None:
    assert p99([]) is None
    assert p99([3.0]) == 3.0
    assert p99([float(i) for i in range(1, 101)]) == 99.0
    assert p99([float(i) for i in range(1, 201)]) == 198.0


def greeter(events: list[tuple[str, dict[str, Any]]], **changes: Any) -> RunBook:
    fields: dict[str, Any] = {
        "workflow_id": "w-1",
        "workflow_type": "drill-greeter",
        "status": "completed",
        "output": "hello, n1",
        "started_at": 0.0,
        "closed_at": 1.0,
        "runs": 1,
        "sequences": tuple(range(1, len(events) + 1)),
        "last_sequence": len(events),
        "events": Counter(t for t, _ in events),
        "identities": Counter(event_identity(t, p, None) for t, p in events),
        "children": (),
        "activities": (),
        "lease_repairs": 0,
    }
    fields.update(changes)
    return RunBook(**fields)


CLEAN = [
    ("StartAccepted", {}),
    ("WorkflowStarted", {}),
    ("ActivityScheduled", {"sequence": 1}),
    ("ActivityStarted", {"sequence": 1, "activity_attempt_id": "a1"}),
    ("ActivityCompleted", {"sequence": 1, "activity_attempt_id": "a1"}),
    ("WorkflowCompleted", {}),
]


def test_a_clean_history_passes_and_each_defect_is_named() -> None:
    assert run_problems(greeter(CLEAN), "greeter", "n1") == []
    # A retried activity starts twice, under two attempts: not a duplicate.
    retried = [*CLEAN[:4], ("ActivityStarted", {"sequence": 1, "activity_attempt_id": "a2"})]
    assert run_problems(greeter([*retried, *CLEAN[4:]]), "greeter", "n1") == []

    gap = greeter(CLEAN, sequences=(1, 2, 4, 5, 6, 7), last_sequence=7)
    assert any("sequences" in p for p in run_problems(gap, "greeter", "n1"))
    twice = greeter([*CLEAN[:5], CLEAN[4], CLEAN[5]])
    assert any("recorded twice" in p for p in run_problems(twice, "greeter", "n1"))
    assert run_problems(greeter(CLEAN, output="hello, n2"), "greeter", "n1") == [
        "output 'hello, n2'"
    ]
    assert "2 runs" in run_problems(greeter(CLEAN, runs=2), "greeter", "n1")
    assert run_problems(None, "greeter", "n1") == ["no such workflow"]


def execution(*attempts: tuple[str, int, str]) -> RunBook:
    act = ActivityBook("e1", "greet", "completed", 3, len(attempts), attempts)
    return greeter(CLEAN, activities=(act,))


def ran(*attempt_ids: str) -> list[ActivityRun]:
    return [ActivityRun("greet", "w-1", a, i + 1, "wk", 0.0) for i, a in enumerate(attempt_ids)]


def test_activity_runs_are_held_against_the_retry_policy_and_the_lost_leases() -> None:
    once = activity_books({"w-1": execution(("a1", 1, "completed"))}, ran("a1"))
    assert (once.runs, once.redeliveries, once.problems) == (1, 0, {})
    # The first attempt ran, its answer was lost, its lease expired: a counted redelivery.
    redelivered = execution(("a1", 1, "timed_out"), ("a2", 2, "completed"))
    books = activity_books({"w-1": redelivered}, ran("a1", "a2"))
    assert (books.runs, books.redeliveries, books.lost_leases, books.problems) == (2, 1, 1, {})
    # A lost lease is delivered again even past max_attempts (at least once).
    lost = [(f"a{i}", i, "timed_out") for i in (1, 2, 3)]
    books = activity_books({"w-1": execution(*lost, ("a4", 4, "completed"))}, ran("a1", "a4"))
    assert (books.redeliveries, books.lost_leases, books.problems) == (1, 3, {})
    # Past max_attempts without lost leases is over the policy.
    failed = [(f"a{i}", i, "failed") for i in (1, 2, 3)]
    books = activity_books(
        {"w-1": execution(*failed, ("a4", 4, "completed"))}, ran("a1", "a2", "a3", "a4")
    )
    assert books.problems["e1"][:2] == [
        "4 attempts, 0 lost leases, max 3",
        "ran 4 times, 0 lost leases, max 3",
    ]
    # The same attempt run twice, or an extra run without a lost lease, is a defect.
    books = activity_books({"w-1": execution(("a1", 1, "completed"))}, ran("a1", "a1"))
    assert "attempts run twice: ['a1']" in books.problems["e1"]
    failed_then_ok = execution(("a1", 1, "failed"), ("a2", 2, "completed"))
    books = activity_books({"w-1": failed_then_ok}, ran("a1", "a2"))
    assert "1 extra runs, only 0 lost leases" in books.problems["e1"]
    # A completion the workers never ran, and a run the server never heard of.
    books = activity_books({"w-1": execution(("a1", 1, "completed"))}, ran("zz"))
    assert books.problems["e1"] == ["completed attempt ['a1'] was never run by a worker"]
    assert "(unknown attempts)" in books.problems
