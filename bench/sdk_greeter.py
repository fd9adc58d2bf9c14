"""sdk-greeter: the official SDK's README greeter, end to end, against dwtrio.

A worker process runs ``Worker.run()`` (greeter workflow + greet activity); a
client process starts greeters one after another and waits for each result.
Reported: start -> workflow-code latency, start -> completion latency (p50/p99,
from the server's history timestamps) and workflows per second.
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


def _ms(a: str, b: str) -> float:
    from datetime import datetime

    def parse(s: str) -> datetime:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))

    return (parse(b) - parse(a)).total_seconds() * 1000


async def _client(url: str, queue: str, count: int, concurrency: int) -> dict[str, Any]:
    """Run ``count`` greeters, ``concurrency`` at a time; latencies come from server timestamps.

    The client waits with ``get_result`` at a 50 ms poll interval (tight polling
    would itself load the server); latencies are read from each run's history:
    start -> workflow code = StartAccepted to ActivityScheduled (the workflow's
    first task ran and was completed), end to end = StartAccepted to WorkflowCompleted.
    """
    import httpx
    from durable_workflow import Client

    runs: list[tuple[str, str]] = []
    async with Client(url, token="bench", namespace="default") as client:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                handle = await client.start_workflow(
                    workflow_type="greeter",
                    workflow_id=f"greet-{uuid.uuid4().hex}",
                    task_queue=queue,
                    input=["world"],
                )
                result = await client.get_result(handle, poll_interval=0.05, timeout=120)
                assert result == "hello, world", result
                runs.append((handle.workflow_id, handle.run_id))

        await one()  # warm-up (discovery, connections)
        runs.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        elapsed = time.perf_counter() - started
    first_task, end_to_end = [], []
    headers = {"X-Durable-Workflow-Control-Plane-Version": "2"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        for workflow_id, run_id in runs:
            r = await http.get(f"/api/workflows/{workflow_id}/runs/{run_id}/history?page_size=100")
            at = {e["event_type"]: e["timestamp"] for e in r.json()["events"]}
            first_task.append(_ms(at["StartAccepted"], at["ActivityScheduled"]))
            end_to_end.append(_ms(at["StartAccepted"], at["WorkflowCompleted"]))
    return {
        "start_to_code_ms": first_task,
        "latencies_ms": end_to_end,
        "elapsed_s": elapsed,
        "workflows_per_s": count / elapsed,
    }


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
                code = percentiles(out["start_to_code_ms"])
                rows.append(
                    {
                        "start_to_code_p50": round(code["p50"], 2),
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
    print(
        table(
            rows, ["starters", "wf_per_s", "start_to_code_p50", "count", "p50", "p90", "p99", "max"]
        )
    )
    plot = plot_cdf("sdk-greeter", series, "greeter start -> result latency (ms)")
    path = write_result(
        "sdk-greeter", {"unit": "ms", "summary": rows, "samples": series, "plot": str(plot)}
    )
    print(f"results: {path}" + (f"\nplot: {plot}" if plot else ""))
    return {"summary": rows}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_client(sys.argv[1], sys.argv[2], 10, 1))))
