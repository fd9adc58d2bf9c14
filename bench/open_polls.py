"""open-polls: hold many idle long-polls on one node; memory per poll, latency meanwhile.

Load-generator processes open N workflow-task polls (timeout 60 s) on an empty
queue. Reported: the server's RSS growth per open poll, and p50/p99 of other
requests (``GET /api/health``, ``POST /api/workflows``) while they are parked.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import uuid
from typing import Any

import httpx

from bench.harness import (
    bench_database,
    dwtrio_server,
    percentiles,
    server_processes,
    table,
    write_result,
)

WP = {"X-Durable-Workflow-Protocol-Version": "1.20"}
CP = {"X-Durable-Workflow-Control-Plane-Version": "2"}


async def _hold(url: str, queue: str, count: int, hold_s: float, ready: Any) -> None:
    limits = httpx.Limits(max_connections=count + 8, max_keepalive_connections=count + 8)
    async with httpx.AsyncClient(
        base_url=url, headers=WP, timeout=hold_s + 30, limits=limits
    ) as client:

        async def one(i: int) -> None:
            try:
                await client.post(
                    "/api/worker/workflow-tasks/poll",
                    json={
                        "worker_id": f"idle-{i}",
                        "task_queue": queue,
                        "timeout_seconds": int(hold_s),
                    },
                )
            except httpx.HTTPError:
                pass

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
    while time.monotonic() < end:
        if sum(len(p.net_connections()) for p in server_processes(url)) >= count:
            return
        time.sleep(1)


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


def run(args: Any) -> dict[str, Any]:
    rows = []
    with bench_database(args.dsn) as dsn, dwtrio_server(dsn=dsn) as url:
        baseline_probe = _probe(url, 3)
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
        held_probe = _probe(url, 10)
        conns = sum(len(p.net_connections()) for p in server_processes(url))
        for w in workers:
            w.terminate()
            w.join(10)
        per_poll_kib = (rss_after - rss_before) / max(1, share * procs) / 1024
        rows.append(
            {
                "polls": share * procs,
                "server_connections": conns,
                "rss_before_mib": round(rss_before / 2**20, 1),
                "rss_after_mib": round(rss_after / 2**20, 1),
                "kib_per_poll": round(per_poll_kib, 1),
                "health_p99_idle_ms": round(percentiles(baseline_probe["health"])["p99"], 2),
                "health_p99_held_ms": round(percentiles(held_probe["health"])["p99"], 2),
                "start_p99_idle_ms": round(percentiles(baseline_probe["start"])["p99"], 2),
                "start_p99_held_ms": round(percentiles(held_probe["start"])["p99"], 2),
                "setup_s": round(time.monotonic() - started, 1),
            }
        )
    print(table(rows, list(rows[0])))
    path = write_result("open-polls", {"summary": rows})
    print(f"results: {path}")
    return {"summary": rows}
