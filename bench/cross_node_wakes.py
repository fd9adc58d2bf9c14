"""cross-node-wakes: a start on one node waking a poll parked on another, through
Redis and through Postgres LISTEN/NOTIFY, beside the same-node figure.

Every setup runs at once, each on a database of its own (a NOTIFY reaches every
listener of its database, so setups sharing one would wake each other's nodes),
each dwtrio a process of its own:

* ``same-node local``: one node, in-process wake bus; pollers and producer on it
  (the start hands its task to a parked poll: dwtrio's fastest path, the reference);
* ``same-node postgres``: the same with ``DW_WAKE_BUS=postgres``, what ``auto``
  picks for a single node on an external database (the bus is not on the
  start's path here, but every commit that wakes anything also sends a NOTIFY);
* ``cross-node redis`` and ``cross-node postgres``: two nodes on that bus, the
  pollers parked on node A, the producer starting workflows through node B. A
  poll on A can only learn of B's task through the bus: every node rechecks
  once a minute (``DW_WORKER_POLL_INTERVAL_MS=60000``).

The measure is ``poll-latency``'s (producer request sent -> poller holding the
task, machine-wide monotonic clock). Rounds alternate the setups, starting each
round with the next one, so a busy spell on a shared machine does not land on
one setup alone; each setup's figure is the median of its rounds' figures, and
the spread is the lowest and highest round. Server CPU per wake sums the setup's
server processes (user + system) from the first sample to the end of the round:
each sample is a start, a wake, a claim and the completion that closes the run.

Reproduce::

    python -m bench --dsn postgresql://postgres@127.0.0.1:5432/postgres \\
        --redis-url redis://127.0.0.1:6379/0 cross-node-wakes --rounds 5
"""

from __future__ import annotations

import contextlib
import statistics
from typing import Any

from bench import poll_latency
from bench.harness import (
    bench_database,
    dwtrio_server,
    machine,
    percentiles,
    plot_cdf,
    server_processes,
    table,
    write_result,
)

#: Nodes recheck this rarely, so a cross-node poll is woken by the bus or not at all
#: within a sample (the producer gives up on a sample after 15 s).
RECHECK_MS = "60000"


def _cpu_s(urls: set[str]) -> float:
    total = 0.0
    for url in urls:
        for proc in server_processes(url):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def run(args: Any) -> dict[str, Any]:
    if not args.dsn:
        raise SystemExit(
            "cross-node-wakes needs --dsn (or DWTRIO_BENCH_DSN): two nodes cannot share "
            "an embedded PostgreSQL"
        )
    setups: dict[str, tuple[str, str]] = {}  # name -> (pollers' node, producer's node)
    with contextlib.ExitStack() as stack:

        def nodes(bus: str, count: int) -> list[str]:
            """``count`` nodes on ``bus``, sharing a database of their own."""
            dsn = stack.enter_context(bench_database(args.dsn))
            env = {"DW_WORKER_POLL_INTERVAL_MS": RECHECK_MS, "DW_WAKE_BUS": bus}
            if bus == "redis":
                env["DW_REDIS_URL"] = args.redis_url
            return [
                stack.enter_context(dwtrio_server(dsn=dsn, extra_env=env)) for _ in range(count)
            ]

        for bus in ("local", "postgres"):
            (url,) = nodes(bus, 1)
            setups[f"same-node {bus}"] = (url, url)
        if args.redis_url:
            a, b = nodes("redis", 2)
            setups["cross-node redis"] = (a, b)
        else:
            print("note: no --redis-url (or DWTRIO_BENCH_REDIS_URL): Redis is not measured")
        a, b = nodes("postgres", 2)
        setups["cross-node postgres"] = (a, b)

        names = list(setups)
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        samples: dict[str, list[list[float]]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                parked, producer = setups[name]
                urls = {parked, producer}
                cpu_before: list[float] = []
                latencies = poll_latency.measure(
                    parked,
                    args.pollers,
                    args.samples,
                    producer_url=producer,
                    sampling=lambda before=cpu_before, urls=urls: before.append(_cpu_s(urls)),
                )
                cpu_ms = (_cpu_s(urls) - cpu_before[0]) * 1000 / len(latencies)
                rounds[name].append({**percentiles(latencies), "cpu_ms_per_wake": cpu_ms})
                samples[name].append(latencies)
    rows = []
    for name in names:
        per = rounds[name]

        def med(key: str, per: list[dict[str, Any]] = per) -> float:
            return round(statistics.median(p[key] for p in per), 3)

        def spread(key: str, per: list[dict[str, Any]] = per) -> str:
            return f"{min(p[key] for p in per):.2f}-{max(p[key] for p in per):.2f}"

        rows.append(
            {
                "setup": name,
                "rounds": len(per),
                "p50": med("p50"),
                "p50 spread": spread("p50"),
                "p99": med("p99"),
                "p99 spread": spread("p99"),
                "cpu ms/wake": med("cpu_ms_per_wake"),
            }
        )
    print(
        f"wake latency in ms ({args.pollers} parked pollers, {args.samples} wakes a round): "
        f"median of {args.rounds} rounds, spread = lowest-highest round"
    )
    print(table(rows, list(rows[0])))
    plot = plot_cdf(
        "cross-node-wakes",
        {name: [v for lat in samples[name] for v in lat] for name in names},
        "wake latency (ms), producer request on node B -> poller response on node A",
    )
    path = write_result(
        "cross-node-wakes",
        {
            "unit": "ms",
            "machine": machine(),
            "pollers": args.pollers,
            "samples_per_round": args.samples,
            "summary": rows,
            "rounds": rounds,
            "samples": samples,
            "plot": str(plot),
        },
    )
    print(f"results: {path}" + (f"\nplot: {plot}" if plot else ""))
    return {"summary": rows}
