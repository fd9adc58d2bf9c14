"""bench request-cost drives a real server with its hand-made HTTP/1.1 client.

The benchmark's figures are only as good as its client: this runs one short
round against an in-process server and checks every kind of request got the
answer it expects (the client asserts statuses) and that the figures are sane.
"""

from __future__ import annotations

import psutil
import trio

from bench.harness import _NoProgress
from bench.request_cost import KINDS, one_run

from conftest import StartServer


async def test_one_round_of_every_kind(start_server: StartServer) -> None:
    server = await start_server(auth_driver="none")
    figures = await trio.to_thread.run_sync(
        one_run, server.url, [psutil.Process()], 5, _NoProgress()
    )
    assert list(figures) == KINDS
    for kind in KINDS:
        assert 0 < figures[kind]["p50_ms"] < 5_000, (kind, figures[kind])
        assert figures[kind]["server_cpu_ms"] >= 0
