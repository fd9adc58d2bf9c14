"""history-follow: how fast a run's new event reaches a client following its history.

A follower (its own process) long-polls ``GET .../history?wait_new_event=1``
with the token of the last event it has; a producer signals the run through
the real API, one signal at a time. Latency is the time from the producer
sending ``POST .../signal/...`` to the follower holding the page with the new
event (both on the machine-wide monotonic clock). Beside it, in the same run
and on the same server, ``poll-latency``'s measure: a start reaching a parked
workflow-task poller, dwtrio's own wake path for workers.

With ``--server-processes 2`` (and ``--redis-url``) the processes share the
listening socket, so the follower's and the producer's connections land on
either: a wake between two processes crosses the Redis bus.

Reproduce::

    python -m bench --dsn postgresql://postgres@127.0.0.1:5432/postgres \\
        --redis-url redis://127.0.0.1:6379/0 history-follow --samples 300
"""

from __future__ import annotations

import base64
import multiprocessing as mp
import time
import uuid
from typing import Any

from bench import poll_latency
from bench.harness import (
    CP,
    RawConnection,
    bench_database,
    dwtrio_server,
    median_of_runs,
    percentiles,
    progress,
    table,
    write_result,
)
from dwtrio import payloads

SIGNAL = {"input": {"codec": "avro", "blob": payloads.encode([1])}}


def _token(sequence: int) -> str:
    return base64.b64encode(str(sequence).encode()).decode()


def _follower(url: str, wf: str, run_id: str, after: int, stop_at: float, out: Any) -> None:
    conn = RawConnection(url, timeout_s=60)
    last = after
    while time.monotonic() < stop_at:
        path = (
            f"/api/workflows/{wf}/runs/{run_id}/history?page_size=1000"
            f"&next_page_token={_token(last)}&wait_new_event=1"
        )
        status, body = conn.request("GET", path, CP)
        got_ns = time.monotonic_ns()
        assert status == 200, body
        events = body["events"]
        if events:
            last = events[-1]["sequence"]
            out.put((last, got_ns))


def measure(url: str, follow_url: str, samples: int, gap_s: float = 0.02) -> list[float]:
    """Latencies in ms for ``samples`` signals, followed through ``follow_url``."""
    wf = f"follow-{uuid.uuid4().hex[:8]}"
    producer = RawConnection(url)
    status, started = producer.request(
        "POST",
        "/api/workflows",
        CP,
        {"workflow_id": wf, "workflow_type": "bench", "task_queue": wf},
    )
    assert status == 201, started
    run_id = started["run_id"]
    _, page = producer.request("GET", f"/api/workflows/{wf}/runs/{run_id}/history", CP)
    after = page["events"][-1]["sequence"]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    stop_at = time.monotonic() + 30 + samples * (gap_s + 0.05)
    follower = ctx.Process(target=_follower, args=(follow_url, wf, run_id, after, stop_at, out))
    follower.start()
    time.sleep(1.0)  # parked
    latencies: list[float] = []
    bar = progress(samples, "history-follow", "event")
    try:
        for _ in range(samples):
            sent = time.monotonic_ns()
            status, answer = producer.request(
                "POST", f"/api/workflows/{wf}/signal/poke", CP, SIGNAL
            )
            assert status == 202, answer
            _, got_ns = out.get(timeout=15)
            latencies.append((got_ns - sent) / 1e6)
            bar.update(1)
            time.sleep(gap_s)
    finally:
        producer.close()
        bar.close()
        follower.terminate()
        follower.join(5)
    return latencies


def run(args: Any) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with (
        bench_database(args.dsn) as dsn,
        dwtrio_server(dsn=dsn, workers=args.server_processes, redis_url=args.redis_url) as url,
    ):
        for name, fn in (
            ("history follower", lambda: measure(url, url, args.samples)),
            (
                "workflow-task poller (reference)",
                lambda: poll_latency.measure(url, 1, args.samples),
            ),
        ):
            per_run = [percentiles(fn()) for _ in range(args.runs)]
            rows.append({"wake": name, **median_of_runs(per_run, ["p50", "p90", "p99", "max"])})
    print(
        f"{args.server_processes} server process(es), {args.samples} wakes per run,"
        f" median of {args.runs} run(s):"
    )
    print(table(rows, ["wake", "p50", "p90", "p99", "max"]))
    path = write_result(
        "history-follow",
        {"unit": "ms", "server_processes": args.server_processes, "summary": rows},
    )
    print(f"results: {path}")
    return {"summary": rows}
