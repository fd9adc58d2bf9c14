"""``python -m bench <subcommand>``: dwtrio's benchmark harness (loopback only, bounded).

Postgres: ``--dsn`` (or DWTRIO_BENCH_DSN) names an admin DSN on which a fresh
database is created and dropped; without it the server uses its embedded
Postgres. Results go to bench/results/ (JSON + PNG).
"""

from __future__ import annotations

import argparse
import os

from bench import backlog_scaling, open_polls, poll_latency, sdk_greeter, throughput


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "--dsn", default=os.environ.get("DWTRIO_BENCH_DSN"), help="admin Postgres DSN"
    )
    parser.add_argument("--server-workers", type=int, default=1, help="dwtrio server processes")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("poll-latency", help="task creation -> parked poller wake latency")
    p.add_argument("--pollers", type=int, nargs="+", default=[1, 100])
    p.add_argument("--samples", type=int, default=300)
    p.set_defaults(run=poll_latency.run)
    g = sub.add_parser("sdk-greeter", help="official SDK greeter end to end")
    g.add_argument("--count", type=int, default=100)
    g.add_argument("--concurrency", type=int, nargs="+", default=[1])
    g.set_defaults(run=sdk_greeter.run)
    o = sub.add_parser(
        "open-polls", help="memory per idle long-poll; latency of other requests meanwhile"
    )
    o.add_argument("--polls", type=int, default=10_000)
    o.set_defaults(run=open_polls.run)
    t = sub.add_parser(
        "dispatch-throughput", help="activity poll+complete cycles/s against a backlog"
    )
    t.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    t.add_argument("--server-processes", type=int, nargs="+", default=[1, 2])
    t.add_argument("--seconds", type=float, default=10.0)
    t.add_argument("--load-processes", type=int, default=2)
    t.add_argument("--redis-url", default=os.environ.get("DWTRIO_BENCH_REDIS_URL"))
    t.set_defaults(run=throughput.run)
    b = sub.add_parser("backlog-scaling", help="claim latency against 1k / 100k / 1M ready tasks")
    b.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    b.add_argument("--samples", type=int, default=300)
    b.set_defaults(run=backlog_scaling.run)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
