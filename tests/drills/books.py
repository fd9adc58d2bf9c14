"""The drills' books: what the database says became of every acknowledged start, held
against what the client was told and what the workers really ran.

A workflow **completed exactly once** when its one run (and, for a parent, its one
child's one run) closed ``completed`` with the output its input implies
(``mix.expected_output``), and its history is clean. A history is **clean** when its
sequence numbers run 1, 2, ... without a gap, no step is recorded twice, and each step
of its kind is there exactly once (``mix.ONCE``). A step is recorded twice when two
events of one run share their type and their identity: the step ``sequence`` of the
payload, the activity attempt (id or number), the timer, the signal, the child call,
the update and the control-plane command that produced it (:func:`event_identity`).

**Activities**: every execution the workers ran is a line of their run logs
(``workload.py`` writes it before the activity returns). A lost lease (an attempt the
server closed ``timed_out``: the workload sets no activity timeout, so only an expired
lease ends an attempt that way) is delivered again whatever the policy allows, the
protocol's at-least-once rule. So an activity execution keeps its retry policy when,
lost leases set aside, the server counted no more attempts than ``max_attempts`` and
the workers ran it no more often than that either; no attempt id ran twice; the attempt
the server recorded as completed is one a worker ran. A worker running an activity
more often than it needs when nothing fails (``mix.EXPECTED_RUNS``) is that redelivery:
it is counted (``redeliveries``), and each one must be matched by a lost lease.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
from mix import EXPECTED_RUNS, KIND_OF_TYPE, MAX_ATTEMPTS, ONCE, expected_output

from dwtrio import payloads
from dwtrio.store.pool import Conn, connect_once

#: Payload fields that tell one step's event from another of the same type.
IDENTITY_KEYS = (
    "sequence",
    "activity_attempt_id",
    "attempt_number",
    "timer_id",
    "signal_id",
    "child_call_id",
    "update_id",
)
#: Every run records each of these once (a child's start is its parent's step instead).
ONCE_PER_RUN = ("StartAccepted", "WorkflowStarted", "WorkflowCompleted")
ONCE_PER_CHILD_RUN = ("WorkflowStarted", "WorkflowCompleted")


def event_identity(event_type: str, payload: dict[str, Any], command_id: str | None) -> str:
    return json.dumps([event_type, *(payload.get(k) for k in IDENTITY_KEYS), command_id])


@attrs.frozen
class ActivityBook:
    """One activity execution as the server recorded it."""

    id: str
    activity_type: str
    status: str
    max_attempts: int
    attempt_count: int
    attempts: tuple[tuple[str, int, str], ...]  # (attempt id, number, status), by number


@attrs.frozen
class RunBook:
    """A workflow's current run (and how many runs it has) as the database holds it."""

    workflow_id: str
    workflow_type: str
    status: str
    output: Any
    started_at: float
    closed_at: float | None
    runs: int
    sequences: tuple[int, ...]
    last_sequence: int
    events: Counter[str]  # by type
    identities: Counter[str]  # by event_identity
    children: tuple[str, ...]  # child workflow ids
    activities: tuple[ActivityBook, ...]
    lease_repairs: int  # sum of repair_count over the run's tasks


_BOOKS = """
WITH ours AS (
    SELECT r.* FROM workflow_runs r WHERE r.workflow_id LIKE $1
    UNION ALL
    SELECT r.* FROM workflow_runs r
    JOIN child_workflow_calls c ON c.child_workflow_id = r.workflow_id
    WHERE c.parent_workflow_id LIKE $1
)
SELECT r.id, r.workflow_id, r.workflow_type, r.status, r.output, r.run_number,
       extract(epoch FROM r.started_at) AS started_at,
       extract(epoch FROM r.closed_at) AS closed_at, r.last_history_sequence,
       (SELECT count(*) FROM workflow_runs o WHERE o.workflow_id = r.workflow_id) AS runs,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(h.sequence, h.event_type, h.payload,
                                                    h.workflow_command_id)
                                  ORDER BY h.sequence), '[]')
        FROM history_events h WHERE h.run_id = r.id) AS events,
       array(SELECT c.child_workflow_id FROM child_workflow_calls c
             WHERE c.parent_run_id = r.id ORDER BY c.sequence) AS children,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(
                   e.id, e.activity_type, e.status, e.retry_policy -> 'max_attempts',
                   e.attempt_count,
                   (SELECT coalesce(jsonb_agg(jsonb_build_array(a.id, a.attempt_number, a.status)
                                              ORDER BY a.attempt_number), '[]')
                    FROM activity_attempts a WHERE a.activity_execution_id = e.id))), '[]')
        FROM activity_executions e WHERE e.run_id = r.id) AS activities,
       (SELECT coalesce(sum(t.repair_count), 0) FROM workflow_tasks t WHERE t.run_id = r.id)
           AS lease_repairs
FROM ours r
ORDER BY r.workflow_id, r.run_number
"""


def _book(row: Any) -> RunBook:
    events = row["events"]
    activities = tuple(
        ActivityBook(
            id=a[0],
            activity_type=a[1],
            status=a[2],
            max_attempts=int(a[3]) if a[3] is not None else 1,
            attempt_count=int(a[4]),
            attempts=tuple((x[0], int(x[1]), x[2]) for x in a[5]),
        )
        for a in row["activities"]
    )
    return RunBook(
        workflow_id=row["workflow_id"],
        workflow_type=row["workflow_type"],
        status=row["status"],
        output=payloads.decode_for_view(row["output"]) if row["output"] else None,
        started_at=float(row["started_at"]),
        closed_at=float(row["closed_at"]) if row["closed_at"] is not None else None,
        runs=int(row["runs"]),
        sequences=tuple(int(e[0]) for e in events),
        last_sequence=int(row["last_history_sequence"]),
        events=Counter(e[1] for e in events),
        identities=Counter(event_identity(e[1], e[2], e[3]) for e in events),
        children=tuple(row["children"]),
        activities=activities,
        lease_repairs=int(row["lease_repairs"]),
    )


async def read_books(dsn: str, prefix: str) -> dict[str, RunBook]:
    """The books of the workflows ``<prefix>-*`` and of their children, by workflow id
    (the latest run of each; ``runs`` says how many there are)."""

    async def op(conn: Conn) -> dict[str, RunBook]:
        return {row["workflow_id"]: _book(row) for row in await conn.fetch(_BOOKS, prefix + "-%")}

    return await connect_once(dsn, op)


@attrs.frozen
class ActivityRun:
    """One activity execution a worker ran (a line of its run log)."""

    activity_type: str
    workflow_id: str | None
    attempt_id: str
    attempt_number: int
    worker_id: str
    at: float


def read_activity_runs(paths: Iterable[Path]) -> list[ActivityRun]:
    runs = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            x = json.loads(line)
            runs.append(
                ActivityRun(
                    x["activity_type"],
                    x["workflow_id"],
                    x["attempt_id"],
                    int(x["attempt_number"]),
                    x["worker_id"],
                    float(x["at"]),
                )
            )
    return runs


def history_problems(book: RunBook, kind: str) -> list[str]:
    """What is wrong with one run's history (empty when clean)."""
    problems = []
    if book.sequences != tuple(range(1, book.last_sequence + 1)):
        problems.append(f"history sequences {book.sequences} (last {book.last_sequence})")
    twice = [k for k, n in book.identities.items() if n > 1]
    if twice:
        problems.append(f"steps recorded twice: {twice}")
    once = (*(ONCE_PER_CHILD_RUN if kind == "child" else ONCE_PER_RUN), *ONCE[kind])
    miscounted = [f"{book.events[t]} x {t}" for t in once if book.events[t] != 1]
    if miscounted:
        problems.append(f"{', '.join(miscounted)} (events: {dict(book.events)})")
    return problems


def run_problems(book: RunBook | None, kind: str, name: str) -> list[str]:
    """What is wrong with one workflow's books (empty when it completed exactly once)."""
    if book is None:
        return ["no such workflow"]
    problems = []
    if book.status != "completed":
        problems.append(f"status {book.status}")
    elif book.output != expected_output(kind, name):
        problems.append(f"output {book.output!r}")
    if book.runs != 1:
        problems.append(f"{book.runs} runs")
    return problems + history_problems(book, kind)


def workflow_problems(line: dict[str, Any], books: dict[str, RunBook]) -> dict[str, list[str]]:
    """The problems of one start's workflow and of its child, by workflow id."""
    wid, kind, name = line["workflow_id"], line["kind"], line["name"]
    book = books.get(wid)
    found = {wid: run_problems(book, kind, name)}
    if kind == "parent" and book is not None:
        if len(book.children) != 1:
            found[wid].append(f"{len(book.children)} children")
        for child in book.children:
            found[child] = run_problems(books.get(child), "child", name)
    return {k: v for k, v in found.items() if v}


def duplicated(line: dict[str, Any], books: dict[str, RunBook]) -> bool:
    """A second run, a second child, or a step recorded twice."""
    book = books.get(line["workflow_id"])
    if book is None:
        return False
    related = [book, *(books[c] for c in book.children if c in books)]
    return (
        len(book.children) > 1
        or any(b.runs > 1 for b in related)
        or any(n > 1 for b in related for n in b.identities.values())
        or any(b.events[t] > 1 for b in related for t in ONCE_PER_RUN)
    )


@attrs.frozen
class ActivityBooks:
    executions: int
    runs: int  # executions the workers ran, all attempts
    retries: int  # attempts the server scheduled after a failure or a lost lease
    redeliveries: int  # runs beyond EXPECTED_RUNS: at-least-once after a lost lease
    lost_leases: int  # attempts the server closed timed_out
    problems: dict[str, list[str]]  # by activity execution id


def activity_books(books: dict[str, RunBook], runs: list[ActivityRun]) -> ActivityBooks:
    """The activity checks of the module docstring, over every execution in ``books``."""
    by_attempt = Counter(r.attempt_id for r in runs)
    problems: dict[str, list[str]] = {}
    known: set[str] = set()
    executions = total_runs = retries = redeliveries = lost = 0
    for book in books.values():
        for act in book.activities:
            executions += 1
            found = []
            ids = [a[0] for a in act.attempts]
            known.update(ids)
            ran = sum(by_attempt[i] for i in ids)
            total_runs += ran
            retries += max(0, act.attempt_count - 1)
            timed_out = sum(1 for a in act.attempts if a[2] == "timed_out")
            lost += timed_out
            extra = max(0, ran - EXPECTED_RUNS[act.activity_type])
            redeliveries += extra
            if act.max_attempts != MAX_ATTEMPTS:
                found.append(f"retry policy max_attempts {act.max_attempts}")
            allowed = act.max_attempts + timed_out  # lost leases are delivered again
            if act.attempt_count > allowed or len(act.attempts) > allowed:
                found.append(
                    f"{act.attempt_count} attempts, {timed_out} lost leases, max {act.max_attempts}"
                )
            if ran > allowed:
                found.append(f"ran {ran} times, {timed_out} lost leases, max {act.max_attempts}")
            if twice := [i for i in ids if by_attempt[i] > 1]:
                found.append(f"attempts run twice: {twice}")
            if extra > timed_out:
                found.append(f"{extra} extra runs, only {timed_out} lost leases")
            completed = [a[0] for a in act.attempts if a[2] == "completed"]
            if act.status == "completed" and (len(completed) != 1 or not by_attempt[completed[0]]):
                found.append(f"completed attempt {completed} was never run by a worker")
            if found:
                problems[act.id] = found
    unknown = sorted({r.attempt_id for r in runs} - known)
    if unknown:
        problems["(unknown attempts)"] = [f"workers ran attempts the books lack: {unknown[:10]}"]
    return ActivityBooks(executions, total_runs, retries, redeliveries, lost, problems)


@attrs.frozen
class Books:
    """The verdict over one drill's workflows."""

    acknowledged: int
    unacknowledged: int
    completed: int
    lost: int
    duplicated: int
    problems: dict[str, list[str]]  # acknowledged workflows (and their children), by id
    half_done: dict[str, list[str]]  # unacknowledged starts that exist but did not finish well
    activities: ActivityBooks
    lease_repairs: int

    def assert_clean(self) -> None:
        """Fail with the first problems unless every acknowledged start completed exactly
        once, no unacknowledged start was left half-done and every activity kept its policy."""
        assert self.problems == {}, (
            f"acknowledged workflows not completed exactly once: {_first(self.problems)}"
        )
        assert self.half_done == {}, f"unacknowledged starts left half-done: {self.half_done}"
        assert self.activities.problems == {}, (
            f"activities outside their retry policy: {_first(self.activities.problems)}"
        )
        assert self.lost == 0 and self.duplicated == 0, (self.lost, self.duplicated)


def _first(problems: dict[str, list[str]], n: int = 10) -> dict[str, list[str]]:
    return dict(list(problems.items())[:n])


def check(lines: list[dict[str, Any]], books: dict[str, RunBook], runs: list[ActivityRun]) -> Books:
    """The books of one drill: ``lines`` are the load's starts, ``books`` what
    :func:`read_books` found, ``runs`` the workers' activity executions."""
    acked = [x for x in lines if "error" not in x]
    problems: dict[str, list[str]] = {}
    lost = 0
    for line in acked:
        found = workflow_problems(line, books)
        problems.update(found)
        book = books.get(line["workflow_id"])
        ok = book is not None and book.status == "completed"
        if not ok or book is None or book.output != expected_output(line["kind"], line["name"]):
            lost += 1
    # A start the client saw fail may still have been committed: then it must have run to
    # completion like any other, never be left half-done.
    half_done: dict[str, list[str]] = {}
    for line in lines:
        if "error" in line and line["workflow_id"] in books:
            half_done.update(workflow_problems(line, books))
    ours = [b for b in books.values() if b.workflow_type in KIND_OF_TYPE]
    return Books(
        acknowledged=len(acked),
        unacknowledged=len(lines) - len(acked),
        completed=len(acked) - lost,
        lost=lost,
        duplicated=sum(1 for line in acked if duplicated(line, books)),
        problems=problems,
        half_done=half_done,
        activities=activity_books(books, runs),
        lease_repairs=sum(b.lease_repairs for b in ours),
    )
