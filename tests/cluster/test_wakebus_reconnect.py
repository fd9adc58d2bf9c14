"""The Redis wake bus through Redis outages (``matching/wakebus.py``).

A Redis of the test's own (a throwaway ``redis-server``, or fakeredis's TCP
server where none is installed) is stopped and started again on the same port.
The bus says once that it reconnected, and a later outage is retried from the
shortest backoff again, not from the cap the first outage reached.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
import trio_asyncio

from dwtrio.matching.waiters import WaiterSet
from dwtrio.matching.wakebus import RedisWakeBus

from conftest import free_port

BACKOFF_MAX_S = 4.0


class RestartableRedis:
    """A Redis on a fixed loopback port that can be stopped and started again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None
        self._fake: Any = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary:
            args = [binary, "--bind", "127.0.0.1", "--port", str(self.port)]
            args += ["--save", "", "--appendonly", "no"]
            self._proc = subprocess.Popen(args, cwd=self._workdir, stdout=subprocess.DEVNULL)
        else:
            from fakeredis import TcpFakeServer

            TcpFakeServer.allow_reuse_address = True
            self._fake = TcpFakeServer(("127.0.0.1", self.port), server_type="redis")
            threading.Thread(target=self._fake.serve_forever, daemon=True).start()
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise AssertionError("redis did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None
        if self._fake is not None:
            self._fake.shutdown()
            self._fake.server_close()
            self._fake = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    server = RestartableRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def wait_for(condition: Any, timeout_s: float) -> float:
    """Seconds until ``condition()`` holds (fails after ``timeout_s``)."""
    began = trio.current_time()
    with trio.fail_after(timeout_s):
        while not condition():
            await trio.sleep(0.02)
    return trio.current_time() - began


async def test_the_bus_logs_its_reconnection_once_and_starts_each_outage_afresh(
    own_redis: RestartableRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dwtrio.matching.wakebus")
    bus = RedisWakeBus(WaiterSet(), own_redis.url, backoff_max_s=BACKOFF_MAX_S)
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        await wait_for(lambda: bus.connected, 10)

        # A first outage long enough for the retries to reach the cap.
        await trio.to_thread.run_sync(own_redis.stop)
        await wait_for(lambda: not bus.connected, 15)
        await trio.sleep(BACKOFF_MAX_S * 1.5)
        await trio.to_thread.run_sync(own_redis.start)
        await wait_for(lambda: bus.connected, BACKOFF_MAX_S + 5)
        reconnected = [r for r in caplog.records if "reconnected" in r.getMessage()]
        assert len(reconnected) == 1
        assert bus.health() == {"status": "ok", "store": "redis"}

        # A short second outage: retried from the shortest backoff, so the bus is back
        # well before the cap the first outage reached would have let it look again.
        await trio.to_thread.run_sync(own_redis.stop)
        await wait_for(lambda: not bus.connected, 15)
        await trio.sleep(0.3)
        await trio.to_thread.run_sync(own_redis.start)
        took = await wait_for(lambda: bus.connected, BACKOFF_MAX_S + 5)
        assert took < 1.5
        reconnected = [r for r in caplog.records if "reconnected" in r.getMessage()]
        assert len(reconnected) == 2
        nursery.cancel_scope.cancel()
