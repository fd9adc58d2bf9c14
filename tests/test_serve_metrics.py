"""`dwtrio serve` with DW_METRICS_BIND, in one process and in several (DW_WORKERS=2).

With several processes sharing the port, a request lands on any of them; a
scrape, of the separate listener (run by the parent) or of the main port (any
child), must add up every process's counts (prometheus_client's multiprocess
mode).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from test_serve import Serve, free_port, serve_proc  # noqa: F401  # serve_proc: a fixture

from conftest import CP

REQUESTS = 30

pytestmark = pytest.mark.slow


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def namespaces_on_fresh_connections(s: Serve, count: int) -> None:
    """``count`` control-plane requests, each on its own connection (so that with
    several processes they spread over them)."""
    for _ in range(count):
        async with s.client() as c:
            r = await c.get("/api/namespaces", headers=CP)
            assert r.status_code == 200, r.text


async def test_separate_listener_single_process(
    tmp_path: Path,
    serve_proc: Callable[..., Serve],  # noqa: F811  # the fixture imported above
    db_dsn: str,
) -> None:
    port = free_port()
    s = await serve_proc(
        tmp_path / "data", DW_DATABASE_URL=db_dsn, DW_METRICS_BIND=f"127.0.0.1:{port}"
    ).start()
    await s.wait_ready()
    await namespaces_on_fresh_connections(s, 3)
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{port}/metrics")  # no credential needed here
    assert r.status_code == 200
    assert total(r.text, "dwtrio_http_requests_total", route="/api/namespaces") == 3
    assert total(r.text, "process_cpu_seconds_total") > 0
    async with s.client(token=None) as c:
        assert (await c.get("/metrics")).status_code == 401  # the main port still asks
    code, _ = await s.stop()
    assert code == 0


async def test_several_processes_add_up(
    tmp_path: Path,
    serve_proc: Callable[..., Serve],  # noqa: F811  # the fixture imported above
    db_dsn: str,
) -> None:
    port = free_port()
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    s = await serve_proc(
        tmp_path / "data",
        DW_DATABASE_URL=db_dsn,
        DW_WORKERS="2",
        DW_METRICS_BIND=f"127.0.0.1:{port}",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
    ).start()
    await s.wait_ready()
    # Both processes serve (each writes its own files once it counts something).
    with trio.fail_after(30):
        while len(list(multiproc.glob("counter_*.db"))) < 2:
            await namespaces_on_fresh_connections(s, 5)
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{port}/metrics")
    assert r.status_code == 200
    base = total(r.text, "dwtrio_http_requests_total", route="/api/namespaces")
    await namespaces_on_fresh_connections(s, REQUESTS)
    async with httpx.AsyncClient() as c:
        separate = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    assert total(separate, "dwtrio_http_requests_total", route="/api/namespaces") == base + REQUESTS
    # The main port answers from whichever process: the same sums (plus its own scrape).
    async with s.client() as c:
        r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    assert total(r.text, "dwtrio_http_requests_total", route="/api/namespaces") == base + REQUESTS
    assert total(r.text, "dwtrio_polls_open") == 0
    code, _ = await s.stop()
    assert code == 0
