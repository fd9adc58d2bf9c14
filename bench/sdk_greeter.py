"""sdk-greeter: the official SDK's README greeter, end to end, against dwtrio.

A worker process runs ``Worker.run()`` (greeter workflow + greet activity); a
client process starts greeters one after another and waits for each result.
Reported: start -> result latency (p50/p99) and workflows per second.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

from bench.harness import (
    REPO,
    bench_database,
    dwtrio_server,
    percentiles,
    plot_cdf,
    table,
    write_result,
)

WORKER_CODE = r"""
import asyncio, sys
from durable_workflow import Client, Worker, activity, workflow

@activity.defn(name="greet")
def greet(name):
    return f"hello, {name}"

@workflow.defn(name="greeter")
class Greeter:
    def run(self, ctx, name):
        result = yield ctx.schedule_activity("greet", [name])
        return result

async def main(url, queue):
    async with Client(url, token="bench", namespace="default") as client:
        worker = Worker(client, task_queue=queue, workflows=[Greeter], activities=[greet],
                        max_concurrent_workflow_tasks=64, max_concurrent_activity_tasks=64)
        await worker.run()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def _client(url: str, queue: str, count: int, concurrency: int) -> dict[str, Any]:
    from durable_workflow import Client

    latencies: list[float] = []
    async with Client(url, token="bench", namespace="default") as client:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                t0 = time.perf_counter()
                handle = await client.start_workflow(
                    workflow_type="greeter",
                    workflow_id=f"greet-{uuid.uuid4().hex}",
                    task_queue=queue,
                    input=["world"],
                )
                result = await client.get_result(handle, poll_interval=0.002, timeout=60)
                assert result == "hello, world", result
                latencies.append((time.perf_counter() - t0) * 1000)

        await one()  # warm-up (discovery, connections)
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        elapsed = time.perf_counter() - started
    return {"latencies_ms": latencies, "elapsed_s": elapsed, "workflows_per_s": count / elapsed}


def run(args: Any) -> dict[str, Any]:
    rows, series = [], {}
    with (
        bench_database(args.dsn) as dsn,
        dwtrio_server(dsn=dsn, workers=args.server_workers) as url,
    ):
        queue = f"greet-{uuid.uuid4().hex[:8]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DW_")}
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER_CODE, url, queue], env=env, cwd=REPO
        )
        try:
            for concurrency in args.concurrency:
                out = asyncio.run(_client(url, queue, args.count, concurrency))
                stats = percentiles(out["latencies_ms"])
                rows.append(
                    {
                        "starters": concurrency,
                        "wf_per_s": round(out["workflows_per_s"], 1),
                        **{k: round(v, 2) for k, v in stats.items()},
                    }
                )
                series[f"{concurrency} starters"] = out["latencies_ms"]
                print(
                    f"  {concurrency} starters: {out['workflows_per_s']:.1f} wf/s, p50 {stats['p50']:.1f} ms"
                )
        finally:
            worker.terminate()
            worker.wait(15)
    print(table(rows, ["starters", "wf_per_s", "count", "p50", "p90", "p99", "max"]))
    plot = plot_cdf("sdk-greeter", series, "greeter start -> result latency (ms)")
    path = write_result(
        "sdk-greeter", {"unit": "ms", "summary": rows, "samples": series, "plot": str(plot)}
    )
    print(f"results: {path}" + (f"\nplot: {plot}" if plot else ""))
    return {"summary": rows}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_client(sys.argv[1], sys.argv[2], 10, 1))))
