"""open-polls: hold many idle long-polls on one node; memory per poll, latency meanwhile.

Load-generator processes open N workflow-task polls (timeout 60 s) on an empty
queue. Reported: the server's RSS growth per open poll, and p99 of other
requests (``GET /api/health``, ``POST /api/workflows``) before and while they
are parked: the median over ``--runs`` probe windows of each window's p99 (the
polls themselves are opened once; holding them again would only repeat the
setup). ``--floor`` repeats it against ``bench.floor``, the same HTTP stack
with no server behind it: the memory any application on it pays per poll.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import uuid
from typing import Any

import httpx

from bench.harness import (
    CP,
    WP,
    bench_database,
    dwtrio_server,
    floor_server,
    median_of_runs,
    percentiles,
    plot_cdf,
    progress,
    server_processes,
    table,
    write_result,
)

POLL_S = 60  # the longest poll the server holds (it caps a requested timeout at 60 s)


async def _hold(url: str, queue: str, count: int, hold_s: float, ready: Any) -> None:
    """``count`` workers each keep one poll open (re-polling as each ends) for ``hold_s``."""
    limits = httpx.Limits(max_connections=count + 8, max_keepalive_connections=count + 8)
    end = time.monotonic() + hold_s
    async with httpx.AsyncClient(
        base_url=url, headers=WP, timeout=POLL_S + 30, limits=limits
    ) as client:

        async def one(i: int) -> None:
            while time.monotonic() < end:
                try:
                    await client.post(
                        "/api/worker/workflow-tasks/poll",
                        json={
                            "worker_id": f"idle-{i}",
                            "task_queue": queue,
                            "timeout_seconds": POLL_S,
                        },
                    )
                except httpx.HTTPError:
                    return

        tasks = [asyncio.create_task(one(i)) for i in range(count)]
        await asyncio.sleep(1)
        ready.put(count)
        await asyncio.gather(*tasks)


def _hold_process(url: str, queue: str, count: int, hold_s: float, ready: Any) -> None:
    asyncio.run(_hold(url, queue, count, hold_s, ready))


def _rss(url: str) -> int:
    return sum(p.memory_info().rss for p in server_processes(url))


def _wait_idle(url: str, *, timeout_s: float, idle_percent: float = 10.0) -> None:
    procs = server_processes(url)
    for p in procs:
        p.cpu_percent(None)
    end = time.monotonic() + timeout_s
    calm = 0
    while time.monotonic() < end and calm < 3:
        time.sleep(1)
        busy = sum(p.cpu_percent(None) for p in procs)
        calm = calm + 1 if busy < idle_percent else 0


def _wait_connections(url: str, count: int, *, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    bar, seen = progress(count, "opening polls", "poll"), 0
    while time.monotonic() < end:
        now = min(count, sum(len(p.net_connections()) for p in server_processes(url)))
        bar.update(max(0, now - seen))
        seen = max(seen, now)
        if now >= count:
            break
        time.sleep(1)
    bar.close()


def _probe(url: str, seconds: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"health": [], "start": []}
    queue = f"probe-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=url, timeout=10) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            c.get("/api/health")
            out["health"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            c.post("/api/workflows", headers=CP, json={"workflow_type": "p", "task_queue": queue})
            out["start"].append((time.perf_counter() - t) * 1000)
    return out


def _p99s(probes: list[dict[str, list[float]]], when: str) -> dict[str, float]:
    """Median over probe windows of each window's p99, per probed request."""
    per_window = [{k: percentiles(v)["p99"] for k, v in probe.items()} for probe in probes]
    medians = median_of_runs(per_window, ["health", "start"])
    return {f"{k}_p99_{when}_ms": v for k, v in medians.items()}


def _hold_and_measure(url: str, args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hold ``args.polls`` idle polls on ``url``: memory per poll, latency before and meanwhile."""
    baseline = [_probe(url, 3) for _ in range(args.runs)]
    time.sleep(1)
    rss_before = _rss(url)
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    procs = max(1, args.polls // 2500)
    share = args.polls // procs
    queue = f"idle-{uuid.uuid4().hex[:6]}"
    hold_s = 240
    workers = [
        ctx.Process(target=_hold_process, args=(url, queue, share, hold_s, ready))
        for _ in range(procs)
    ]
    started = time.monotonic()
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=120)
    # Wait until the server holds every poll and has run their first claims.
    _wait_connections(url, share * procs, timeout_s=120)
    _wait_idle(url, timeout_s=60)
    rss_after = _rss(url)
    held = [_probe(url, 5) for _ in range(args.runs)]
    conns = sum(len(p.net_connections()) for p in server_processes(url))
    for w in workers:
        w.terminate()
        w.join(10)
    per_poll_kib = (rss_after - rss_before) / max(1, share * procs) / 1024
    row = {
        "polls": share * procs,
        "server_connections": conns,
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_after_mib": round(rss_after / 2**20, 1),
        "kib_per_poll": round(per_poll_kib, 1),
        **_p99s(baseline, "idle"),
        **_p99s(held, "held"),
        "setup_s": round(time.monotonic() - started, 1),
    }
    return row, {"idle": baseline, "held": held}


def run(args: Any) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    probes: dict[str, Any] = {}
    with bench_database(args.dsn) as dsn, dwtrio_server(dsn=dsn) as url:
        row, probes["dwtrio"] = _hold_and_measure(url, args)
        rows.append({"server": "dwtrio", **row})
    if args.floor:
        with floor_server() as url:
            row, probes["floor"] = _hold_and_measure(url, args)
            rows.append({"server": "floor", **row})
    print(table(rows, list(rows[0])))
    series = {
        f"{server}: {kind} {label}": [v for probe in windows[when] for v in probe[kind]]
        for server, windows in probes.items()
        for when, label in (("idle", "idle"), ("held", "with polls held"))
        for kind in ("health", "start")
    }
    plot = plot_cdf("open-polls", series, "request latency (ms) beside the open polls")
    path = write_result(
        "open-polls",
        {
            "unit": "ms",
            "runs_per_point": args.runs,
            "summary": rows,
            "probes": probes,
            "plot": str(plot),
        },
    )
    print(f"results: {path}" + (f"\nplot: {plot}" if plot else ""))
    return {"summary": rows}
