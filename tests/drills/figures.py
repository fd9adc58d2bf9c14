"""The drills' figures: disruption time, throughput and latency around the fault.

**Disruption time**: completions (acknowledged top-level workflows closing
``completed``) are counted in buckets of :data:`BUCKET_S` laid from the fault onwards.
The baseline is the mean number of completions per bucket over the :data:`BASELINE_S`
before the fault. The disruption time is ``k * BUCKET_S`` for the first bucket ``k``
(0 = the one that starts at the fault) that, and the bucket after it, each hold at least
:data:`RECOVERED` of the baseline: 0 when the fault never slowed completions down, the
time until the pace is back otherwise; None when it never came back before the last
completion.

**Windows**: *before* runs from the first start to the fault; *during* from the fault
to whichever is later, the end of the fault (the drill's ``fault_end`` mark: the node,
Redis or Postgres is back) or the recovery (the fault plus the disruption time); *after*
from there to the last start. Throughput counts completions in a window per second.

**Latency**: a request's latency is the time from sending it to its answer, taken by
the load for every start and every signal (its wall-clock send time puts it in a
window); a greeter's completion latency is from its acknowledged start to its run
closing. Each window's p99 is the nearest-rank 99th percentile of its samples (None
when it has none).

:func:`publish` prints one ``<drill> figures: {...}`` line and, when
``DWTRIO_FIGURES_DIR`` is set, writes ``<drill>.json`` there.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from books import Books
from harness import DrillRun

BASELINE_S = 5.0
BUCKET_S = 0.5
RECOVERED = 0.75


def window_count(times: Iterable[float], start: float, end: float) -> int:
    return sum(1 for t in times if start <= t < end)


def disruption_seconds(
    completions: list[float], *, fault: float, end: float, baseline_s: float = BASELINE_S
) -> float | None:
    """The disruption time defined in this module's docstring; None if completions never
    recovered before ``end``."""
    per_bucket = window_count(completions, fault - baseline_s, fault) * BUCKET_S / baseline_s
    recovered = [
        window_count(completions, start, start + BUCKET_S) >= RECOVERED * per_bucket
        for start in (fault + k * BUCKET_S for k in range(int((end - fault) / BUCKET_S)))
    ]
    for k in range(len(recovered) - 1):
        if recovered[k] and recovered[k + 1]:
            return k * BUCKET_S
    return None


def p99(samples: list[float]) -> float | None:
    """Nearest-rank 99th percentile (None without samples)."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def request_samples(lines: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(sent at, latency) of every start and every signal the load made."""
    samples = [(x["sent_at"], x["answered_at"] - x["sent_at"]) for x in lines]
    samples += [
        (x["signal_sent_at"], x["signalled_at"] - x["signal_sent_at"])
        for x in lines
        if "signalled_at" in x
    ]
    return samples


def completion_samples(run: DrillRun) -> list[tuple[float, float]]:
    """(start sent at, start answered -> run closed) of every acknowledged greeter."""
    return [
        (x["sent_at"], closed - x["answered_at"])
        for wid, x in run.acked.items()
        if x["kind"] == "greeter" and wid in run.books and (closed := run.books[wid].closed_at)
    ]


def windows(run: DrillRun, disruption: float | None) -> dict[str, tuple[float, float]]:
    fault = run.marks["fault"]
    recovered = fault + (disruption if disruption is not None else run.drained - fault)
    during_end = max(run.marks.get("fault_end", fault), recovered)
    return {
        "before": (run.first_sent, fault),
        "during": (fault, during_end),
        "after": (during_end, run.last_sent + 1e-6),
    }


def windowed_p99(
    samples: list[tuple[float, float]], spans: dict[str, tuple[float, float]]
) -> dict[str, float | None]:
    return {
        name: rounded(p99([lat for t, lat in samples if start <= t < end]))
        for name, (start, end) in spans.items()
    }


def completion_times(run: DrillRun) -> list[float]:
    """When each acknowledged top-level workflow closed completed, in order."""
    return sorted(
        b.closed_at
        for wid, b in run.books.items()
        if wid in run.acked and b.closed_at is not None and b.status == "completed"
    )


def drill_figures(run: DrillRun, books: Books) -> dict[str, Any]:
    """The figures every drill reports (the drill adds its own beside them)."""
    fault = run.marks["fault"]
    completed_at = completion_times(run)
    # Until the last completion, so that a backlog worked off after the load counts.
    last = completed_at[-1] + BUCKET_S if completed_at else run.last_sent
    disruption = disruption_seconds(completed_at, fault=fault, end=last)
    spans = windows(run, disruption)

    def rate(start: float, end: float) -> float | None:
        return (
            rounded(window_count(completed_at, start, end) / (end - start), 2)
            if end > start
            else None
        )

    first = run.first_sent
    return {
        "offered_per_s": run.settings.rate,
        "load_s": run.settings.seconds,
        "acknowledged": books.acknowledged,
        "unacknowledged": books.unacknowledged,
        "completed": books.completed,
        "lost": books.lost,
        "duplicated": books.duplicated,
        "disruption_s": disruption,
        "fault_s": rounded(run.marks.get("fault_end", fault) - fault, 2),
        "throughput_per_s": {name: rate(*span) for name, span in spans.items()},
        "request_p99_s": windowed_p99(request_samples(run.lines), spans),
        "greeter_completion_p99_s": windowed_p99(completion_samples(run), spans),
        "activity_executions": books.activities.executions,
        "activity_runs": books.activities.runs,
        "activity_retries": books.activities.retries,
        "lost_lease_redeliveries": books.activities.redeliveries,
        "activity_attempts_timed_out": books.activities.lost_leases,
        "lease_repairs": books.lease_repairs,
        "signal_retries": sum(x.get("signal_tries", 1) - 1 for x in run.lines),
        "worker_warnings": sum(w["warnings"] for w in run.workers),
        "drain_s": rounded(run.drained - run.load_done, 2),
        # Completions in each second from the first start, and the marks in seconds from it.
        "completions_per_s": [
            window_count(completed_at, first + i, first + i + 1)
            for i in range(int(last - first) + 1)
        ],
        "marks_s": {name: rounded(t - first, 2) for name, t in sorted(run.marks.items())},
    }


def publish(drill: str, figures: dict[str, Any]) -> None:
    """Print the figures as one line; write them to ``$DWTRIO_FIGURES_DIR/<drill>.json``."""
    print(f"{drill} figures: " + json.dumps(figures))
    if os.environ.get("DWTRIO_FIGURES_DIR"):
        out = Path(os.environ["DWTRIO_FIGURES_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{drill}.json").write_text(json.dumps(figures, indent=2) + "\n")
