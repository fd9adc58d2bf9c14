"""backlog-scaling: claim latency with 1k, 100k and 1M ready tasks on the queue.

The backlog is bulk-loaded in Postgres; a single worker then claims tasks with
zero-timeout activity polls (each one claim transaction) and completes them.
Reported: poll (claim) latency p50/p99 per backlog size, each the median over
``--runs`` runs taken one after another on the same backlog.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from bench.backlog import load_activity_backlog
from bench.harness import (
    WP,
    bench_database,
    dwtrio_server,
    median_of_runs,
    percentiles,
    plot_cdf,
    progress,
    table,
    write_result,
)


def measure(url: str, queue: str, samples: int, label: str) -> list[float]:
    latencies = []
    bar = progress(samples, label, "claim")
    with httpx.Client(base_url=url, headers=WP, timeout=30) as client:
        for _ in range(samples):
            bar.update(1)
            t = time.perf_counter()
            r = client.post(
                "/api/worker/activity-tasks/poll",
                json={"worker_id": "scaler", "task_queue": queue, "timeout_seconds": 0},
            )
            latencies.append((time.perf_counter() - t) * 1000)
            task = r.json()["task"]
            assert task, "the backlog ran dry"
            client.post(
                f"/api/worker/activity-tasks/{task['task_id']}/complete",
                json={
                    "activity_attempt_id": task["activity_attempt_id"],
                    "lease_owner": "scaler",
                    "result": {"codec": "avro", "blob": "wwHioz3/VYAiNwA="},
                },
            )
    bar.close()
    return latencies[10:]  # the first claims warm caches and connections


def run(args: Any) -> dict[str, Any]:
    rows, series = [], {}
    with bench_database(args.dsn) as dsn:
        if dsn is None:
            raise SystemExit("backlog-scaling needs --dsn (it bulk-loads the backlog)")
        with dwtrio_server(dsn=dsn) as url:
            for size in args.sizes:
                queue = f"bl-{size}-{uuid.uuid4().hex[:4]}"
                load_activity_backlog(dsn, queue, size + args.runs * (args.samples + 20))
                runs = [
                    measure(url, queue, args.samples, f"backlog {size}, run {i + 1}/{args.runs}")
                    for i in range(args.runs)
                ]
                per_run = [percentiles(lat) for lat in runs]
                medians = median_of_runs(per_run, ["p50", "p90", "p99", "max"])
                rows.append(
                    {"backlog": size, "count": per_run[0]["count"], **medians, "runs": per_run}
                )
                series[f"{size} ready tasks"] = [v for lat in runs for v in lat]
                print(
                    f"  backlog {size}: claim p50 {medians['p50']:.2f} ms (median of {args.runs})"
                )
    print(table(rows, ["backlog", "count", "p50", "p90", "p99", "max"]))
    plot = plot_cdf("backlog-scaling", series, "activity claim (poll) latency (ms), all runs")
    path = write_result(
        "backlog-scaling",
        {
            "unit": "ms",
            "runs_per_point": args.runs,
            "summary": rows,
            "samples": series,
            "plot": str(plot),
        },
    )
    print(f"results: {path}" + (f"\nplot: {plot}" if plot else ""))
    return {"summary": rows}
