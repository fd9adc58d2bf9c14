"""sdk-greeter: the official SDK's README greeter, end to end, against dwtrio.

A worker process runs ``Worker.run()`` (greeter workflow + greet activity); C
concurrent starters (one client) start greeters and wait for each result.
Reported per starter count: workflows per second, start -> workflow-code
latency and start -> completion latency (p50/p99, from the server's history
timestamps), each the median over ``--runs`` runs.

When the optional ``temporal`` extra is installed, the same workload (one
greeter with one activity, the same worker limits, starters and counts) runs on
Temporal's dev server in the same invocation (bench/temporal_greeter.py), and
the dwtrio / Temporal ratios are printed. Both sides report CPU per workflow
over the timed part by process kind: the server (dwtrio's processes, or the
dev server's process tree), the SDK worker and the client.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from typing import Any

import psutil

from bench import temporal_greeter
from bench.harness import (
    REPO,
    bench_database,
    dwtrio_server,
    median_of_runs,
    percentiles,
    plot_cdf,
    plot_lines,
    progress,
    server_processes,
    table,
    write_result,
)

#: How often the client's one completion watcher lists completed workflows ...
WATCH_INTERVAL_S = 0.01
#: ... once a greeter has run this long (none completes sooner): with one starter,
#: nothing but the greeter itself loads the server during its first milliseconds.
WATCH_AFTER_S = 0.015
#: A starter whose workflow the watcher has not seen by then waits with get_result's polls.
WATCH_FALLBACK_S = 5.0

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


async def _client(
    url: str,
    queue: str,
    count: int,
    concurrency: int,
    cpu: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Run ``count`` greeters, ``concurrency`` at a time; latencies come from server timestamps.

    Each starter starts a greeter with the SDK, waits until it completed, reads
    its result with the SDK's ``get_result`` and starts the next. The SDK has no
    long-poll for a result (``get_result`` polls ``describe``), so waiting is
    done by one watcher for the whole client: it lists this run's completed
    greeters (SDK ``list_workflows``) every WATCH_INTERVAL_S while a greeter has
    run for WATCH_AFTER_S, and releases their starters. The server sees at most
    ~100 small list calls a second whatever the number of starters, none while
    a lone greeter starts, and a starter learns of its completion ~5 ms late on
    average; polling per starter would instead either load the server with
    describes (16 starters at 50 ms: 320 a second) or bound workflows/s by the
    poll interval. Latencies are read from each run's history and are not
    affected: start -> workflow code = StartAccepted to ActivityScheduled (the
    workflow's first task ran and was completed), end to end = StartAccepted to
    WorkflowCompleted. ``cpu`` returns CPU seconds used so far by process kind;
    their use over the timed part is reported per workflow.
    """
    import httpx
    from durable_workflow import Client

    runs: list[tuple[str, str]] = []
    tag = uuid.uuid4().hex[:12]
    waiting: dict[str, tuple[asyncio.Event, float]] = {}
    fallbacks = 0
    page = min(200, 2 * concurrency + 16)
    bar = progress(count, f"dwtrio greeter, {concurrency} starters", "wf")
    async with Client(url, token="bench", namespace="default") as client:
        sem = asyncio.Semaphore(concurrency)

        async def watch() -> None:
            while True:
                due = time.monotonic() - WATCH_AFTER_S
                if any(since <= due for _, since in waiting.values()):
                    try:
                        listed = await client.list_workflows(
                            workflow_type="greeter", status="completed", query=tag, page_size=page
                        )
                    except Exception as exc:  # keep watching; say so, it skews the figures
                        print(f"completion watcher: {exc!r}", file=sys.stderr)
                    else:
                        for execution in listed.executions:
                            entry = waiting.get(execution.workflow_id)
                            if entry is not None:
                                entry[0].set()
                await asyncio.sleep(WATCH_INTERVAL_S)

        async def one() -> None:
            nonlocal fallbacks
            async with sem:
                workflow_id = f"greet-{tag}-{uuid.uuid4().hex}"
                done = asyncio.Event()
                waiting[workflow_id] = (done, time.monotonic())
                try:
                    handle = await client.start_workflow(
                        workflow_type="greeter",
                        workflow_id=workflow_id,
                        task_queue=queue,
                        input=["world"],
                    )
                    await asyncio.wait_for(done.wait(), WATCH_FALLBACK_S)
                except TimeoutError:
                    # Not seen (a straggler pushed off the page): get_result polls. It
                    # costs this starter up to WATCH_FALLBACK_S, so it is counted.
                    fallbacks += 1
                finally:
                    del waiting[workflow_id]
                result = await client.get_result(handle, poll_interval=0.05, timeout=120)
                assert result == "hello, world", result
                runs.append((handle.workflow_id, handle.run_id))
                bar.update(1)

        watcher = asyncio.create_task(watch())
        try:
            await one()  # warm-up (discovery, connections)
            runs.clear()
            fallbacks = 0
            bar.reset()
            cpu_before = cpu() if cpu else {}
            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(count)))
            elapsed = time.perf_counter() - started
            cpu_after = cpu() if cpu else {}
        finally:
            watcher.cancel()
    bar.close()
    if fallbacks:
        print(f"  {fallbacks} greeters missed by the watcher (workflows/s is low)", file=sys.stderr)
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
        "watch_fallbacks": fallbacks,
        "cpu_ms_per_workflow": {
            kind: round((cpu_after[kind] - used) / count * 1000, 2)
            for kind, used in cpu_before.items()
        },
    }


def _row(system: str, starters: int, outs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-run figures for one starter count, and their medians."""
    runs = []
    for out in outs:
        e2e, code = percentiles(out["latencies_ms"]), percentiles(out["start_to_code_ms"])
        runs.append(
            {
                "wf_per_s": round(out["workflows_per_s"], 2),
                "start_to_code_p50": round(code["p50"], 2),
                "start_to_code_p99": round(code["p99"], 2),
                "p50": round(e2e["p50"], 2),
                "p99": round(e2e["p99"], 2),
                "count": e2e["count"],
                "watch_fallbacks": out.get("watch_fallbacks"),
                "cpu_ms_per_workflow": out.get("cpu_ms_per_workflow"),
                "start_to_code_ms": out["start_to_code_ms"],
                "latencies_ms": out["latencies_ms"],
            }
        )
    keys = ["wf_per_s", "start_to_code_p50", "start_to_code_p99", "p50", "p99"]
    shares = [r["cpu_ms_per_workflow"] for r in runs if r["cpu_ms_per_workflow"]]
    cpu = median_of_runs(shares, list(shares[0])) if shares else {}
    return {
        "system": system,
        "starters": starters,
        **median_of_runs(runs, keys),
        "cpu_ms_per_workflow": cpu,
        "runs": runs,
    }


def process_cpu(kinds: dict[str, list[Any]]) -> Callable[[], dict[str, float]]:
    """A callable returning the user+system CPU seconds of each kind's processes."""

    def used() -> dict[str, float]:
        return {kind: sum(sum(p.cpu_times()[:2]) for p in procs) for kind, procs in kinds.items()}

    return used


def _dwtrio(args: Any) -> list[dict[str, Any]]:
    rows = []
    with (
        bench_database(args.dsn) as dsn,
        dwtrio_server(dsn=dsn, workers=args.server_workers, redis_url=args.redis_url) as url,
    ):
        queue = f"greet-{uuid.uuid4().hex[:8]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DW_")}
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER_CODE, url, queue], env=env, cwd=REPO
        )
        try:
            cpu = process_cpu(
                {
                    "server": server_processes(url),
                    "sdk worker": [psutil.Process(worker.pid)],
                    "client": [psutil.Process()],
                }
            )
            for concurrency in args.concurrency:
                outs = [
                    asyncio.run(_client(url, queue, args.count, concurrency, cpu))
                    for _ in range(args.runs)
                ]
                rows.append(_row("dwtrio", concurrency, outs))
                _say(rows[-1], args.runs)
        finally:
            worker.terminate()
            worker.wait(15)
    return rows


def _temporal(args: Any) -> list[dict[str, Any]]:
    rows = []
    with temporal_greeter.dev_server() as (address, server_pid):
        queue = f"greet-{uuid.uuid4().hex[:8]}"
        worker = temporal_greeter.start_worker(address, queue)
        pids = (server_pid, worker.pid)
        try:
            for concurrency in args.concurrency:
                outs = [
                    temporal_greeter.run_client(address, queue, args.count, concurrency, pids)
                    for _ in range(args.runs)
                ]
                rows.append(_row("temporal", concurrency, outs))
                _say(rows[-1], args.runs)
        finally:
            worker.terminate()
            worker.wait(15)
    return rows


def _say(row: dict[str, Any], runs: int) -> None:
    print(
        f"  {row['system']}, {row['starters']} starters: {row['wf_per_s']} wf/s, "
        f"p50 {row['p50']} ms, p99 {row['p99']} ms (median of {runs})"
    )
    shares = row["cpu_ms_per_workflow"]
    print("    CPU per workflow:", ", ".join(f"{k} {v} ms" for k, v in shares.items()))


def cpu_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CPU ms per workflow by process kind, one row per system and starter count."""
    return [
        {"system": r["system"], "starters": r["starters"], **r["cpu_ms_per_workflow"]}
        for r in rows
        if r.get("cpu_ms_per_workflow")
    ]


def dwtrio_over_temporal(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """dwtrio / Temporal per starter count (latency or CPU > 1, or wf/s < 1: dwtrio is slower).

    ``server_cpu`` (server CPU per workflow) is there when both rows measured it.
    """
    by = {(r["system"], r["starters"]): r for r in rows}
    out = []
    for (system, starters), ours in by.items():
        theirs = by.get(("temporal", starters))
        if system != "dwtrio" or theirs is None:
            continue
        ratio = {"starters": starters}
        for k in ["wf_per_s", "start_to_code_p50", "p50", "p99"]:
            ratio[k] = round(ours[k] / theirs[k], 2) if theirs[k] else float("nan")
        ours_cpu = (ours.get("cpu_ms_per_workflow") or {}).get("server")
        theirs_cpu = (theirs.get("cpu_ms_per_workflow") or {}).get("server")
        if ours_cpu is not None and theirs_cpu:
            ratio["server_cpu"] = round(ours_cpu / theirs_cpu, 2)
        out.append(ratio)
    return out


def temporal_skipped(args: Any) -> str | None:
    """Why this run has no Temporal side, or None when it has one."""
    if not args.temporal:
        return "disabled with --no-temporal"
    missing = temporal_greeter.missing()
    return f"{missing} (pip install -e '.[temporal]')" if missing else None


def run(args: Any) -> dict[str, Any]:
    skipped = temporal_skipped(args)
    versions = {"durable_workflow_sdk": metadata.version("durable-workflow")}
    rows = _dwtrio(args)
    if not skipped:
        try:
            versions.update(temporal_greeter.versions())
            rows += _temporal(args)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            skipped = f"the Temporal side failed: {exc!r}"  # keep dwtrio's figures
    if skipped:
        print(f"Temporal comparison skipped: {skipped}")
    columns = ["system", "starters", "wf_per_s", "start_to_code_p50", "start_to_code_p99"]
    print(table(rows, [*columns, "p50", "p99"]))
    cpu = cpu_rows(rows)
    if cpu:
        print("CPU ms per workflow (user+system over the timed part, median of the runs):")
        print(table(cpu, ["system", "starters", "server", "sdk worker", "client"]))
    ratios = dwtrio_over_temporal(rows)
    if ratios:
        print("dwtrio / Temporal (latency or CPU > 1, or wf/s < 1, means dwtrio is slower):")
        columns = ["starters", "wf_per_s", "start_to_code_p50", "p50", "p99", "server_cpu"]
        print(table(ratios, columns))
    cdf = {
        f"{r['system']}, {r['starters']} starters": [
            v for run_ in r["runs"] for v in run_["latencies_ms"]
        ]
        for r in rows
    }
    plot = plot_cdf("sdk-greeter", cdf, "greeter start -> completion latency (ms), all runs")
    lines: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        lines.setdefault(r["system"], []).append((r["starters"], r["wf_per_s"]))
    tplot = plot_lines(
        "sdk-greeter-throughput", lines, "concurrent starters", "workflows/s (median)"
    )
    path = write_result(
        "sdk-greeter",
        {
            "unit": "ms",
            "count_per_run": args.count,
            "runs_per_point": args.runs,
            "summary": rows,
            "ratios_dwtrio_over_temporal": ratios,
            "temporal_skipped": skipped,
            "versions": versions,
            "plots": [str(plot), str(tplot)],
        },
    )
    print(f"results: {path}" + "".join(f"\nplot: {p}" for p in (plot, tplot) if p))
    return {"summary": rows, "ratios": ratios}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_client(sys.argv[1], sys.argv[2], 10, 1))))
