"""dispatch-throughput: activity poll -> complete cycles per second.

C concurrent worker loops (spread over load-generator processes) poll an
activity task and complete it, against a pre-loaded backlog, for a fixed time.
Reported: cycles/s and server CPU per cycle, with one server process and with
several sharing the socket (and Redis, so wakes reach every process).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import uuid
from typing import Any

import httpx

from bench.backlog import load_activity_backlog
from bench.harness import bench_database, dwtrio_server, server_processes, table, write_result

WP = {"X-Durable-Workflow-Protocol-Version": "1.20"}


async def _loops(url: str, queue: str, count: int, until: float, out: Any) -> None:
    limits = httpx.Limits(max_connections=count + 4, max_keepalive_connections=count + 4)
    done = 0
    async with httpx.AsyncClient(base_url=url, headers=WP, timeout=30, limits=limits) as client:

        async def loop(i: int) -> None:
            nonlocal done
            worker = f"tp-{uuid.uuid4().hex[:8]}"
            while time.monotonic() < until:
                r = await client.post(
                    "/api/worker/activity-tasks/poll",
                    json={"worker_id": worker, "task_queue": queue, "timeout_seconds": 1},
                )
                task = r.json().get("task")
                if not task:
                    continue
                await client.post(
                    f"/api/worker/activity-tasks/{task['task_id']}/complete",
                    json={
                        "activity_attempt_id": task["activity_attempt_id"],
                        "lease_owner": worker,
                        "result": {"codec": "avro", "blob": "wwHioz3/VYAiNwA="},
                    },
                )
                if time.monotonic() < until:
                    done += 1

        await asyncio.gather(*(loop(i) for i in range(count)))
    out.put(done)


def _loop_process(url: str, queue: str, count: int, until: float, out: Any) -> None:
    asyncio.run(_loops(url, queue, count, until, out))


def measure(url: str, queue: str, concurrency: int, seconds: float, procs: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    until = time.monotonic() + 3 + seconds  # ~3 s for the generators to start
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    workers = [
        ctx.Process(target=_loop_process, args=(url, queue, n, until, out)) for n in shares if n
    ]
    server = server_processes(url)
    for w in workers:
        w.start()
    time.sleep(max(0.0, until - seconds - time.monotonic()))
    cpu0 = sum(sum(p.cpu_times()[:2]) for p in server)
    t0 = time.monotonic()
    cycles = sum(out.get(timeout=seconds + 60) for _ in workers)
    elapsed = time.monotonic() - t0
    cpu = sum(sum(p.cpu_times()[:2]) for p in server) - cpu0
    for w in workers:
        w.join(10)
    return {
        "concurrency": concurrency,
        "cycles": cycles,
        "cycles_per_s": round(cycles / elapsed, 1),
        "server_cpu_ms_per_cycle": round(cpu / max(cycles, 1) * 1000, 2),
    }


def run(args: Any) -> dict[str, Any]:
    rows = []
    for server_workers in args.server_processes:
        extra = {"DW_REDIS_URL": args.redis_url} if server_workers > 1 and args.redis_url else {}
        with bench_database(args.dsn) as dsn:
            if dsn is None:
                raise SystemExit("dispatch-throughput needs --dsn (it bulk-loads the backlog)")
            queue = f"tp-{uuid.uuid4().hex[:6]}"
            needed = int(len(args.concurrency) * args.seconds * 1500) + 10_000
            with dwtrio_server(dsn=dsn, workers=server_workers, extra_env=extra) as url:
                load_activity_backlog(
                    dsn, queue, needed
                )  # after the server bootstrapped the schema
                for c in args.concurrency:
                    row = measure(url, queue, c, args.seconds, args.load_processes)
                    row["server_processes"] = server_workers
                    rows.append(row)
                    print(
                        f"  {server_workers} server processes, {c} loops: {row['cycles_per_s']} cycles/s"
                    )
    print(
        table(
            rows,
            [
                "server_processes",
                "concurrency",
                "cycles",
                "cycles_per_s",
                "server_cpu_ms_per_cycle",
            ],
        )
    )
    path = write_result("dispatch-throughput", {"summary": rows, "mode": "backlog"})
    print(f"results: {path}")
    return {"summary": rows}
