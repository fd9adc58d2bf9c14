"""``python -m bench <subcommand>``: dwtrio's benchmark harness (loopback only, bounded).

Postgres: ``--dsn`` (or DWTRIO_BENCH_DSN) names an admin DSN on which a fresh
database is created and dropped; without it the server uses its embedded
Postgres. Results go to bench/results/ (JSON + PNG).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench import (
    backlog_scaling,
    bars,
    bridges,
    cross_node_wakes,
    history_export,
    history_follow,
    open_polls,
    operator_metrics,
    poll_latency,
    profile,
    request_cost,
    retention,
    schedules,
    sdk_greeter,
    soak,
    task_queues,
    throughput,
    visibility,
    visibility_archived,
)
from bench.harness import PROFILE_ENV


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _floor_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--floor",
        action="store_true",
        help="also measure bench.floor, the same HTTP stack and config with no server behind "
        "it (one process)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "--dsn", default=os.environ.get("DWTRIO_BENCH_DSN"), help="admin Postgres DSN"
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="dwtrio server processes (several share the Redis wake bus of --redis-url)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("DWTRIO_BENCH_REDIS_URL"),
        help="Redis for the wake bus of several server processes (DW_REDIS_URL)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("poll-latency", help="task creation -> parked poller wake latency")
    p.add_argument("--pollers", type=int, nargs="+", default=[1, 100])
    p.add_argument("--samples", type=int, default=300, help="wakes per run")
    p.add_argument(
        "--runs", type=_positive, default=3, help="runs per point; the median is reported"
    )
    _floor_option(p)
    p.set_defaults(run=bars.reporting("poll-latency", poll_latency.run))
    g = sub.add_parser("sdk-greeter", help="official SDK greeter end to end")
    g.add_argument("--count", type=int, default=100, help="workflows per run and starter count")
    g.add_argument("--concurrency", type=_positive, nargs="+", default=[1, 16, 64])
    g.add_argument(
        "--runs", type=_positive, default=3, help="runs per point; the median is reported"
    )
    g.add_argument(
        "--no-temporal",
        dest="temporal",
        action="store_false",
        help="skip the Temporal dev-server comparison even when the extra is installed",
    )
    g.set_defaults(run=bars.reporting("sdk-greeter", sdk_greeter.run))
    o = sub.add_parser(
        "open-polls", help="memory per idle long-poll; latency of other requests meanwhile"
    )
    o.add_argument("--polls", type=int, default=10_000)
    o.add_argument(
        "--runs", type=_positive, default=3, help="probe windows; the median is reported"
    )
    o.add_argument(
        "--clients",
        choices=["httpx", "raw"],
        default="httpx",
        help="load generators' HTTP clients: httpx, or bare keep-alive sockets (raw: "
        "several loopback source addresses, for more than ~28,000 polls)",
    )
    o.add_argument(
        "--load-processes",
        type=_positive,
        default=None,
        help="load-generator processes (default: one per 2,500 polls with httpx, per "
        "16,000 with raw; each stays under the hard open-file limit)",
    )
    o.add_argument(
        "--sources",
        type=_positive,
        default=None,
        help="raw: loopback source addresses 127.0.0.2.., one generator's ports each "
        "(at most ~28,000; default: one per load generator)",
    )
    o.add_argument(
        "--polls-per-worker",
        type=_positive,
        default=1,
        help="raw: polls sharing one worker id (an SDK worker runs several; each worker's "
        "registration is refreshed every 30 s, on its next poll)",
    )
    o.add_argument(
        "--drain",
        action="store_true",
        help="raw: then SIGTERM the node with every poll parked; time until each is "
        "answered and the server processes exit",
    )
    _floor_option(o)
    o.set_defaults(run=bars.reporting("open-polls", open_polls.run))
    t = sub.add_parser(
        "dispatch-throughput",
        help="activity poll+complete cycles/s against a backlog and against live production",
    )
    t.add_argument("--concurrency", type=_positive, nargs="+", default=[16, 64, 256])
    t.add_argument("--modes", nargs="+", choices=["backlog", "live"], default=["backlog", "live"])
    t.add_argument(
        "--runs", type=_positive, default=3, help="windows per point; the median is reported"
    )
    t.add_argument(
        "--server-processes",
        "--workers",
        type=_positive,
        nargs="+",
        default=[1, 2],
        help="dwtrio server processes (several share the Redis wake bus of --redis-url)",
    )
    t.add_argument("--seconds", type=float, default=10.0, help="measured window per run")
    t.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="seconds before each window: load generators start, register and fill the pipeline",
    )
    t.add_argument("--load-processes", type=int, default=2)
    t.add_argument(
        "--floor",
        action="store_true",
        help="backlog mode: also measure bench.floor (the same HTTP stack answering the poll "
        "from an endless in-memory backlog), one process, at each concurrency",
    )
    # Accepted after the subcommand too (where it used to live); same destination.
    t.add_argument("--redis-url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    t.set_defaults(run=bars.reporting("dispatch-throughput", throughput.run))
    b = sub.add_parser("backlog-scaling", help="claim latency against 1k / 100k / 1M ready tasks")
    b.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    b.add_argument("--samples", type=int, default=300, help="claims per run")
    b.add_argument(
        "--runs", type=_positive, default=3, help="runs per size; the median is reported"
    )
    b.set_defaults(run=bars.reporting("backlog-scaling", backlog_scaling.run))
    c = sub.add_parser(
        "request-cost", help="latency and server CPU of one request, by kind, one at a time"
    )
    c.add_argument("--requests", type=_positive, default=400, help="requests of each kind per run")
    c.add_argument(
        "--runs", type=_positive, default=3, help="runs; the median of each figure is reported"
    )
    _floor_option(c)
    c.set_defaults(run=request_cost.run)
    s = sub.add_parser(
        "schedules", help="scheduler fire lag with many schedules, on one node and on several"
    )
    s.add_argument("--schedules", type=_positive, default=1000, help="active schedules per run")
    s.add_argument("--seconds", type=_positive, default=30, help="spread mode: measured window")
    s.add_argument("--nodes", type=_positive, nargs="+", default=[1, 2], help="dwtrio servers")
    s.add_argument("--modes", nargs="+", choices=["spread", "herd"], default=["spread", "herd"])
    s.add_argument("--every", type=_positive, default=10, help="spread mode: period in seconds")
    s.add_argument("--warmup", type=int, default=3, help="spread mode: seconds before the window")
    s.add_argument(
        "--herd-lead",
        type=float,
        default=None,
        help="herd mode: seconds from the first create to the herd's due second "
        "(default 10 + schedules / 50)",
    )
    s.add_argument(
        "--drain-timeout", type=_positive, default=120, help="longest wait past the window"
    )
    s.add_argument(
        "--scheduler-concurrency", type=_positive, default=None, help="DW_SCHEDULER_CONCURRENCY"
    )
    s.add_argument(
        "--runs", type=_positive, default=3, help="runs per point; the median is reported"
    )
    s.set_defaults(run=schedules.run)
    h = sub.add_parser(
        "history-follow", help="new event -> history long-poll follower latency (p50/p99)"
    )
    h.add_argument("--samples", type=_positive, default=300, help="signals per run")
    h.add_argument(
        "--runs", type=_positive, default=3, help="runs per point; the median is reported"
    )
    h.add_argument(
        "--server-processes",
        type=_positive,
        default=1,
        help="dwtrio processes sharing the socket (and the Redis bus of --redis-url)",
    )
    h.set_defaults(run=history_follow.run)
    w = sub.add_parser(
        "cross-node-wakes",
        help="a start on node B waking a poll on node A through Redis and through Postgres "
        "LISTEN/NOTIFY, beside the same-node figure (needs --dsn; --redis-url for Redis)",
    )
    w.add_argument("--pollers", type=_positive, default=10, help="pollers parked on node A")
    w.add_argument("--samples", type=_positive, default=200, help="wakes per setup and round")
    w.add_argument(
        "--rounds",
        type=_positive,
        default=3,
        help="rounds over every setup, alternated; the median is reported",
    )
    w.set_defaults(run=cross_node_wakes.run)
    x = sub.add_parser(
        "history-export", help="streamed history export of a long run beside the paged history"
    )
    x.add_argument(
        "--events", type=_positive, default=100_000, help="events bulk-loaded on the long run"
    )
    x.add_argument(
        "--runs", type=_positive, default=3, help="runs per point; the median is reported"
    )
    x.set_defaults(run=history_export.run)
    v = sub.add_parser("visibility", help="filtered workflow lists over many runs (p50/p99)")
    v.add_argument(
        "--runs-count", type=_positive, default=1_000_000, help="runs bulk-loaded before timing"
    )
    v.add_argument("--samples", type=_positive, default=200, help="requests per list")
    v.add_argument("--batch", type=_positive, default=50_000, help="runs per load transaction")
    v.add_argument(
        "--runs",
        type=_positive,
        default=3,
        help="measuring rounds over the one load; the median is reported",
    )
    v.set_defaults(run=visibility.run)
    va = sub.add_parser(
        "visibility-archived",
        help="list statements with and without the archived filter, interleaved (p50/p99)",
    )
    va.add_argument("--runs-count", type=_positive, default=100_000, help="runs bulk-loaded")
    va.add_argument(
        "--archived-percent", type=int, default=1, help="share of the closed runs archived"
    )
    va.add_argument("--rounds", type=_positive, default=200, help="executions per list and mode")
    va.add_argument("--batch", type=_positive, default=50_000, help="runs per load transaction")
    va.set_defaults(run=visibility_archived.run)
    q = sub.add_parser(
        "task-queues", help="task-queue describe and list on a deep backlog (p50/p99)"
    )
    q.add_argument("--ready", type=_positive, default=100_000, help="ready tasks on the queue")
    q.add_argument("--leased", type=int, default=2_000, help="leased tasks on the queue")
    q.add_argument("--workers", type=_positive, default=300, help="registrations on the queue")
    q.add_argument("--queues", type=int, default=20, help="other, small queues")
    q.add_argument("--samples", type=_positive, default=300, help="requests of each kind")
    q.add_argument("--batch", type=_positive, default=20_000, help="tasks per load transaction")
    q.add_argument(
        "--runs",
        type=_positive,
        default=3,
        help="measuring rounds over the one load; the median is reported",
    )
    q.set_defaults(run=task_queues.run)
    om = sub.add_parser(
        "operator-metrics",
        help="operator metrics and system health over a million runs (p50/p99)",
    )
    om.add_argument("--runs-count", type=_positive, default=1_000_000, help="runs loaded")
    om.add_argument(
        "--tasks", type=int, default=20_000, help="open runs with a workflow task (1 in 11 leased)"
    )
    om.add_argument(
        "--queues", type=_positive, default=10, help="task queues the tasks spread over"
    )
    om.add_argument("--samples", type=_positive, default=300, help="requests of each kind")
    om.add_argument("--batch", type=_positive, default=50_000, help="runs per load transaction")
    om.add_argument(
        "--runs",
        type=_positive,
        default=3,
        help="measuring rounds over the one load; the median is reported",
    )
    om.set_defaults(run=operator_metrics.run)
    sk = sub.add_parser(
        "soak",
        help="mixed SDK load on two nodes for --duration, sampled every 10 s "
        "(RSS, fds, pool, table sizes); needs --dsn",
    )
    sk.add_argument("--duration", type=float, default=1800.0, help="seconds of load")
    sk.add_argument(
        "--rate", type=float, default=3.0, help="workflows started per second (children aside)"
    )
    sk.add_argument(
        "--retention-after",
        type=float,
        default=120.0,
        help="seconds after a run closes until the soak shifts it past retention",
    )
    sk.add_argument(
        "--vacuum-every",
        type=float,
        default=None,
        help="seconds between the soak's own VACUUMs of its database (0: none; default: "
        "60 when the server's autovacuum is off, else none)",
    )
    sk.add_argument("--out", default=None, help="directory for the CSV, JSON and PNG")
    sk.set_defaults(run=soak.run)
    r = sub.add_parser(
        "retention", help="prune rate of expired runs and wake latency while pruning"
    )
    r.add_argument(
        "--run-count", type=_positive, default=100_000, help="expired workflow runs to load"
    )
    r.add_argument("--events", type=_positive, default=20, help="history events per run")
    r.add_argument("--batch", type=_positive, default=100, help="runs per prune transaction")
    r.add_argument("--pollers", type=_positive, default=50, help="parked pollers")
    r.add_argument("--samples", type=_positive, default=100, help="wakes per latency batch")
    r.add_argument(
        "--pass-limit", type=_positive, default=200, help="runs per retention pass request"
    )
    r.add_argument("--max-batches", type=_positive, default=60, help="most latency batch pairs")
    r.add_argument(
        "--max-seconds", type=_positive, default=600, help="longest the pruning may take"
    )
    r.set_defaults(run=retention.run)
    ba = sub.add_parser(
        "bars",
        help="the issue-19 bars: runs their benchmarks in this invocation, each beside its "
        "reference, and prints PASS/MISS per bar (about 10-15 minutes at the defaults)",
    )
    ba.add_argument(
        "--only",
        nargs="+",
        choices=list(bars.GROUPS),
        default=list(bars.GROUPS),
        help="bar groups to measure, in this order (default: all)",
    )
    ba.add_argument(
        "--runs", type=_positive, default=3, help="runs per point; the median is reported"
    )
    ba.add_argument(
        "--pollers", type=_positive, nargs="+", default=[100, 1000], help="wake: parked pollers"
    )
    ba.add_argument(
        "--samples", type=_positive, default=200, help="wake: wakes; backlog: claims, per run"
    )
    ba.add_argument("--count", type=_positive, default=50, help="greeter: workflows per run")
    ba.add_argument(
        "--loops", type=_positive, nargs="+", default=[64], help="dispatch: worker loops"
    )
    ba.add_argument("--seconds", type=float, default=5.0, help="dispatch: window per run")
    ba.add_argument("--warmup", type=float, default=2.0, help="dispatch: seconds before each")
    ba.add_argument("--polls", type=_positive, default=10_000, help="idle-polls: open polls")
    ba.add_argument(
        "--backlog-sizes",
        type=_positive,
        nargs="+",
        default=[1_000, 1_000_000],
        help="backlog: ready tasks (the bar compares the largest with the smallest)",
    )
    ba.set_defaults(run=bars.run)
    br = sub.add_parser(
        "bridges",
        help="ways of running asyncpg under Trio (trio-asyncio, a thread, uvloop in a thread): "
        "CPU and latency per transaction; needs --dsn",
    )
    br.add_argument("--bridges", nargs="+", choices=bridges.BRIDGES, default=list(bridges.BRIDGES))
    br.add_argument("--count", type=_positive, default=3000, help="transactions per measurement")
    br.add_argument("--concurrency", type=_positive, default=16, help="operations at once")
    br.add_argument("--runs", type=_positive, default=2, help="rounds over the bridges")
    br.set_defaults(run=bridges.run)
    pf = sub.add_parser(
        "profile",
        help="where a server's CPU went: summarise the py-spy samples a benchmark run with "
        f"{PROFILE_ENV}=<dir> left there",
    )
    pf.add_argument("files", nargs="+", type=Path, help="collapsed-stack files (<dir>/*.txt)")
    pf.set_defaults(run=lambda args: print(profile.report(profile.summarise(args.files))))
    return parser


def main() -> None:
    args = build_parser().parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
