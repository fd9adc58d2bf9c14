"""dispatch-throughput: activity poll -> complete cycles per second.

C concurrent worker loops (spread over load-generator processes) poll an
activity task and complete it for a fixed window, in two modes:

- ``backlog``: against activity tasks bulk-loaded into Postgres beforehand;
- ``live``: against live production. A producer process keeps starting
  workflows through ``POST /api/workflows`` and answers their workflow tasks
  (first ``schedule_activity``, then ``complete_workflow``), so the activities
  the loops consume are created, and wake parked polls, while they run. The
  producer keeps a bounded number of workflows in flight, so the queue stays
  fed without growing without limit.

Reported per mode, server process count and concurrency: cycles/s and server
CPU per cycle (user+system of the server processes over the window; in live
mode that includes the starts and workflow tasks behind each activity), each the
median of ``--runs`` windows. Beside it, whether the rest fits on the host: the
CPU of the load generators and of the local Postgres processes serving the
bench (the backends of its database, and the shared checkpointer, writers and
autovacuum) over the same window, in cores used and in ms per cycle.

``--floor`` runs the backlog mode against ``bench.floor`` too (the same HTTP
stack answering the poll from an endless in-memory backlog and the completion
at once): the CPU any server on this stack pays for the same two requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench.backlog import load_activity_backlog
from bench.harness import (
    CP,
    WP,
    RawClient,
    bench_database,
    dwtrio_server,
    floor_server,
    median_of_runs,
    plot_lines,
    progress,
    server_processes,
    table,
    write_result,
)

RESULT = {"codec": "avro", "blob": "wwHioz3/VYAiNwA="}
ARGS = {"codec": "avro", "blob": "wwHioz3/VYAiNwwCCgp3b3JsZAA="}  # ["world"]
POLL_S = 5  # long-poll timeout of every loop; polls still parked at the window's end are cut
BACKLOG_RATE_CAP = 600  # cycles/s the backlog is sized for (well above what one host does)


async def _until(until: float, *loops: Any) -> None:
    """Run the loops; cut whatever is still in flight (a parked poll) a second after ``until``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*loops), timeout=until + 1 - time.monotonic())


async def _loops(url: str, queue: str, count: int, begin: float, until: float, out: Any) -> None:
    """``count`` activity loops; cycles and empty polls are counted inside [begin, until)."""
    done = empty = 0

    async def loop() -> None:
        nonlocal done, empty
        worker = f"tp-{uuid.uuid4().hex[:8]}"
        client = RawClient(url, WP)
        try:
            while time.monotonic() < until:
                _, answer = await client.post(
                    "/api/worker/activity-tasks/poll",
                    {"worker_id": worker, "task_queue": queue, "timeout_seconds": POLL_S},
                )
                task = answer.get("task")
                if not task:
                    empty += begin <= time.monotonic() < until
                    continue
                status, answer = await client.post(
                    f"/api/worker/activity-tasks/{task['task_id']}/complete",
                    {
                        "activity_attempt_id": task["activity_attempt_id"],
                        "lease_owner": worker,
                        "result": RESULT,
                    },
                )
                assert status == 200, answer
                done += begin <= time.monotonic() < until
        finally:
            client.close()

    await _until(until, *(loop() for _ in range(count)))
    out.put(("cycles", done, empty))


def _loop_process(url: str, queue: str, count: int, begin: float, until: float, out: Any) -> None:
    asyncio.run(_loops(url, queue, count, begin, until, out))


async def _produce(
    url: str,
    queue: str,
    starters: int,
    deciders: int,
    in_flight: int,
    begin: float,
    until: float,
    out: Any,
) -> None:
    """Start workflows and answer their workflow tasks, at most ``in_flight`` open at a time."""
    slots = asyncio.Semaphore(in_flight)
    started = completed = 0

    async def start_loop() -> None:
        nonlocal started
        client = RawClient(url, CP)
        try:
            while time.monotonic() < until:
                try:
                    await asyncio.wait_for(
                        slots.acquire(), timeout=max(0.01, until - time.monotonic())
                    )
                except TimeoutError:
                    return
                status, answer = await client.post(
                    "/api/workflows",
                    {
                        "workflow_id": f"live-{uuid.uuid4().hex}",
                        "workflow_type": "bench",
                        "task_queue": queue,
                        "input": ["world"],
                    },
                )
                assert status == 201, answer
                started += begin <= time.monotonic() < until
        finally:
            client.close()

    async def decide_loop() -> None:
        nonlocal completed
        worker = f"wf-{uuid.uuid4().hex[:8]}"
        client = RawClient(url, WP)
        try:
            while time.monotonic() < until:
                _, answer = await client.post(
                    "/api/worker/workflow-tasks/poll",
                    {"worker_id": worker, "task_queue": queue, "timeout_seconds": POLL_S},
                )
                task = answer.get("task")
                if not task:
                    continue
                events = {e["event_type"] for e in task["history_events"]}
                finished = "ActivityCompleted" in events
                command = (
                    {"type": "complete_workflow", "result": RESULT}
                    if finished
                    else {
                        "type": "schedule_activity",
                        "activity_type": "bench",
                        "queue": queue,
                        "arguments": ARGS,
                    }
                )
                status, answer = await client.post(
                    f"/api/worker/workflow-tasks/{task['task_id']}/complete",
                    {
                        "lease_owner": worker,
                        "workflow_task_attempt": task["workflow_task_attempt"],
                        "commands": [command],
                    },
                )
                assert status == 200, answer
                if finished:
                    slots.release()
                    completed += begin <= time.monotonic() < until
        finally:
            client.close()

    await _until(
        until,
        *(start_loop() for _ in range(starters)),
        *(decide_loop() for _ in range(deciders)),
    )
    out.put(("producer", started, completed))


def _producer_process(*args: Any) -> None:
    asyncio.run(_produce(*args))


#: A client backend's title names its peer: ``postgres: 15/main: user db 127.0.0.1(5432) idle``.
_BACKEND = re.compile(r"\(\d+\)|\[local\]")


def postgres_processes(database: str) -> list[Any]:
    """Local Postgres processes working for ``database``: its backends, and the processes
    every database shares (postmaster, checkpointer, writers, autovacuum); other
    databases' backends are left out."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info.get("name") != "postgres":
            continue
        title = " ".join(proc.info.get("cmdline") or [])
        if not _BACKEND.search(title) or f" {database} " in title:
            found.append(proc)
    return found


def _cpu(procs: list[Any]) -> dict[Any, float]:
    """User+system CPU seconds so far of each process still running."""
    used = {}
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            used[proc] = sum(proc.cpu_times()[:2])
    return used


def _cpu_since(before: dict[Any, float]) -> float:
    """CPU seconds used since ``before`` by its processes (one that ended counts nothing)."""
    return sum(_cpu(list(before)).get(proc, used) - used for proc, used in before.items())


def measure(
    url: str,
    queue: str,
    concurrency: int,
    *,
    seconds: float,
    warmup: float,
    procs: int,
    live: bool,
    label: str,
    database: str | None = None,
) -> dict[str, Any]:
    """One measurement window: cycles/s and server CPU per cycle, and the CPU of the
    load generators and of the Postgres processes of ``database`` (if any) beside it."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    begin = time.monotonic() + warmup
    until = begin + seconds
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    workers = [
        ctx.Process(target=_loop_process, args=(url, queue, n, begin, until, out))
        for n in shares
        if n
    ]
    if live:
        # Enough open workflows to keep every loop busy, and the deciders able to keep up.
        in_flight, deciders = 2 * concurrency + 16, max(8, concurrency // 4)
        workers.append(
            ctx.Process(
                target=_producer_process,
                args=(url, queue, 4, deciders, in_flight, begin, until, out),
            )
        )
    server = server_processes(url)
    for w in workers:
        w.start()
    load = [psutil.Process(w.pid) for w in workers]
    time.sleep(max(0.0, begin - time.monotonic()))
    postgres = postgres_processes(database) if database else []
    before = {"server": _cpu(server), "loadgen": _cpu(load), "postgres": _cpu(postgres)}
    t0 = time.monotonic()
    bar = progress(int(seconds), label, "s")
    while time.monotonic() < until:
        time.sleep(min(1.0, max(0.0, until - time.monotonic())))
        bar.update(1)
    bar.close()
    used = {kind: _cpu_since(procs) for kind, procs in before.items()}
    cpu, elapsed = used["server"], time.monotonic() - t0
    cycles = empty = started = completed = 0
    for _ in workers:
        kind, a, b = out.get(timeout=60)
        if kind == "cycles":
            cycles, empty = cycles + a, empty + b
        else:
            started, completed = a, b
    for w in workers:
        w.join(10)
    row: dict[str, Any] = {
        "cycles": cycles,
        "cycles_per_s": round(cycles / elapsed, 1),
        "server_cpu_ms_per_cycle": round(cpu / max(cycles, 1) * 1000, 2),
        "loadgen_cpu_ms_per_cycle": round(used["loadgen"] / max(cycles, 1) * 1000, 2),
        "postgres_cpu_ms_per_cycle": round(used["postgres"] / max(cycles, 1) * 1000, 2),
        "server_cores": round(cpu / elapsed, 2),
        "loadgen_cores": round(used["loadgen"] / elapsed, 2),
        "postgres_cores": round(used["postgres"] / elapsed, 2),
        "empty_polls": empty,
    }
    if live:
        row["starts_per_s"] = round(started / elapsed, 1)
        row["workflows_completed_per_s"] = round(completed / elapsed, 1)
    return row


#: Figures of each window whose median over the runs a row reports.
KEYS = [
    "cycles_per_s",
    "server_cpu_ms_per_cycle",
    "loadgen_cpu_ms_per_cycle",
    "postgres_cpu_ms_per_cycle",
    "server_cores",
    "loadgen_cores",
    "postgres_cores",
]


def _point(
    args: Any,
    url: str,
    queue: str,
    *,
    server: str,
    mode: str,
    server_workers: int,
    concurrency: int,
    database: str | None,
) -> dict[str, Any]:
    """``--runs`` windows at one concurrency; their medians and the windows themselves."""
    runs = [
        measure(
            url,
            queue,
            concurrency,
            seconds=args.seconds,
            warmup=args.warmup,
            procs=args.load_processes,
            live=mode == "live",
            label=f"{server} {mode} {server_workers}p c={concurrency} run {i + 1}/{args.runs}",
            database=database,
        )
        for i in range(args.runs)
    ]
    keys = KEYS + (["starts_per_s", "workflows_completed_per_s"] if mode == "live" else [])
    row = {
        "server": server,
        "mode": mode,
        "server_processes": server_workers,
        "concurrency": concurrency,
        **median_of_runs(runs, keys),
        "runs": runs,
    }
    if mode == "backlog" and any(r["empty_polls"] for r in runs):
        print("  warning: the backlog ran dry during a window")
    print(
        f"  {server}, {mode}, {server_workers} server processes, {concurrency} loops: "
        f"{row['cycles_per_s']} cycles/s (median of {args.runs})"
    )
    return row


def run(args: Any) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for server_workers in args.server_processes:
        if server_workers > 1 and not args.redis_url:
            print(f"  note: {server_workers} server processes without --redis-url (no wake bus)")
        with bench_database(args.dsn) as dsn:
            if dsn is None:
                raise SystemExit("dispatch-throughput needs --dsn (it bulk-loads the backlog)")
            database = urlsplit(dsn).path.lstrip("/")
            with dwtrio_server(dsn=dsn, workers=server_workers, redis_url=args.redis_url) as url:
                for mode in args.modes:
                    queue = f"tp-{mode}-{uuid.uuid4().hex[:6]}"
                    if mode == "backlog":
                        windows = args.runs * len(args.concurrency)
                        needed = int(windows * (args.seconds + args.warmup) * BACKLOG_RATE_CAP)
                        # After the server bootstrapped the schema.
                        load_activity_backlog(dsn, queue, needed + 1_000)
                    for c in args.concurrency:
                        rows.append(
                            _point(
                                args,
                                url,
                                queue,
                                server="dwtrio",
                                mode=mode,
                                server_workers=server_workers,
                                concurrency=c,
                                database=database,
                            )
                        )
    if args.floor and "backlog" in args.modes:
        with floor_server() as url:
            for c in args.concurrency:
                rows.append(
                    _point(
                        args,
                        url,
                        "tp-floor",
                        server="floor",
                        mode="backlog",
                        server_workers=1,
                        concurrency=c,
                        database=None,
                    )
                )
    columns = ["server", "mode", "server_processes", "concurrency", "cycles_per_s"]
    columns += ["server_cpu_ms_per_cycle", "starts_per_s"]
    print(table(rows, columns))
    print("CPU beside the server over the windows (cores used; ms per cycle):")
    columns = ["server", "mode", "server_processes", "concurrency", "server_cores"]
    columns += ["loadgen_cores", "postgres_cores", "loadgen_cpu_ms_per_cycle"]
    print(table(rows, [*columns, "postgres_cpu_ms_per_cycle"]))
    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        label = f"{r['server']}, {r['mode']}, {r['server_processes']} server process(es)"
        series.setdefault(label, []).append((r["concurrency"], r["cycles_per_s"]))
    plot = plot_lines(
        "dispatch-throughput", series, "concurrent worker loops", "activity cycles/s (median)"
    )
    path = write_result(
        "dispatch-throughput",
        {
            "summary": rows,
            "modes": args.modes,
            "runs_per_point": args.runs,
            "seconds_per_run": args.seconds,
            "plot": str(plot),
        },
    )
    print(f"results: {path}" + (f"\nplot: {plot}" if plot else ""))
    return {"summary": rows}
