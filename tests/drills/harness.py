"""Run the drills' SDK workload around one fault (trio side).

    run = await run_drill(cluster, dsn, workdir, fault=inject, settings=DrillLoad(...))

``run_drill`` starts the SDK workers (``workload.py worker``) against the cluster's load
balancer, waits until the roster lists them, starts the load (``workload.py load``)
and, ``fault_at_s`` after the first start was sent, awaits ``fault(workload)``: the drill
breaks something there and marks what it did and when (:meth:`Workload.mark`, wall
clock). The load keeps going through the fault in its own process. Then the drill waits
for every acknowledged workflow (and every child) to close, stops the workers (SIGTERM)
and returns a :class:`DrillRun`: the starts, the books read from the database, the
activity executions the workers recorded and the marks. Every process it started is
killed on the way out, whatever happened; every wait is bounded.

The fault callback may also reach the workers (``workload.workers``: kill one, start a
replacement with :meth:`Workload.add_worker`).
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from books import ActivityRun, RunBook, read_activity_runs, read_books
from cluster.processes import NodeProcess, ProcessCluster

from conftest import CP

WORKLOAD = Path(__file__).with_name("workload.py")

#: Lease length of the drills' nodes, in seconds.
LEASE_S = 5
#: Short leases and a fast repair: a task whose lease or answer a fault took is handed
#: out again within seconds, not after the default minute.
SHORT_LEASES = {
    "DW_WORKFLOW_TASK_TIMEOUT": str(LEASE_S),
    "DW_ACTIVITY_TASK_TIMEOUT": str(LEASE_S),
    "DW_TASK_REPAIR_INTERVAL_SECONDS": "1",
}


@attrs.frozen
class DrillLoad:
    """The load one drill holds."""

    seconds: float = 20.0  # how long the client starts workflows
    rate: float = 6.0  # workflows started per second
    fault_at_s: float = 7.0  # after the first start
    workers: int = 2
    poll_timeout_s: float = 10.0  # the SDK workers' long-poll timeout
    drain_timeout_s: float = 40.0  # every acknowledged workflow closes within this after the load
    worker_max_s: float = 240.0  # a worker stops by itself after this long at the latest


@attrs.define(eq=False)
class SdkProcess:
    """A ``workload.py`` process whose stdout and stderr go to files."""

    name: str
    proc: trio.Process
    out: Path
    err: Path

    @classmethod
    async def start(cls, workdir: Path, name: str, *args: str) -> SdkProcess:
        out, err = workdir / f"{name}.out", workdir / f"{name}.err"
        with out.open("wb") as o, err.open("wb") as e:
            proc = await trio.lowlevel.open_process(
                [sys.executable, str(WORKLOAD), *args],
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
            self.kill()
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


@attrs.define(eq=False)
class Workload:
    """The SDK processes of one drill, and the marks the drill set (wall clock)."""

    cluster: ProcessCluster
    workdir: Path
    load_settings: DrillLoad
    queue: str = attrs.field(factory=lambda: f"drill-{uuid.uuid4().hex[:8]}")
    workers: list[SdkProcess] = attrs.field(factory=list)
    load: SdkProcess | None = None
    marks: dict[str, float] = attrs.field(factory=dict)

    @property
    def starts(self) -> Path:
        return self.workdir / "starts.jsonl"

    def runs_log(self, name: str) -> Path:
        return self.workdir / f"{name}.runs.jsonl"

    def mark(self, name: str) -> float:
        """Record that ``name`` happened now; returns the time."""
        self.marks[name] = time.time()
        return self.marks[name]

    async def add_worker(self, url: str | None = None) -> SdkProcess:
        """Start one more SDK worker (on the load balancer unless ``url``)."""
        name = f"worker-{len(self.workers)}"
        s = self.load_settings
        args = (
            url or self.cluster.lb_url,
            self.cluster.token,
            self.queue,
            str(s.worker_max_s),
            str(s.poll_timeout_s),
            str(self.runs_log(name)),
        )
        worker = await SdkProcess.start(self.workdir, name, "worker", *args)
        self.workers.append(worker)
        return worker

    async def wait_for_workers(self, count: int, timeout_s: float = 30.0) -> None:
        """Until the roster lists ``count`` workers on the queue."""
        async with self.cluster.client(self.cluster.lb_url, **CP) as c:
            with trio.move_on_after(timeout_s):
                while True:
                    r = await c.get("/api/workers", params={"task_queue": self.queue})
                    if r.status_code == 200 and len(r.json()["workers"]) >= count:
                        return
                    await trio.sleep(0.2)
        raise AssertionError(f"{count} workers never registered:\n{self.cluster.logs()}")

    async def first_start(self, timeout_s: float = 30.0) -> float:
        """When the load's first start was sent (wall clock)."""
        with trio.fail_after(timeout_s):
            while True:
                text = self.starts.read_text() if self.starts.exists() else ""
                if text.strip():
                    return float(json.loads(text.splitlines()[0])["sent_at"])
                await trio.sleep(0.05)

    def kill_all(self) -> None:
        for proc in [*self.workers, *([self.load] if self.load else [])]:
            proc.kill()


@attrs.frozen
class DrillRun:
    """What one drill produced."""

    settings: DrillLoad
    lines: list[dict[str, Any]]  # one per start the load made
    count: int  # starts the load made
    prefix: str
    books: dict[str, RunBook]  # the workflows and their children, by workflow id
    activity_runs: list[ActivityRun]  # what the workers really ran
    workers: list[dict[str, Any]]  # each worker's report
    marks: dict[str, float]
    load_done: float
    drained: float

    @property
    def acked(self) -> dict[str, dict[str, Any]]:
        return {x["workflow_id"]: x for x in self.lines if "error" not in x}

    @property
    def unacked(self) -> list[dict[str, Any]]:
        return [x for x in self.lines if "error" in x]

    @property
    def first_sent(self) -> float:
        return min(x["sent_at"] for x in self.lines)

    @property
    def last_sent(self) -> float:
        return max(x["sent_at"] for x in self.lines)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def wait_closed(dsn: str, prefix: str, ids: set[str], timeout_s: float) -> dict[str, RunBook]:
    """The books once every workflow of ``ids`` and every child is closed, or at the
    timeout (the books then show what is still open)."""
    with trio.move_on_after(timeout_s):
        while True:
            books = await read_books(dsn, prefix)
            children = {c for wid in ids if wid in books for c in books[wid].children}
            if all(i in books and books[i].closed_at is not None for i in ids | children):
                return books
            await trio.sleep(0.5)
    return await read_books(dsn, prefix)


Fault = Callable[[Workload], Awaitable[None]]


async def run_drill(
    cluster: ProcessCluster,
    dsn: str,
    workdir: Path,
    *,
    fault: Fault,
    load: DrillLoad = DrillLoad(),
) -> DrillRun:
    """The workload through ``cluster``'s load balancer with ``fault`` injected
    ``load.fault_at_s`` into it; then the books (see the module docstring)."""
    workdir.mkdir(parents=True, exist_ok=True)
    w = Workload(cluster, workdir, load)
    try:
        for _ in range(load.workers):
            await w.add_worker()
        await w.wait_for_workers(load.workers)
        args = (cluster.lb_url, cluster.token, w.queue, str(load.seconds), str(load.rate))
        w.load = await SdkProcess.start(workdir, "load", "load", *args, str(w.starts))
        await trio.sleep(max(0.0, await w.first_start() + load.fault_at_s - time.time()))
        w.mark("fault")
        await fault(w)
        w.marks.setdefault("fault_end", w.marks["fault"])
        loaded = await w.load.result(load.seconds + 90)
        load_done = time.time()
        lines = read_lines(w.starts)
        acked = {x["workflow_id"] for x in lines if "error" not in x}
        books = await wait_closed(dsn, loaded["prefix"], acked, load.drain_timeout_s)
        drained = time.time()
        for worker in w.workers:
            if worker.proc.returncode is None:
                worker.proc.send_signal(signal.SIGTERM)
        reports = [
            await worker.result(45) for worker in w.workers if worker.proc.returncode in (None, 0)
        ]
    finally:
        w.kill_all()
    runs = read_activity_runs([w.runs_log(worker.name) for worker in w.workers])
    return DrillRun(
        load, lines, loaded["count"], loaded["prefix"], books, runs, reports,
        dict(w.marks), load_done, drained,
    )  # fmt: skip


_REQUEST = re.compile(r"route=(\S+) (?:status=(\d+) )?duration_ms=([\d.]+)")


@attrs.frozen
class LoggedRequest:
    node: str
    route: str
    status: int | None
    duration_s: float
    line: str


def logged_requests(cluster: ProcessCluster) -> list[LoggedRequest]:
    """Every request the nodes logged (their one line per request), all starts."""
    found = []
    for node in cluster.nodes:
        for line in node.log.read_text(errors="replace").splitlines():
            m = _REQUEST.search(line)
            if m is not None:
                status = int(m.group(2)) if m.group(2) else None
                found.append(
                    LoggedRequest(
                        node.server_id, m.group(1), status, float(m.group(3)) / 1000, line
                    )
                )
    return found


#: Probes whose 503 is their meaning (not ready, database down), not an error answer.
PROBES = ("/api/ready", "/api/health")


def server_errors(requests: list[LoggedRequest], *, allowed: tuple[int, ...] = ()) -> list[str]:
    """The log lines of 5xx answers (but the probes', and the ``allowed`` statuses)."""
    return [
        r.line
        for r in requests
        if r.status is not None
        and r.status >= 500
        and r.status not in allowed
        and r.route not in PROBES
    ]


def late_polls(requests: list[LoggedRequest], poll_timeout_s: float) -> list[LoggedRequest]:
    """Polls held past their timeout (with 1.5 s to spare for the answer itself)."""
    return [
        r for r in requests if r.route.endswith("/poll") and r.duration_s > poll_timeout_s + 1.5
    ]


def longest_poll(requests: list[LoggedRequest]) -> float | None:
    polls = [r.duration_s for r in requests if r.route.endswith("/poll")]
    return max(polls) if polls else None


@attrs.frozen
class ReadyAnswer:
    at: float
    status: int  # 0: no answer within the probe timeout
    degraded: bool  # the wake bus (``checks.cache``) said it was degraded


@attrs.define
class ReadyTimeline:
    """Each node's ``GET /api/ready`` through a drill, read every ``every_s`` with a
    ``timeout_s`` budget (an orchestrator's readiness probe): start :meth:`watch` for each
    node in a nursery and cancel it at the end."""

    every_s: float = 0.1
    timeout_s: float = 2.0
    answers: dict[str, list[ReadyAnswer]] = attrs.field(factory=dict)

    async def watch(self, node: NodeProcess) -> None:
        series = self.answers.setdefault(node.server_id, [])
        async with httpx.AsyncClient(base_url=node.url, timeout=self.timeout_s) as c:
            while True:
                try:
                    r = await c.get("/api/ready")
                    cache = r.json().get("checks", {}).get("cache", {})
                    series.append(
                        ReadyAnswer(time.time(), r.status_code, bool(cache.get("degraded")))
                    )
                except (httpx.HTTPError, ValueError):
                    series.append(ReadyAnswer(time.time(), 0, False))
                await trio.sleep(self.every_s)

    def changes(self, node: str, since: float) -> list[tuple[float, int, bool]]:
        """The answers from ``since`` on where the status or degraded flag changed (the
        first included): (time, status, degraded)."""
        found: list[tuple[float, int, bool]] = []
        for a in self.answers.get(node, []):
            if a.at >= since and (not found or found[-1][1:] != (a.status, a.degraded)):
                found.append((a.at, a.status, a.degraded))
        return found

    def seconds(self, node: str, start: float, end: float, *, status: int) -> float:
        """How long the node answered ``status`` between ``start`` and ``end``."""
        series = [a for a in self.answers.get(node, []) if start <= a.at < end]
        return sum(b.at - a.at for a, b in itertools.pairwise(series) if a.status == status)
