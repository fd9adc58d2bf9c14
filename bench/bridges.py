"""``python -m bench bridges``: ways of running asyncpg under Trio, side by side.

Each bridge runs in a process of its own (trio-asyncio changes asyncio
process-wide) and drives the same operation from Trio tasks: a transaction of
two statements (four round trips with BEGIN and COMMIT), ``--concurrency`` at
once and one at a time. Reported per bridge: the process's CPU per operation,
operations per second and latency percentiles. The bridges:

* ``trio-asyncio``: asyncio inside Trio's scheduler (dwtrio's bridge until
  issue 19; needs ``pip install trio-asyncio``, else it is skipped and says so);
* ``thread``: asyncio's own event loop in a thread, one hand-off each way per
  operation;
* ``uvloop-thread``: the same on uvloop (``dwtrio/store/bridge.py``).
"""

from __future__ import annotations

import importlib.util
import json
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.harness import bench_database, write_result

BRIDGES = ("trio-asyncio", "thread", "uvloop-thread")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _operation(pool: Any) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchval("SELECT 1")
        await conn.fetchval("SELECT $1::int + 1", 2)


async def _drive(
    call: Callable[[], Awaitable[None]], count: int, concurrency: int
) -> dict[str, float]:
    import trio

    latencies: list[float] = []

    async def loop(n: int) -> None:
        for _ in range(n):
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    cpu, began = _cpu_s(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(loop, count // concurrency)
    cpu, wall = _cpu_s() - cpu, time.perf_counter() - began
    latencies.sort()
    return {
        "cpu_ms_per_op": round(cpu / len(latencies) * 1000, 3),
        "ops_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
    }


async def _measure(bridge: str, dsn: str, count: int, concurrency: int) -> dict[str, Any]:
    import asyncpg

    async def create() -> Any:
        return await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)

    out: dict[str, Any] = {}
    if bridge == "trio-asyncio":
        import trio_asyncio

        async with trio_asyncio.open_loop():
            pool = await trio_asyncio.aio_as_trio(create)()
            for conc in (concurrency, 1):
                call = lambda: trio_asyncio.aio_as_trio(_operation)(pool)  # noqa: E731
                await _drive(call, count // 4, conc)  # warm-up
                out[str(conc)] = await _drive(call, count, conc)
            await trio_asyncio.aio_as_trio(pool.close)()
        return out
    import asyncio

    from dwtrio.store.bridge import AsyncioThread

    loop = asyncio.SelectorEventLoop() if bridge == "thread" else None  # None: uvloop
    thread = AsyncioThread(loop)
    thread.start()
    try:
        pool = await thread.run(create)
        for conc in (concurrency, 1):
            call = lambda: thread.run(_operation, pool)  # noqa: E731
            await _drive(call, count // 4, conc)
            out[str(conc)] = await _drive(call, count, conc)
        await thread.run(pool.close)
    finally:
        await thread.stop()
    return out


def _child(bridge: str, dsn: str, count: int, concurrency: int) -> None:
    import trio

    print(json.dumps(trio.run(_measure, bridge, dsn, count, concurrency)))


def run(args: Any) -> None:
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    with bench_database(args.dsn) as dsn:
        if dsn is None:
            raise SystemExit("bridges needs --dsn (a PostgreSQL to connect to)")
        for round_ in range(args.runs):
            for bridge in args.bridges:
                if bridge == "trio-asyncio" and importlib.util.find_spec("trio_asyncio") is None:
                    skipped[bridge] = "trio-asyncio is not installed (pip install trio-asyncio)"
                    continue
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.bridges",
                        bridge,
                        dsn,
                        str(args.count),
                        str(args.concurrency),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=True,
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
                for conc, figures in result.items():
                    rows.append(
                        {"bridge": bridge, "round": round_ + 1, "concurrency": int(conc), **figures}
                    )
    print(f"{'bridge':14} {'at once':>7} {'cpu ms/op':>9} {'ops/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
    for row in rows:
        print(
            f"{row['bridge']:14} {row['concurrency']:>7} {row['cpu_ms_per_op']:>9} "
            f"{row['ops_per_s']:>8} {row['p50_ms']:>7} {row['p99_ms']:>7}"
        )
    for bridge, why in skipped.items():
        print(f"{bridge}: skipped, {why}")
    path = write_result(
        "bridges",
        {"rows": rows, "skipped": skipped, "count": args.count, "concurrency": args.concurrency},
    )
    print(f"results: {path}")


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
