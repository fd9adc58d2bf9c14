"""soak: a long, steady, mixed SDK load on two nodes, sampled every 10 s, to show that
nothing grows without bound once retention is on.

Setup, all on loopback and on a fresh database of ``--dsn``: two ``dwtrio serve``
processes (``node-a``, ``node-b``) on one wake bus (Redis with ``--redis-url``, else
Postgres LISTEN/NOTIFY), two SDK worker processes (one per node) and one SDK load
process (bench/soak_driver.py) starting ``--rate`` workflows a second, round robin over
the nodes, for ``--duration`` seconds: greeters, waiters (a timer and a signal) and
parents with a child workflow. Then it drains: the load stops and the soak waits until
every run it started has closed (at most ``DRAIN_TIMEOUT_S``).

Retention, with a clock shift. A namespace keeps closed runs for at least one day,
which a 30-minute soak cannot wait out. So every tick the soak takes the runs that
closed more than ``--retention-after`` seconds ago (120 by default), checks each one
(below), and moves its ``closed_at`` back by one day, in one transaction. From then on
the run is past the default namespace's window (``DW_HISTORY_RETENTION_DAYS=1``) and
the servers' own retention loops (``DW_RETENTION_INTERVAL_SECONDS=10``) delete it with
all its rows: the real loop and the real deletes, on runs that look one day old. The
shift is one more UPDATE per run on ``workflow_runs``, the soak's own write.

Vacuum. Deleted rows leave dead tuples that only VACUUM makes reusable; PostgreSQL's
autovacuum does that on its own. On a server with ``autovacuum = off`` (some CI
configurations) the soak runs ``VACUUM (ANALYZE)`` on its database every
``AUTO_VACUUM_EVERY_S`` in autovacuum's place and says so; ``--vacuum-every`` sets
another period, 0 none (then the tables of such a server grow whatever retention does).

The books. Before its ``closed_at`` moves, each run is checked against its own input:
completed, with the result its arguments call for, one run per workflow id (and a
workflow id never seen before), a history without gaps or repeated sequences, no
once-per-run event twice, and its activity attempts (more than one is a redelivery,
counted). At the end every start the load had acknowledged must have been checked
(``lost`` otherwise) and no run may be left open.

Every ``SAMPLE_EVERY_S`` it samples, per node: RSS and open file descriptors (psutil),
pool connections open and in use and runs the retention loop pruned (``GET
/api/system/metrics``); Postgres: the size of every table of the database
(``pg_total_relation_size``), live and dead tuples (``pg_stat_user_tables``), the
database size; the workload: starts and closes per second, the p99 of the start request
(client side) and of a greeter's start-to-close time (server timestamps). Each sample is
a progress line, a CSV row and a point of the PNG plot (one panel per metric); the
verdict gives each series' growth per hour over the first and the last half of the load
and whether it is bounded (:func:`verdict`).

Reproduce (30 minutes)::

    python -m bench --dsn postgresql://postgres@127.0.0.1:5432/postgres \\
        --redis-url redis://127.0.0.1:6379/0 soak

CI runs ``soak --duration 60 --retention-after 20`` (tests/drills/test_soak.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.harness import (
    CP,
    REPO,
    RESULTS,
    bench_database,
    dwtrio_server,
    machine,
    percentiles,
    server_processes,
    table,
)
from bench.soak_driver import expected_output
from dwtrio import payloads

SAMPLE_EVERY_S = 10.0
#: How often the soak vacuums its database when the server's autovacuum is off (the
#: default autovacuum_naptime).
AUTO_VACUUM_EVERY_S = 60.0
DRAIN_TIMEOUT_S = 90.0
NODES = ("node-a", "node-b")
QUEUE = "soak"
#: Once-per-run history events: any of them twice is a duplicate.
ONCE = (
    "StartAccepted",
    "WorkflowStarted",
    "WorkflowCompleted",
    "ActivityScheduled",
    "ActivityCompleted",
    "TimerFired",
    "SignalReceived",
    "ChildWorkflowScheduled",
    "ChildRunCompleted",
)
#: Activity attempts a run of each type makes when nothing is redelivered.
ACTIVITIES = {"soak-greeter": 1, "soak-waiter": 1, "soak-child": 1, "soak-parent": 0}
#: Bounded (:func:`verdict`): last-half growth at most this share of the first half's ...
BOUNDED_SHARE_OF_FIRST = 0.25
#: ... or what the last half adds at most this share of the series' level.
FLAT_SHARE = 0.05

#: Checks every run closed more than $1 seconds ago (and not yet shifted), then shifts.
AUDIT_SQL = """
SELECT r.id, r.workflow_id, r.workflow_type, r.status, r.arguments, r.output,
       r.last_history_sequence,
       (SELECT count(*) FROM workflow_runs o WHERE o.workflow_id = r.workflow_id) AS runs,
       (SELECT count(*) FROM activity_attempts a WHERE a.run_id = r.id) AS attempts,
       h.events, h.distinct_sequences, h.max_sequence, h.types
  FROM workflow_runs r
 CROSS JOIN LATERAL (
        SELECT count(*) AS events, count(DISTINCT sequence) AS distinct_sequences,
               coalesce(max(sequence), 0) AS max_sequence, array_agg(event_type) AS types
          FROM history_events WHERE run_id = r.id) h
 WHERE r.closed_at IS NOT NULL
   AND r.closed_at < now() - make_interval(secs => $1::float8)
   AND r.closed_at > now() - interval '12 hours'
 ORDER BY r.closed_at
   FOR UPDATE OF r
"""
SHIFT_SQL = "UPDATE workflow_runs SET closed_at = closed_at - interval '1 day' WHERE id = ANY($1)"

TABLES_SQL = """
SELECT relname AS name, pg_total_relation_size(relid) AS bytes,
       n_live_tup AS live, n_dead_tup AS dead
  FROM pg_stat_user_tables ORDER BY relname
"""
WINDOW_SQL = """
SELECT now() AS db_now,
       count(*) FILTER (WHERE closed_at > $1) AS closed,
       array_agg(extract(epoch FROM closed_at - started_at)::float8 * 1000)
           FILTER (WHERE closed_at > $1 AND workflow_type = 'soak-greeter') AS greeter_ms,
       count(*) FILTER (WHERE closed_at IS NULL) AS open
  FROM workflow_runs
 WHERE closed_at IS NULL OR closed_at > $1
"""


# --- the books ---------------------------------------------------------------------


class Books:
    """What the audits found, run by run, before retention deleted anything."""

    def __init__(self) -> None:
        self.seen: set[str] = set()  # workflow ids audited
        self.by_type: Counter[str] = Counter()
        self.shifted = 0
        self.wrong = 0
        self.not_completed = 0
        self.duplicated = 0
        self.history_gaps = 0
        self.redelivered_attempts = 0
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)

    def check(self, row: Mapping[str, Any]) -> None:
        wf, kind = row["workflow_id"], row["workflow_type"]
        self.by_type[kind] += 1
        if wf in self.seen or row["runs"] > 1:
            self.duplicated += 1
            self.problem(f"{wf}: a second run")
        self.seen.add(wf)
        counts = Counter(row["types"] or [])
        if any(counts[t] > 1 for t in ONCE):
            self.duplicated += 1
            self.problem(f"{wf}: {dict(counts)}")
        last = row["last_history_sequence"]
        if not row["events"] == row["distinct_sequences"] == row["max_sequence"] == last:
            self.history_gaps += 1
            self.problem(f"{wf}: {row['events']} events, sequences up to {row['max_sequence']}")
        extra = row["attempts"] - ACTIVITIES.get(kind, 0)
        if extra > 0:
            self.redelivered_attempts += extra
        if row["status"] != "completed":
            self.not_completed += 1
            self.problem(f"{wf}: {row['status']}")
            return
        arguments = payloads.decode_for_view(row["arguments"])
        output = payloads.decode_for_view(row["output"])
        if not arguments or output != expected_output(kind, arguments[0]):
            self.wrong += 1
            self.problem(f"{wf}: {output!r} for {arguments!r}")

    def summary(self, started: list[dict[str, Any]], open_runs: int) -> dict[str, Any]:
        acknowledged = {s["workflow_id"] for s in started if "error" not in s}
        lost = sorted(acknowledged - self.seen)
        return {
            "started": len(started),
            "acknowledged": len(acknowledged),
            "start_errors": sum("error" in s for s in started),
            "signal_failures": sum(bool(s.get("signal_failed")) for s in started),
            "runs_checked": sum(self.by_type.values()),
            "runs_by_type": dict(self.by_type),
            "completed_as_expected": sum(self.by_type.values()) - self.wrong - self.not_completed,
            "lost": len(lost),
            "lost_ids": lost[:20],
            "duplicated": self.duplicated,
            "wrong_results": self.wrong,
            "not_completed": self.not_completed,
            "history_gaps": self.history_gaps,
            "redelivered_attempts": self.redelivered_attempts,
            "open_at_end": open_runs,
            "problems": self.problems,
        }


async def audit(conn: asyncpg.Connection, books: Books, older_than_s: float) -> int:
    """Check the runs closed more than ``older_than_s`` ago and shift them a day back."""
    async with conn.transaction():
        rows = await conn.fetch(AUDIT_SQL, older_than_s)
        for row in rows:
            books.check(dict(row))
        await conn.execute(SHIFT_SQL, [r["id"] for r in rows])
    books.shifted += len(rows)
    return len(rows)


# --- sampling ----------------------------------------------------------------------


class Node:
    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url
        self.processes = server_processes(url)
        assert self.processes, f"no server process found for {url}"

    def rss_mb(self) -> float:
        return float(sum(p.memory_info().rss for p in self.processes)) / 2**20

    def fds(self) -> int:
        return sum(p.num_fds() for p in self.processes)


class StartLog:
    """Reads the load's JSON lines as they are written."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0
        self.lines: list[dict[str, Any]] = []

    def new_lines(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open() as f:
            f.seek(self.offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        self.offset += len(complete.encode())
        fresh = [json.loads(line) for line in complete.splitlines() if line.strip()]
        self.lines += fresh
        return fresh


async def sample(
    t: float,
    phase: str,
    nodes: Sequence[Node],
    http: httpx.AsyncClient,
    conn: asyncpg.Connection,
    since: Any,
    fresh_starts: list[dict[str, Any]],
    window_s: float,
) -> dict[str, Any]:
    row: dict[str, Any] = {"t_s": round(t, 1), "phase": phase, "load1": os.getloadavg()[0]}
    for node in nodes:
        body = (await http.get(f"{node.url}/api/system/metrics", headers=CP)).json()["metrics"]
        pool = body["store"]["pool"]
        retention = body["background_loops"].get("retention", {})
        row[f"{node.name}.rss_mb"] = round(node.rss_mb(), 1)
        row[f"{node.name}.fds"] = node.fds()
        row[f"{node.name}.pool_open"] = pool["open"]
        row[f"{node.name}.pool_in_use"] = pool["in_use"]
        row[f"{node.name}.pool_max"] = pool["max_size"]
        row[f"{node.name}.pruned"] = retention.get("items", 0)
    tables = await conn.fetch(TABLES_SQL)
    for r in tables:
        row[f"table.{r['name']}.mb"] = round(r["bytes"] / 2**20, 3)
        row[f"table.{r['name']}.live"] = r["live"]
        row[f"table.{r['name']}.dead"] = r["dead"]
    row["tables_mb"] = round(sum(r["bytes"] for r in tables) / 2**20, 3)
    row["live_rows"] = sum(r["live"] for r in tables)
    row["dead_rows"] = sum(r["dead"] for r in tables)
    row["db_mb"] = round(
        await conn.fetchval("SELECT pg_database_size(current_database())") / 2**20, 3
    )
    window = await conn.fetchrow(WINDOW_SQL, since)
    assert window is not None  # an aggregate: always one row
    row["db_now"] = window["db_now"]
    row["open_runs"] = window["open"]
    row["closed"] = window["closed"]
    row["closed_per_s"] = round(window["closed"] / window_s, 2)
    row["started_per_s"] = round(len(fresh_starts) / window_s, 2)
    row["greeter_p99_ms"] = _p99(window["greeter_ms"] or [])
    row["start_p99_ms"] = _p99([(s["answered_at"] - s["sent_at"]) * 1000 for s in fresh_starts])
    row["start_errors"] = sum("error" in s for s in fresh_starts)
    return row


def _p99(values: Sequence[float]) -> float | None:
    """The p99 of a window's values, None for a window without any."""
    return round(percentiles(values)["p99"], 1) if values else None


def progress_line(row: dict[str, Any], duration: float) -> str:
    def ms(key: str) -> str:
        return "-" if row[key] is None else f"{row[key]:.0f}ms"

    nodes = " ".join(
        f"{n[-1]}:{row[f'{n}.rss_mb']:.0f}MB/{row[f'{n}.fds']}fd/"
        f"{row[f'{n}.pool_in_use']}of{row[f'{n}.pool_open']}conn"
        for n in NODES
    )
    pruned = sum(row[f"{n}.pruned"] for n in NODES)
    vacuumed = "" if row.get("vacuum_s") is None else f" vacuum {row['vacuum_s']}s"
    return (
        f"[soak {row['t_s']:>5.0f}/{duration:.0f}s {row['phase']}] "
        f"start {row['started_per_s']}/s close {row['closed_per_s']}/s "
        f"p99 greeter {ms('greeter_p99_ms')} start {ms('start_p99_ms')} | {nodes} | "
        f"tables {row['tables_mb']:.1f}MB dead {row['dead_rows']} open {row['open_runs']} "
        f"pruned {pruned}{vacuumed} | load {row['load1']:.1f}"
    )


# --- the verdict -------------------------------------------------------------------


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in units per hour (0 if < 2 points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx * 3600


def verdict(
    points: Sequence[tuple[float, float]], duration: float, cap: float | None = None
) -> dict[str, Any]:
    """Growth per hour over the first half and the last half of the load, and whether the
    series is bounded, and why:

    * ``levelled``: its last-half growth is at most BOUNDED_SHARE_OF_FIRST of the first
      half's (it grew, then stopped);
    * ``flat``: what the fitted line adds over the last half is within FLAT_SHARE of the
      series' level, or within the spread (standard deviation) of its last-half values
      (noise, not a trend);
    * ``capped``: it never exceeded ``cap``, a limit the server enforces (pool size);
    * otherwise ``growing``.
    """
    first = [p for p in points if p[0] <= duration / 2]
    last = [p for p in points if p[0] >= duration / 2]
    g1, g2 = slope_per_hour(first), slope_per_hour(last)
    values = [y for _, y in last]
    level = statistics.fmean(values) if values else 0.0
    spread = statistics.pstdev(values) if values else 0.0
    added = g2 * (last[-1][0] - last[0][0]) / 3600 if len(last) > 1 else 0.0
    peak = max(y for _, y in points) if points else 0.0
    if g1 > 0 and g2 <= BOUNDED_SHARE_OF_FIRST * g1:
        why = "levelled"
    elif added <= max(FLAT_SHARE * abs(level), spread):
        why = "flat"
    elif cap is not None and peak <= cap:
        why = "capped"
    else:
        why = "growing"
    return {
        "first_half_per_h": round(g1, 3),
        "last_half_per_h": round(g2, 3),
        "last_half_added": round(added, 3),
        "last_half_mean": round(level, 3),
        "end": round(points[-1][1], 3) if points else None,
        "max": round(peak, 3),
        "bounded": why != "growing",
        "why": why,
    }


def series_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    per_node = [f"{n}.{m}" for n in NODES for m in ("rss_mb", "fds", "pool_open", "pool_in_use")]
    watched = ("workflow_runs", "history_events", "workflow_tasks", "activity_attempts")
    per_table = [f"table.{t}.mb" for t in watched if f"table.{t}.mb" in rows[-1]]
    return [*per_node, "tables_mb", "db_mb", "live_rows", "dead_rows", *per_table]


def verdicts(rows: Sequence[dict[str, Any]], duration: float) -> dict[str, dict[str, Any]]:
    load = [r for r in rows if r["phase"] == "load"]
    found = {}
    for name in series_names(rows):
        node, _, metric = name.partition(".")
        cap = load[-1].get(f"{node}.pool_max") if metric.startswith("pool_") else None
        points = [(r["t_s"], float(r[name])) for r in load if r.get(name) is not None]
        found[name] = verdict(points, duration, cap)
    return found


def unpruned_projection(rows: Sequence[dict[str, Any]], runs_closed: int) -> dict[str, Any]:
    """What the tables would hold with retention off: bytes per closed run, measured over
    the samples before the first prune, times every run the soak closed."""
    before = [r for r in rows if sum(r[f"{n}.pruned"] for n in NODES) == 0]
    if len(before) < 2:
        return {}
    closed = sum(r["closed"] for r in before[1:])
    grown = before[-1]["tables_mb"] - before[0]["tables_mb"]
    if closed <= 0:
        return {}
    per_run_kb = grown * 1024 / closed
    return {
        "kb_per_closed_run": round(per_run_kb, 2),
        "measured_over_runs": round(closed),
        "tables_mb_without_retention": round(
            before[0]["tables_mb"] + per_run_kb * runs_closed / 1024, 1
        ),
    }


# --- the run -----------------------------------------------------------------------


def _python_module(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


@contextlib.contextmanager
def _children(logs: Path) -> Any:
    """Started SDK processes (name -> Popen), stopped (SIGTERM, then SIGKILL) at the end."""
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        with (logs / f"{name}.out").open("wb") as out, (logs / f"{name}.err").open("wb") as err:
            procs[name] = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err)
        return procs[name]

    try:
        yield start
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _json_out(path: Path) -> Any:
    text = path.read_text().strip() if path.exists() else ""
    return json.loads(text.splitlines()[-1]) if text else None


async def _soak(args: Any, dsn: str, urls: list[str], logs: Path) -> dict[str, Any]:
    nodes = [Node(name, url) for name, url in zip(NODES, urls, strict=True)]
    books = Books()
    starts = StartLog(logs / "starts.jsonl")
    conn = await asyncpg.connect(dsn)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            status = (await http.get(f"{urls[0]}/api/system/retention", headers=CP)).json()
            assert status["retention_days"] == 1, status
            autovacuum = await conn.fetchval("SHOW autovacuum")
            if args.vacuum_every is None:
                args.vacuum_every = AUTO_VACUUM_EVERY_S if autovacuum == "off" else 0.0
            if args.vacuum_every:
                print(
                    f"soak: autovacuum is {autovacuum} on this PostgreSQL: the soak runs VACUUM "
                    f"(ANALYZE) on its database every {args.vacuum_every:.0f} s"
                )
            with _children(logs) as start:
                began = time.monotonic()
                max_s = str(args.duration + DRAIN_TIMEOUT_S + 120)
                for name, url in zip(NODES, urls, strict=True):
                    worker = ("bench.soak_driver", "worker", url, QUEUE, max_s)
                    start(f"worker-{name}", _python_module(*worker))
                await _wait_workers(conn, len(nodes))
                print(f"soak: SDK workers polling after {time.monotonic() - began:.1f} s")
                load_args = (str(args.duration), str(args.rate), str(starts.path))
                urls_arg = ",".join(urls)
                load = start(
                    "load", _python_module("bench.soak_driver", "load", urls_arg, QUEUE, *load_args)
                )
                rows, drained_at = await _sample_until_drained(
                    args, load, nodes, http, conn, books, starts
                )
                await audit(conn, books, 0)  # the rest, not waiting for the window
                open_runs = await _open_runs(conn)
                stopping = time.monotonic()
            print(f"soak: SDK processes stopped in {time.monotonic() - stopping:.1f} s")
        starts.new_lines()
        return {
            "books": books.summary(starts.lines, open_runs),
            "load": _json_out(logs / "load.out"),
            "workers": {n: _json_out(logs / f"worker-{n}.out") for n in NODES},
            "drained_after_s": round(drained_at - args.duration, 1) if drained_at else None,
            "autovacuum": autovacuum,
            "vacuum_every_s": args.vacuum_every,
            "rows": rows,
        }
    finally:
        await conn.close()


async def _sample_until_drained(
    args: Any,
    load: subprocess.Popen[bytes],
    nodes: Sequence[Node],
    http: httpx.AsyncClient,
    conn: asyncpg.Connection,
    books: Books,
    starts: StartLog,
) -> tuple[list[dict[str, Any]], float | None]:
    """A sample (then an audit) at 0 s and every SAMPLE_EVERY_S after, through the load
    and the drain, until no run is open (checked every second once the load is over, with
    a last sample then) or DRAIN_TIMEOUT_S past the load; the rows and when the drain
    ended (None if it did not). Every ``args.vacuum_every`` seconds (0: never) a tick
    also vacuums the database, standing in for autovacuum where the server has it off."""
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    since = await conn.fetchval("SELECT now()")
    vacuumed_at = 0.0
    for tick in range(int((args.duration + DRAIN_TIMEOUT_S) / SAMPLE_EVERY_S) + 2):
        await _wait_for_tick(t0 + tick * SAMPLE_EVERY_S, load, conn)
        t = time.monotonic() - t0
        phase = "load" if load.poll() is None else "drain"
        window_s = t - rows[-1]["t_s"] if rows else SAMPLE_EVERY_S  # the last one is shorter
        row = await sample(t, phase, nodes, http, conn, since, starts.new_lines(), window_s)
        since = row.pop("db_now")
        row["shifted"] = await audit(conn, books, args.retention_after)
        row["vacuum_s"] = None
        if args.vacuum_every and t - vacuumed_at >= args.vacuum_every:
            began = time.monotonic()
            await conn.execute("VACUUM (ANALYZE)")
            row["vacuum_s"], vacuumed_at = round(time.monotonic() - began, 2), t
        rows.append(row)
        print(progress_line(row, args.duration), flush=True)
        if phase == "drain" and row["open_runs"] == 0:
            return rows, t
        if t > args.duration + DRAIN_TIMEOUT_S:
            break
    return rows, None


async def _wait_for_tick(due: float, load: subprocess.Popen[bytes], conn: Any) -> None:
    """Until ``due`` or, once the load is over, until no run is open (checked each second)."""
    while (left := due - time.monotonic()) > 0:
        if load.poll() is not None and not await _open_runs(conn):
            return
        await asyncio.sleep(min(left, 1.0))


async def _open_runs(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM workflow_runs WHERE closed_at IS NULL"))


async def _wait_workers(conn: asyncpg.Connection, count: int) -> None:
    """Until ``count`` workers poll the soak's queue (at most 60 s)."""
    for _ in range(600):
        n = await conn.fetchval(
            "SELECT count(*) FROM worker_registrations WHERE task_queue = $1", QUEUE
        )
        if n >= count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the soak's {count} SDK workers did not register within 60 s")


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def plot(path: Path, rows: Sequence[dict[str, Any]], title: str) -> Path | None:
    """One panel per metric over time; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    minutes = [r["t_s"] / 60 for r in rows]
    marker = "." if len(rows) <= 60 else None  # a point per sample, on short runs
    panels: list[tuple[str, dict[str, str]]] = [
        ("RSS (MB)", {n: f"{n}.rss_mb" for n in NODES}),
        ("open file descriptors", {n: f"{n}.fds" for n in NODES}),
        (
            "pool connections",
            {f"{n} {k}": f"{n}.pool_{k}" for n in NODES for k in ("open", "in_use")},
        ),
        ("Postgres size (MB)", {"all tables": "tables_mb", "database": "db_mb"}),
        ("tuples", {"live": "live_rows", "dead": "dead_rows"}),
        (
            "table size (MB)",
            {t: f"table.{t}.mb" for t in ("workflow_runs", "history_events", "workflow_tasks")},
        ),
        ("workflows per second", {"started": "started_per_s", "closed (all runs)": "closed_per_s"}),
        (
            "p99 latency (ms)",
            {"greeter start->close": "greeter_p99_ms", "start request": "start_p99_ms"},
        ),
    ]
    fig, axes = plt.subplots(4, 2, figsize=(12, 13), sharex=True)
    for ax, (label, series) in zip(axes.flat, panels, strict=True):
        for name, key in series.items():
            ax.plot(minutes, [r.get(key) for r in rows], label=name, marker=marker, markersize=3)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("minutes since the load started")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def run(args: Any) -> dict[str, Any]:
    if not args.dsn:
        raise SystemExit("soak needs --dsn (or DWTRIO_BENCH_DSN): two nodes share one database")
    # Ctrl-C and SIGTERM end a soak the same way: every process it started is stopped and
    # its database dropped (a job started in the background has SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    out = Path(args.out) if args.out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    env = {
        "DW_HISTORY_RETENTION_DAYS": "1",
        "DW_RETENTION_INTERVAL_SECONDS": "10",
        "DW_DB_POOL_MAX_SIZE": "10",
        "DW_GRACEFUL_TIMEOUT_SECONDS": "3",
        "DW_WAKE_BUS": "redis" if args.redis_url else "postgres",
    }
    if args.redis_url:
        env["DW_REDIS_URL"] = args.redis_url
    print(
        f"soak: {args.duration:.0f} s at {args.rate}/s on 2 nodes ({env['DW_WAKE_BUS']} wakes), "
        f"runs shifted past retention {args.retention_after:.0f} s after they close"
    )
    with (
        tempfile.TemporaryDirectory(prefix="dwtrio-soak-") as tmp,
        bench_database(args.dsn) as dsn,
        contextlib.ExitStack() as stack,
    ):
        assert dsn is not None
        began = time.monotonic()
        urls = [
            stack.enter_context(dwtrio_server(dsn=dsn, extra_env={**env, "DW_SERVER_ID": n}))
            for n in NODES
        ]
        print(f"soak: 2 nodes ready after {time.monotonic() - began:.1f} s")
        try:
            measured = asyncio.run(_soak(args, dsn, urls, Path(tmp)))
        except BaseException:
            for log in sorted(Path(tmp).glob("*.err")):
                print(f"--- {log.name} ---\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
    rows = measured.pop("rows")
    books = measured["books"]
    runs_closed = books["runs_checked"]
    figures = verdicts(rows, args.duration)
    load_rows = [r for r in rows if r["phase"] == "load"]
    half = [r for r in load_rows if r["t_s"] >= args.duration / 2]
    result = {
        "benchmark": "soak",
        "machine": machine(),
        "written_at": stamp,
        "duration_s": args.duration,
        "rate_per_s": args.rate,
        "retention_after_s": args.retention_after,
        "sample_every_s": SAMPLE_EVERY_S,
        "wake_bus": env["DW_WAKE_BUS"],
        **measured,
        "pruned_by_retention": sum(rows[-1][f"{n}.pruned"] for n in NODES),
        "throughput": {
            "first_half_closed_per_s": _mean(
                r["closed_per_s"] for r in load_rows if r["t_s"] < args.duration / 2
            ),
            "last_half_closed_per_s": _mean(r["closed_per_s"] for r in half),
            "first_half_greeter_p99_ms": _mean(
                r["greeter_p99_ms"] for r in load_rows if r["t_s"] < args.duration / 2
            ),
            "last_half_greeter_p99_ms": _mean(r["greeter_p99_ms"] for r in half),
        },
        "unpruned_projection": unpruned_projection(rows, runs_closed),
        "verdicts": figures,
        "samples": len(rows),
    }
    base = out / f"soak-{stamp}"
    write_csv(base.with_suffix(".csv"), rows)
    png = plot(
        base.with_suffix(".png"),
        rows,
        f"dwtrio soak: {args.rate}/s for {args.duration:.0f} s, 2 nodes",
    )
    result["files"] = {"csv": str(base.with_suffix(".csv")), "png": str(png) if png else None}
    base.with_suffix(".json").write_text(
        json.dumps({**result, "rows": rows}, indent=2, default=str)
    )
    result["files"]["json"] = str(base.with_suffix(".json"))
    _report(result)
    return result


def _mean(values: Any) -> float | None:
    present = [v for v in values if v is not None]  # None: a window without such samples
    return round(statistics.fmean(present), 2) if present else None


def _report(result: dict[str, Any]) -> None:
    b = result["books"]
    print(
        f"\nworkload: {b['started']} starts ({b['acknowledged']} acknowledged), "
        f"{b['runs_checked']} runs checked {b['runs_by_type']}, "
        f"{result['pruned_by_retention']} pruned by retention; drained "
        f"{result['drained_after_s']} s after the load"
    )
    print(
        f"books: lost {b['lost']}, duplicated {b['duplicated']}, wrong results "
        f"{b['wrong_results']}, not completed {b['not_completed']}, history gaps "
        f"{b['history_gaps']}, redelivered attempts {b['redelivered_attempts']}, open at end "
        f"{b['open_at_end']}, start errors {b['start_errors']}"
    )
    if result["vacuum_every_s"]:
        print(f"autovacuum {result['autovacuum']}: vacuumed every {result['vacuum_every_s']} s")
    print(f"throughput and latency: {result['throughput']}")
    if result["unpruned_projection"]:
        print(f"without retention: {result['unpruned_projection']}")
    rows = [{"series": k, **v} for k, v in result["verdicts"].items()]
    columns = ["first_half_per_h", "last_half_per_h", "last_half_added", "end", "max", "why"]
    print(table(rows, ["series", *columns]))
    print(f"files: {result['files']}")
