"""poll-latency: how fast a new task reaches a parked long-poller.

N workflow-task pollers park on one queue (in separate load-generator
processes). A producer starts workflows through the real API, one at a time;
each start creates a workflow task that wakes a parked poller. Latency is the
time from the producer sending ``POST /api/workflows`` to a poller holding the
task (both measured on the machine-wide monotonic clock). The poller then
completes the workflow so the queue stays empty between samples.

Pollers and producer speak HTTP/1.1 over raw keep-alive connections
(``RawClient``, ``RawConnection``): with httpx on both ends the clients' own
work was ~1.5 ms of the p50. ``--floor`` measures the same against
``bench.floor`` (the same HTTP stack, the start handed to a parked poll in
memory, nothing written): the wake latency of this stack and machine before
any durable work.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.harness import (
    CP,
    WP,
    RawClient,
    RawConnection,
    bench_database,
    dwtrio_server,
    floor_server,
    median_of_runs,
    percentiles,
    plot_cdf,
    progress,
    table,
    write_result,
)

COMPLETE = {"type": "complete_workflow", "result": {"codec": "avro", "blob": "wwHioz3/VYAiNwA="}}


async def _pollers(url: str, queue: str, count: int, stop_at: float, out: Any, ready: Any) -> None:
    async def one() -> None:
        worker = f"bench-{uuid.uuid4().hex[:8]}"
        client = RawClient(url, WP)
        try:
            while time.monotonic() < stop_at:
                _, answer = await client.post(
                    "/api/worker/workflow-tasks/poll",
                    {
                        "worker_id": worker,
                        "task_queue": queue,
                        "timeout_seconds": 10,
                        "poll_request_id": f"wf-poll-{uuid.uuid4().hex}",
                    },
                )
                got = time.monotonic_ns()
                task = answer.get("task")
                if not task:
                    continue
                out.put((task["workflow_id"], got))
                await client.post(
                    f"/api/worker/workflow-tasks/{task['task_id']}/complete",
                    {
                        "lease_owner": worker,
                        "workflow_task_attempt": task["workflow_task_attempt"],
                        "commands": [COMPLETE],
                    },
                )
        finally:
            client.close()

    ready.put(count)
    await asyncio.gather(*(one() for _ in range(count)))


def _poller_process(url: str, queue: str, count: int, stop_at: float, out: Any, ready: Any) -> None:
    asyncio.run(_pollers(url, queue, count, stop_at, out, ready))


def measure(
    url: str,
    pollers: int,
    samples: int,
    *,
    procs: int = 4,
    gap_s: float = 0.02,
    producer_url: str | None = None,
    sampling: Callable[[], None] | None = None,
) -> list[float]:
    """Latencies in milliseconds for ``samples`` wakes with ``pollers`` parked pollers
    on ``url``; the producer starts workflows through ``producer_url`` (another node
    of the same database) or ``url``. ``sampling()`` is called once every poll has
    parked, right before the first sample."""
    queue = f"lat-{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("spawn")
    out, ready = ctx.Queue(), ctx.Queue()
    stop_at = time.monotonic() + 30 + samples * (gap_s + 0.05)
    procs = max(1, min(procs, pollers))
    shares = [pollers // procs + (1 if i < pollers % procs else 0) for i in range(procs)]
    workers = [
        ctx.Process(target=_poller_process, args=(url, queue, n, stop_at, out, ready))
        for n in shares
    ]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=30)
    time.sleep(1.0)  # let every poll park
    sent: dict[str, int] = {}
    latencies: list[float] = []
    bar = progress(samples, f"poll-latency {pollers} pollers", "wake")
    producer = RawConnection(producer_url or url)
    if sampling is not None:
        sampling()
    try:
        for _ in range(samples):
            wid = f"lat-{uuid.uuid4().hex}"
            sent[wid] = time.monotonic_ns()
            status, answer = producer.request(
                "POST",
                "/api/workflows",
                CP,
                {"workflow_id": wid, "workflow_type": "bench", "task_queue": queue, "input": []},
            )
            assert status == 201, answer
            got_wid, got_ns = out.get(timeout=15)
            latencies.append((got_ns - sent[got_wid]) / 1e6)
            bar.update(1)
            time.sleep(gap_s)
    finally:
        producer.close()
    bar.close()
    for w in workers:
        w.terminate()
        w.join(5)
    return latencies


def run(args: Any) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    series: dict[str, list[float]] = {}
    raw: dict[str, Any] = {}

    def points(server: str, url: str) -> None:
        for n in args.pollers:
            runs = [measure(url, n, args.samples) for _ in range(args.runs)]
            per_run = [percentiles(lat) for lat in runs]
            medians = median_of_runs(per_run, ["p50", "p90", "p99", "max", "mean"])
            rows.append({"server": server, "pollers": n, "count": len(runs[0]), **medians})
            series[f"{server}, {n} pollers"] = [v for lat in runs for v in lat]
            raw[f"{server} {n}"] = {"per_run": per_run, "samples": runs}

    with (
        bench_database(args.dsn) as dsn,
        dwtrio_server(dsn=dsn, workers=args.server_workers, redis_url=args.redis_url) as url,
    ):
        points("dwtrio", url)
    if args.floor:
        with floor_server() as url:
            points("floor", url)
    print(f"median over {args.runs} runs of each run's figure:")
    print(table(rows, ["server", "pollers", "count", "p50", "p90", "p99", "max", "mean"]))
    plot = plot_cdf(
        "poll-latency", series, "wake latency (ms), producer request -> poller response"
    )
    path = write_result(
        "poll-latency",
        {
            "unit": "ms",
            "runs_per_point": args.runs,
            "summary": rows,
            "runs": raw,
            "server_workers": args.server_workers,
            "plot": str(plot),
        },
    )
    print(f"results: {path}" + (f"\nplot: {plot}" if plot else ""))
    return {"summary": rows}


if __name__ == "__main__":
    print(json.dumps(measure("http://127.0.0.1:8080", 1, 10)))
