"""A node killed under load: two ``dwtrio serve`` nodes behind nginx, two SDK worker
processes and an SDK client starting workflows at a steady pace, all through nginx.

A few seconds into the load node A is killed with SIGKILL (it dies holding parked polls
and requests in flight), node B carries on alone, A is started again on the same port and
the load goes on. Then the books are checked in the database: every workflow whose start
was acknowledged completed exactly once with its own result, each run's history is
gap-free with one of each step, and no node answered a 5xx or held a poll past its
deadline. The figures (acknowledged, completed, lost, duplicated, disruption time,
throughput) are printed as one line and, when ``DWTRIO_FIGURES_DIR`` is set, written to
``node_kill.json`` there.

**Disruption time**: completions are counted in 0.5 s buckets laid from the kill onwards.
The baseline is the mean number of completions per bucket over the 5 s before the kill.
The disruption time is ``k * 0.5`` s for the first bucket ``k`` (0 = the one that starts
at the kill) that, and the bucket after it, each hold at least 75% of the baseline: 0 when
the kill never slowed completions down, the time until the pace is back otherwise.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from processes import ProcessCluster, process_cluster

from dwtrio import payloads
from dwtrio.store.pool import Conn, connect_once

from conftest import CP

DRIVER = Path(__file__).with_name("lb_driver.py")

LOAD_S = 20.0  # how long the client starts workflows
RATE = 6.0  # workflows started per second
KILL_AT_S = 7.0  # after the first start
DOWN_S = 4.0  # node A stays dead this long before it is started again
BASELINE_S = 5.0  # the window before the kill the disruption is measured against
BUCKET_S = 0.5
RECOVERED = 0.75  # share of the baseline two buckets in a row must reach to count as recovered
DRAIN_TIMEOUT_S = 30.0  # every acknowledged workflow closes within this after the load
POLL_TIMEOUT_S = 10  # the SDK workers' long-poll timeout

#: Short leases and a fast repair: a task whose lease died with node A (its answer lost
#: with the connection) is handed out again within seconds, not after the default minute.
SETTINGS = {
    "DW_WORKFLOW_TASK_TIMEOUT": "5",
    "DW_ACTIVITY_TASK_TIMEOUT": "5",
    "DW_TASK_REPAIR_INTERVAL_SECONDS": "1",
}

pytestmark = [pytest.mark.sdk, pytest.mark.slow]


def window_count(times: list[float], start: float, end: float) -> int:
    return sum(1 for t in times if start <= t < end)


def disruption_seconds(
    completions: list[float], *, kill: float, end: float, baseline_s: float = BASELINE_S
) -> float | None:
    """The disruption time defined in this module's docstring; None if completions never
    recovered before ``end``."""
    per_bucket = window_count(completions, kill - baseline_s, kill) * BUCKET_S / baseline_s
    recovered = [
        window_count(completions, start, start + BUCKET_S) >= RECOVERED * per_bucket
        for start in (kill + k * BUCKET_S for k in range(int((end - kill) / BUCKET_S)))
    ]
    for k in range(len(recovered) - 1):
        if recovered[k] and recovered[k + 1]:
            return k * BUCKET_S
    return None


def test_disruption_is_the_time_until_two_buckets_in_a_row_are_back_to_the_baseline() -> None:
    steady = [i / 4 for i in range(40)]  # 4 completions a second from 0 to 10 s
    assert disruption_seconds(steady, kill=6.0, end=10.0) == 0.0
    # Nothing completes from 6.0 to 7.5 s, then the backlog and the steady pace resume.
    gap = [t for t in steady if not 6.0 <= t < 7.5] + [7.5, 7.5, 7.6]
    assert disruption_seconds(sorted(gap), kill=6.0, end=10.0) == 1.5
    # A half rate is not a recovery; never reaching 75% before the end gives None.
    half = [t for t in steady if t < 6.0 or int(t * 4) % 2 == 0]
    assert disruption_seconds(half, kill=6.0, end=10.0) is None


@attrs.define
class Proc:
    """An SDK driver process whose stdout and stderr go to files."""

    name: str
    proc: trio.Process
    out: Path
    err: Path

    @classmethod
    async def start(cls, workdir: Path, name: str, *args: str) -> Proc:
        out, err = workdir / f"{name}.out", workdir / f"{name}.err"
        with out.open("wb") as o, err.open("wb") as e:
            proc = await trio.lowlevel.open_process(
                [sys.executable, str(DRIVER), *args],
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
            )
        return cls(name, proc, out, err)

    async def result(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the process (killing it after ``timeout_s``); its last stdout line."""
        with trio.move_on_after(timeout_s):
            await self.proc.wait()
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"{self.name} still running after {timeout_s}s:\n{self.stderr()}")
        assert self.proc.returncode == 0, f"{self.name} failed:\n{self.stderr()}"
        lines = self.out.read_text().strip().splitlines()
        assert lines, f"{self.name} printed nothing:\n{self.stderr()}"
        return json.loads(lines[-1])  # type: ignore[no-any-return]

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


async def wait_for_workers(cluster: ProcessCluster, queue: str, count: int) -> None:
    async with cluster.client(cluster.lb_url, **CP) as c:
        with trio.move_on_after(30):
            while True:
                r = await c.get("/api/workers", params={"task_queue": queue})
                if r.status_code == 200 and len(r.json()["workers"]) >= count:
                    return
                await trio.sleep(0.2)
    raise AssertionError(f"{count} workers never registered on {queue}:\n{cluster.logs()}")


async def first_start(path: Path) -> float:
    """When the load's first start was sent (wall clock)."""
    with trio.fail_after(30):
        while True:
            text = path.read_text() if path.exists() else ""
            if text.strip():
                return float(json.loads(text.splitlines()[0])["sent_at"])
            await trio.sleep(0.05)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@attrs.frozen
class RunBook:
    workflow_id: str
    status: str
    output: Any
    closed_at: float | None
    runs: int
    sequences: tuple[int, ...]
    last_sequence: int
    events: Counter[str]


async def read_books(dsn: str, prefix: str) -> dict[str, RunBook]:
    async def op(conn: Conn) -> dict[str, RunBook]:
        rows = await conn.fetch(
            """
            SELECT r.workflow_id, r.status, r.output, extract(epoch FROM r.closed_at) AS closed_at,
                   r.last_history_sequence,
                   (SELECT count(*) FROM workflow_runs o WHERE o.workflow_id = r.workflow_id)
                       AS runs,
                   array(SELECT sequence FROM history_events h WHERE h.run_id = r.id
                         ORDER BY sequence) AS sequences,
                   array(SELECT event_type FROM history_events h WHERE h.run_id = r.id)
                       AS event_types
            FROM workflow_runs r WHERE r.workflow_id LIKE $1
            """,
            prefix + "-%",
        )
        return {
            row["workflow_id"]: RunBook(
                row["workflow_id"],
                row["status"],
                payloads.decode_for_view(row["output"]) if row["output"] else None,
                float(row["closed_at"]) if row["closed_at"] is not None else None,
                int(row["runs"]),
                tuple(row["sequences"]),
                int(row["last_history_sequence"]),
                Counter(row["event_types"]),
            )
            for row in rows
        }

    return await connect_once(dsn, op)


async def lease_repairs(dsn: str, prefix: str) -> int:
    """How many times a lease of these workflows' tasks expired and was handed out again."""

    async def op(conn: Conn) -> int:
        query = "SELECT sum(repair_count) FROM workflow_tasks WHERE workflow_id LIKE $1"
        return int(await conn.fetchval(query, prefix + "-%") or 0)

    return await connect_once(dsn, op)


async def wait_closed(dsn: str, prefix: str, ids: set[str]) -> dict[str, RunBook]:
    """The books once every workflow of ``ids`` is closed, or at the drain timeout."""
    with trio.move_on_after(DRAIN_TIMEOUT_S):
        while True:
            books = await read_books(dsn, prefix)
            if all(i in books and books[i].closed_at is not None for i in ids):
                return books
            await trio.sleep(0.5)
    return await read_books(dsn, prefix)


def expected_output(line: dict[str, Any]) -> Any:
    greeting = f"hello, {line['name']}"
    if line["kind"] == "greeter":
        return greeting
    return {"greeting": greeting, "items": [line["signal"]], "ok": True}


#: Exactly one of each of these per run (the waiter also has its timer and its signal).
ONCE = ("StartAccepted", "WorkflowStarted", "ActivityScheduled", "ActivityCompleted")
ONCE_WAITER = ("TimerFired", "SignalReceived")


def completed_well(line: dict[str, Any], book: RunBook | None) -> bool:
    return book is not None and book.status == "completed" and book.output == expected_output(line)


def duplicated(book: RunBook) -> bool:
    """A second run, or a step recorded twice."""
    steps = (*ONCE, *ONCE_WAITER, "WorkflowCompleted")
    return book.runs > 1 or any(book.events[t] > 1 for t in steps)


def book_problems(line: dict[str, Any], book: RunBook | None) -> list[str]:
    """What is wrong with one workflow's books (empty when it completed exactly once)."""
    if book is None:
        return ["no such workflow"]
    problems = []
    if book.status != "completed":
        problems.append(f"status {book.status}")
    elif book.output != expected_output(line):
        problems.append(f"output {book.output!r}")
    if book.runs != 1:
        problems.append(f"{book.runs} runs")
    if book.sequences != tuple(range(1, book.last_sequence + 1)):
        problems.append(f"history sequences {book.sequences} (last {book.last_sequence})")
    once = ONCE + (ONCE_WAITER if line["kind"] == "waiter" else ())
    for event_type in (*once, "WorkflowCompleted"):
        if book.events[event_type] != 1:
            problems.append(f"{book.events[event_type]} x {event_type}")
    return problems


_REQUEST = re.compile(r"route=(\S+) (?:status=(\d+) )?duration_ms=([\d.]+)")


def node_log_findings(cluster: ProcessCluster, poll_timeout_s: float) -> tuple[list[str], int]:
    """5xx answers and polls held past their deadline in the nodes' request logs, and how
    many requests the nodes logged."""
    findings, requests = [], 0
    for node in cluster.nodes:
        for line in node.log.read_text(errors="replace").splitlines():
            m = _REQUEST.search(line)
            if m is None:
                continue
            requests += 1
            route, status, duration_ms = m.group(1), m.group(2), float(m.group(3))
            if status is not None and status.startswith("5"):
                findings.append(f"{node.server_id}: {line}")
            if route.endswith("/poll") and duration_ms > (poll_timeout_s + 1.5) * 1000:
                findings.append(f"{node.server_id}: late poll: {line}")
    return findings, requests


@attrs.frozen
class Run:
    """What one node-kill run produced: the client's lines, the books, the workers' reports
    and when things happened (wall clock)."""

    lines: list[dict[str, Any]]
    count: int  # starts the load driver made
    books: dict[str, RunBook]
    workers: list[dict[str, Any]]
    lease_repairs: int
    killed_at: float
    restart_began: float
    restarted_at: float
    load_done: float
    drained: float

    @property
    def acked(self) -> dict[str, dict[str, Any]]:
        return {x["workflow_id"]: x for x in self.lines if "error" not in x}

    @property
    def unacked(self) -> list[dict[str, Any]]:
        return [x for x in self.lines if "error" in x]


async def run_with_a_kill(cluster: ProcessCluster, dsn: str, workdir: Path) -> Run:
    """Workers and the load through nginx; node A killed KILL_AT_S into the load and started
    again DOWN_S later; then the books once every acknowledged workflow closed."""
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    starts = workdir / "starts.jsonl"
    url, token, a = cluster.lb_url, cluster.token, cluster.nodes[0]
    procs: list[Proc] = []
    try:
        for i in range(2):
            worker_args = (url, token, queue, "120", str(POLL_TIMEOUT_S))
            procs.append(await Proc.start(workdir, f"worker-{i}", "worker", *worker_args))
        workers = list(procs)
        await wait_for_workers(cluster, queue, len(workers))
        load_args = (url, token, queue, str(LOAD_S), str(RATE), str(starts))
        load = await Proc.start(workdir, "load", "load", *load_args)
        procs.append(load)
        await trio.sleep(max(0.0, await first_start(starts) + KILL_AT_S - time.time()))
        killed_at = time.time()
        await a.kill()
        await trio.sleep(DOWN_S)
        restart_began = time.time()
        await a.start()
        restarted_at = time.time()
        loaded = await load.result(LOAD_S + 60)
        load_done = time.time()
        lines = read_lines(starts)
        acked = {x["workflow_id"] for x in lines if "error" not in x}
        books = await wait_closed(dsn, loaded["prefix"], acked)
        drained = time.time()
        repairs = await lease_repairs(dsn, loaded["prefix"])
        for worker in workers:
            worker.proc.send_signal(signal.SIGTERM)
        reports = [await worker.result(45) for worker in workers]
    finally:
        for proc in procs:
            proc.kill()
    return Run(
        lines, loaded["count"], books, reports, repairs,
        killed_at, restart_began, restarted_at, load_done, drained,
    )  # fmt: skip


def figures_of(run: Run, requests_logged: int) -> dict[str, Any]:
    acked, books = run.acked, run.books
    completed_at = sorted(
        b.closed_at for wid, b in books.items() if wid in acked and b.closed_at is not None
    )
    load_end = max(x["sent_at"] for x in run.lines)
    # Until the last completion, so that a backlog worked off after the load counts.
    last = completed_at[-1] + BUCKET_S if completed_at else load_end
    disruption = disruption_seconds(completed_at, kill=run.killed_at, end=last)
    recovered_at = run.killed_at + (disruption or 0.0)
    latency = [
        closed - x["answered_at"]
        for wid, x in acked.items()
        if x["kind"] == "greeter" and wid in books and (closed := books[wid].closed_at)
    ]

    def rate(start: float, end: float) -> float | None:
        if end <= start:
            return None
        return round(window_count(completed_at, start, end) / (end - start), 2)

    first = min(x["sent_at"] for x in run.lines)
    return {
        "acknowledged": len(acked),
        "unacknowledged": len(run.unacked),
        "completed": sum(1 for wid, x in acked.items() if completed_well(x, books.get(wid))),
        "lost": sum(1 for wid, x in acked.items() if not completed_well(x, books.get(wid))),
        "duplicated": sum(1 for wid in acked if wid in books and duplicated(books[wid])),
        "disruption_s": disruption,
        "restart_dip_s": disruption_seconds(completed_at, kill=run.restarted_at, end=last),
        "node_a_down_s": round(run.restart_began - run.killed_at, 2),
        "node_a_restart_s": round(run.restarted_at - run.restart_began, 2),
        "offered_per_s": RATE,
        "throughput_before_per_s": rate(run.killed_at - BASELINE_S, run.killed_at),
        "throughput_during_per_s": rate(run.killed_at, recovered_at),
        "throughput_after_per_s": rate(recovered_at, load_end),
        "greeter_latency_max_s": round(max(latency), 2) if latency else None,
        "drain_s": round(run.drained - run.load_done, 2),
        "lease_repairs": run.lease_repairs,
        "signal_retries": sum(x.get("signal_tries", 1) - 1 for x in run.lines),
        "worker_warnings": sum(w["warnings"] for w in run.workers),
        "node_requests_logged": requests_logged,
        # Completions in each second from the first start; the kill and the restart (ready)
        # in seconds from the first start.
        "completions_per_s": [
            window_count(completed_at, first + i, first + i + 1)
            for i in range(int(last - first) + 1)
        ],
        "killed_at_s": round(run.killed_at - first, 2),
        "restarted_at_s": round(run.restarted_at - first, 2),
    }


async def test_a_node_killed_under_load_loses_no_workflow(
    db_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "cluster"
    async with process_cluster(
        workdir, dsn=db_dsn, redis_url=redis_url, settings=SETTINGS
    ) as cluster:
        run = await run_with_a_kill(cluster, db_dsn, workdir)
        findings, requests = node_log_findings(cluster, poll_timeout_s=POLL_TIMEOUT_S)

    figures = figures_of(run, requests)
    print("node-kill figures: " + json.dumps(figures))
    if os.environ.get("DWTRIO_FIGURES_DIR"):
        out = Path(os.environ["DWTRIO_FIGURES_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "node_kill.json").write_text(json.dumps(figures, indent=2) + "\n")

    assert len(run.lines) == run.count
    assert len(run.acked) >= 0.9 * run.count, f"most starts failed: {run.unacked[:5]}"
    problems = {
        wid: p for wid, x in run.acked.items() if (p := book_problems(x, run.books.get(wid)))
    }
    assert problems == {}, f"acknowledged workflows not completed exactly once: {problems}"
    # A start the client saw fail may still have been committed: then it must have run to
    # completion like any other, never be left half-done.
    half_done = {
        x["workflow_id"]: p
        for x in run.unacked
        if x["workflow_id"] in run.books and (p := book_problems(x, run.books[x["workflow_id"]]))
    }
    assert half_done == {}, f"unacknowledged starts left half-done: {half_done}"
    assert [x for x in run.lines if x.get("signal_failed")] == []
    for w in run.workers:
        assert w["survived"], f"an SDK worker's run loop died: {w}"
    assert findings == [], "\n".join(findings[:20])
    assert figures["disruption_s"] is not None, f"completions never recovered: {figures}"
