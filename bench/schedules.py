"""schedules: how late the scheduler fires, with many active schedules, on one node and on two.

Reproduce (a quiet machine; the DSN is an admin DSN, a fresh database is
created and dropped for every run)::

    python -m bench --dsn postgresql://postgres@127.0.0.1:5432/postgres schedules \\
        --schedules 1000 --seconds 30 --nodes 1 2 --modes spread herd --runs 3

A short smoke run: ``... schedules --schedules 200 --seconds 10 --runs 1``.

Every run gets a fresh database and ``--nodes`` separate ``dwtrio serve``
processes on it (each with its own port and its own scheduler loop, as
separate hosts would run them). The bench creates ``--schedules`` schedules
through ``POST /api/schedules`` (``overlap_policy: allow_all``, so every
occurrence starts a workflow; no worker runs them), then measures:

- ``spread``: every schedule fires every ``--every`` seconds (default PT10S),
  each with its own offset ``i * every / N`` (whole seconds, so N / every
  schedules share each second). After ``--warmup`` seconds the window of
  ``--seconds`` opens; every occurrence inside it is expected to fire once.
- ``herd``: every schedule fires at the same second D (``every: PT1H`` with the
  same offset, D a lead time after the creates began; nothing is due before).
  The herd's drain time is the lag of its last fire.

Fire lag is each ``ScheduleTriggered`` event's ``fire_lag_ms`` from the
schedule history (``GET /api/schedules/{id}/history``): from the due time
(jitter included; there is none here) to the firing transaction, on the
database clock. Also reported:

- ``fires_per_s``: spread, the fires recorded in the window per second; herd,
  the herd's size over its drain time;
- ``double_fires``: occurrences (schedule, ``occurrence_time``) fired more
  than once, over the whole history; must be 0;
- ``missed``: occurrences inside the window that never fired, and
  ``recorded_missed``: the count the server recorded as ``ScheduleFiresMissed``
  (older than ``DW_SCHEDULE_CATCHUP_WINDOW_SECONDS`` when their turn came);
- ``server_cpu_ms_per_fire``: user+system CPU of the server processes (psutil,
  /proc) over the window, per fire recorded in it;
- ``db_ms_per_fire`` and ``db_time_source``: the database's time per fire, from
  ``pg_stat_statements`` (total execution time of the statements run in the
  bench database) when the server preloads it, else the CPU of the Postgres
  backends connected to the bench database (psutil, /proc; needs Postgres on
  this host), else none.

Spread windows are ``[t0, t0 + seconds)``; the herd's is from just before D
until its last schedule has moved past D. Whether the scheduler has moved past
the window is read from the ``schedules`` table (one cheap query per poll,
marked so the DB meter leaves it out), not through HTTP, to keep the probe
off the servers being measured. Figures are the median over ``--runs`` runs;
double and missed fires are summed over the runs. A run is bounded: the
creates, ``--warmup`` + ``--seconds`` (spread) or the herd's lead, at most
``--drain-timeout`` more for the scheduler to catch up, then the history reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import httpx

from bench.harness import (
    CP,
    bench_database,
    dwtrio_server,
    median_of_runs,
    percentiles,
    plot_cdf,
    progress,
    server_processes,
    table,
    write_result,
)

#: Requests in flight while creating schedules and reading their histories.
CLIENT_CONCURRENCY = 16
#: The herd's period: nothing fires a second time within a run.
HERD_EVERY_S = 3600
#: A marker in the bench's own SQL, so the pg_stat_statements meter leaves it out.
MARK = "/* dwtrio-bench */"
PAGE = 500

NUMERIC = [
    "fires",
    "fires_per_s",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "herd_drain_ms",
    "server_cpu_ms_per_fire",
    "db_ms_per_fire",
]


# --- the database side: probes and the DB time meter -----------------------------------------
class DbMeter:
    """Database time spent in the bench database over a window.

    ``pg_stat_statements`` when it is loaded (``shared_preload_libraries``),
    else the CPU of the Postgres backends serving the bench database read from
    /proc, else nothing (``source`` says which).
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.source = "none"
        self._start = 0.0
        self._backends: dict[int, float] = {}

    async def setup(self) -> None:
        preload = await self.conn.fetchval(f"{MARK} SHOW shared_preload_libraries")
        if "pg_stat_statements" in (preload or ""):
            with contextlib.suppress(Exception):
                await self.conn.execute(f"{MARK} CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                await self._statements_ms()
                self.source = "pg_stat_statements (total_exec_time)"
                return
        if await self._backend_cpu():
            self.source = "postgres backend CPU (/proc)"

    async def _statements_ms(self) -> float:
        value = await self.conn.fetchval(
            f"""{MARK} SELECT coalesce(sum(total_exec_time), 0) FROM pg_stat_statements
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND query NOT LIKE '%dwtrio-bench%'"""
        )
        return float(value)

    async def _backend_cpu(self) -> dict[int, float]:
        import psutil

        pids = await self.conn.fetch(
            f"""{MARK} SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()"""
        )
        out: dict[int, float] = {}
        for (pid,) in pids:
            try:
                out[pid] = sum(psutil.Process(pid).cpu_times()[:2])
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                continue
        return out

    async def start(self) -> None:
        if self.source.startswith("pg_stat_statements"):
            self._start = await self._statements_ms()
        elif self.source != "none":
            self._backends = await self._backend_cpu()

    async def stop(self) -> float | None:
        """Milliseconds of database time since :meth:`start`, or None without a source."""
        if self.source.startswith("pg_stat_statements"):
            return await self._statements_ms() - self._start
        if self.source == "none":
            return None
        now = await self._backend_cpu()
        # A backend that appeared meanwhile counts whole; one that left is lost (pools keep theirs).
        return sum(cpu - self._backends.get(pid, 0.0) for pid, cpu in now.items()) * 1000


async def _behind(conn: Any, prefix: str, before: float) -> int:
    """Active schedules of this run whose next fire is still before ``before`` (epoch s)."""
    value = await conn.fetchval(
        f"""{MARK} SELECT count(*) FROM schedules
             WHERE schedule_id LIKE $1 AND status = 'active'
               AND next_fire_at < to_timestamp($2)""",
        f"{prefix}-%",
        before,
    )
    return int(value)


async def _drain(conn: Any, prefix: str, before: float, timeout_s: float, every_s: float) -> bool:
    """Wait until no schedule of this run is due before ``before``; False on timeout."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if await _behind(conn, prefix, before) == 0:
            return True
        await asyncio.sleep(every_s)
    return False


# --- the HTTP side ----------------------------------------------------------------------------
async def _each(count: int, work: Any, desc: str, unit: str) -> list[Any]:
    """Run ``work(i)`` for i in range(count), CLIENT_CONCURRENCY at a time, in order."""
    results: list[Any] = [None] * count
    queue = iter(range(count))
    bar = progress(count, desc, unit)

    async def worker() -> None:
        for i in queue:
            results[i] = await work(i)
            bar.update(1)

    await asyncio.gather(*(worker() for _ in range(CLIENT_CONCURRENCY)))
    bar.close()
    return results


async def _create(
    clients: list[httpx.AsyncClient], prefix: str, specs: list[dict[str, Any]]
) -> None:
    queue = f"{prefix}-q"

    async def one(i: int) -> None:
        body = {
            "schedule_id": f"{prefix}-{i:06d}",
            "spec": specs[i],
            "action": {"workflow_type": "bench-scheduled", "task_queue": queue},
            "overlap_policy": "allow_all",
        }
        r = await clients[i % len(clients)].post("/api/schedules", json=body)
        assert r.status_code == 201, r.text

    await _each(len(specs), one, "creating schedules", "schedule")


async def _histories(
    clients: list[httpx.AsyncClient], prefix: str, count: int
) -> list[list[dict[str, Any]]]:
    async def one(i: int) -> list[dict[str, Any]]:
        client, events, after = clients[i % len(clients)], [], 0
        while True:
            r = await client.get(
                f"/api/schedules/{prefix}-{i:06d}/history",
                params={"limit": PAGE, "after_sequence": after},
            )
            assert r.status_code == 200, r.text
            page = r.json()
            events += page["events"]
            if not page["has_more"]:
                return events
            after = page["next_cursor"]

    return await _each(count, one, "reading histories", "schedule")


# --- one run ----------------------------------------------------------------------------------
def _instant(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _expected(spec: dict[str, Any], t0: float, t1: float) -> set[float]:
    """The spec's (one interval's) occurrences in [t0, t1), as epoch seconds."""
    interval = spec["intervals"][0]
    every = int(interval["every"][2:-1])
    offset = int(interval["offset"][2:-1])
    first = offset + math.ceil((t0 - offset) / every) * every
    return {float(t) for t in range(int(first), math.ceil(t1), every) if t < t1}


def _cpu(procs: list[Any]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(Exception):
            total += sum(p.cpu_times()[:2])
    return total


async def _sleep_until(when: float, label: str | None = None) -> None:
    """Sleep to the epoch second ``when``; with a label, a progress bar in seconds."""
    if label is None:
        await asyncio.sleep(max(0.0, when - time.time()))
        return
    bar = progress(max(1, round(when - time.time())), label, "s")
    while (left := when - time.time()) > 0:
        await asyncio.sleep(min(1.0, left))
        bar.update(1)
    bar.close()


async def one_run(urls: list[str], dsn: str, mode: str, args: Any) -> dict[str, Any]:
    """Create the schedules on the servers at ``urls``, measure one window, read the histories."""
    import asyncpg

    n = args.schedules
    prefix = f"{mode}-{uuid.uuid4().hex[:6]}"
    procs = [p for url in urls for p in server_processes(url)]
    conn = await asyncpg.connect(dsn)
    clients = [httpx.AsyncClient(base_url=u, headers=CP, timeout=120) for u in urls]
    try:
        meter = DbMeter(conn)
        await meter.setup()
        created_from = time.time()
        if mode == "spread":
            every = args.every
            specs = [
                {"intervals": [{"every": f"PT{every}S", "offset": f"PT{i * every // n}S"}]}
                for i in range(n)
            ]
        else:
            lead = args.herd_lead if args.herd_lead else 10 + n / 50
            due = math.ceil(created_from + lead)
            specs = [
                {
                    "intervals": [
                        {"every": f"PT{HERD_EVERY_S}S", "offset": f"PT{due % HERD_EVERY_S}S"}
                    ]
                }
            ] * n
        await _create(clients, prefix, specs)
        created_s = time.time() - created_from
        print(f"    created {n} schedules in {created_s:.1f} s ({n / created_s:.0f}/s)")
        if mode == "spread":
            t0 = math.ceil(time.time()) + args.warmup
            t1 = t0 + args.seconds
            await _sleep_until(t0)
        else:
            if time.time() > due - 1:
                raise SystemExit(
                    f"the creates took {created_s:.1f} s and reached the herd's due second; "
                    "give a longer --herd-lead"
                )
            t0, t1 = due - 0.5, due + 1.0
            await _sleep_until(t0)
        cpu0 = _cpu(procs)
        await meter.start()
        if mode == "spread":
            await _sleep_until(t1, f"spread window, {len(urls)} node(s)")
            cpu, db_ms = _cpu(procs) - cpu0, await meter.stop()
        # Until every schedule has moved past the window (fired or recorded as missed).
        drained = await _drain(
            conn, prefix, t1, args.drain_timeout, 0.05 if mode == "herd" else 0.25
        )
        if mode == "herd":
            cpu, db_ms = _cpu(procs) - cpu0, await meter.stop()
        window_end = t1 if mode == "spread" else time.time()
        if not drained:
            print(
                f"    warning: not every schedule moved past the window in {args.drain_timeout} s"
            )
        histories = await _histories(clients, prefix, n)
    finally:
        for c in clients:
            await c.aclose()
        await conn.close()

    lags: list[float] = []
    fires_in_window = double = missed = recorded_missed = 0
    for spec, events in zip(specs, histories, strict=True):
        fired = [
            e
            for e in events
            if e["event_type"] == "ScheduleTriggered" and e["payload"].get("outcome") == "scheduled"
        ]
        occurrences = Counter(_instant(e["payload"]["occurrence_time"]) for e in fired)
        double += sum(c - 1 for c in occurrences.values() if c > 1)
        expected = _expected(spec, t0, t1)
        missed += len(expected - set(occurrences))
        for e in fired:
            if _instant(e["payload"]["occurrence_time"]) in expected:
                lags.append(float(e["payload"]["fire_lag_ms"]))
            if t0 <= _instant(e["recorded_at"]) <= window_end:
                fires_in_window += 1
        recorded_missed += sum(
            e["payload"]["missed_count"] for e in events if e["event_type"] == "ScheduleFiresMissed"
        )
    stats = percentiles(lags)
    window_s = window_end - t0
    row: dict[str, Any] = {
        "fires": len(lags),
        # spread: fires recorded in the window per second; herd: the herd over its drain time
        "fires_per_s": round(
            fires_in_window / window_s
            if mode == "spread"
            else len(lags) / max(stats.get("max", 0.0) / 1000, 1e-3),
            1,
        ),
        "p50_ms": round(stats.get("p50", 0.0), 1),
        "p99_ms": round(stats.get("p99", 0.0), 1),
        "max_ms": round(stats.get("max", 0.0), 1),
        "herd_drain_ms": round(stats.get("max", 0.0), 1) if mode == "herd" else 0.0,
        "server_cpu_ms_per_fire": round(cpu / max(fires_in_window, 1) * 1000, 2),
        "db_ms_per_fire": round(db_ms / max(fires_in_window, 1), 2) if db_ms is not None else 0.0,
        "db_time_source": meter.source,
        "double_fires": double,
        "missed": missed,
        "recorded_missed": recorded_missed,
        "drained": drained,
        "created_per_s": round(n / created_s, 1),
        "window_s": round(window_s, 2),
        "lags_ms": lags,
    }
    return row


# --- the command ------------------------------------------------------------------------------
def _measure(nodes: int, mode: str, args: Any) -> dict[str, Any]:
    extra = {}
    if args.scheduler_concurrency:
        extra["DW_SCHEDULER_CONCURRENCY"] = str(args.scheduler_concurrency)
    if args.redis_url:
        extra["DW_REDIS_URL"] = args.redis_url
    with bench_database(args.dsn) as dsn, contextlib.ExitStack() as servers:
        assert dsn is not None
        urls = [
            servers.enter_context(
                dwtrio_server(
                    dsn=dsn,
                    workers=args.server_workers,
                    redis_url=args.redis_url,
                    extra_env=extra,
                )
            )
            for _ in range(nodes)
        ]
        return asyncio.run(one_run(urls, dsn, mode, args))


def run(args: Any) -> dict[str, Any]:
    if not args.dsn:
        raise SystemExit("schedules needs --dsn (or DWTRIO_BENCH_DSN): nodes share one database")
    rows: list[dict[str, Any]] = []
    series: dict[str, list[float]] = {}
    raw: dict[str, Any] = {}
    for mode in args.modes:
        for nodes in args.nodes:
            runs = []
            for i in range(args.runs):
                print(
                    f"  {mode}, {nodes} node(s), {args.schedules} schedules, run {i + 1}/{args.runs}"
                )
                r = _measure(nodes, mode, args)
                print(
                    f"    {r['fires']} fires: lag p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                    f"max {r['max_ms']} ms; double {r['double_fires']}, missed {r['missed']}"
                )
                runs.append(r)
            row = {
                "mode": mode,
                "nodes": nodes,
                "schedules": args.schedules,
                **median_of_runs(runs, NUMERIC),
                "double_fires": sum(r["double_fires"] for r in runs),
                "missed": sum(r["missed"] for r in runs),
                "recorded_missed": sum(r["recorded_missed"] for r in runs),
                "db_time_source": runs[0]["db_time_source"],
            }
            rows.append(row)
            # log-scale CDF: a lag of exactly 0 is drawn at 0.01 ms
            series[f"{mode}, {nodes} node(s)"] = [max(v, 0.01) for r in runs for v in r["lags_ms"]]
            raw[f"{mode} {nodes}"] = runs
    print(f"median over {args.runs} run(s); double and missed fires summed over the runs:")
    columns = ["mode", "nodes", "schedules", "fires", "fires_per_s", "p50_ms", "p99_ms", "max_ms"]
    columns += ["herd_drain_ms", "server_cpu_ms_per_fire", "db_ms_per_fire"]
    columns += ["double_fires", "missed", "recorded_missed"]
    print(table(rows, columns))
    print(f"db_ms_per_fire from: {rows[0]['db_time_source'] if rows else 'none'}")
    plot = plot_cdf("schedules", series, "fire lag (ms): due time -> firing transaction")
    path = write_result(
        "schedules",
        {
            "unit": "ms",
            "schedules": args.schedules,
            "every_s": args.every,
            "seconds_per_window": args.seconds,
            "runs_per_point": args.runs,
            "scheduler_concurrency": args.scheduler_concurrency,
            "summary": rows,
            "runs": raw,
            "plot": str(plot),
        },
    )
    print(f"results: {path}" + (f"\nplot: {plot}" if plot else ""))
    if any(r["double_fires"] for r in rows):
        raise SystemExit("an occurrence fired more than once")
    return {"summary": rows}
