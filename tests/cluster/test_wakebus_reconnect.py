"""The Redis wake bus through Redis outages (``matching/wakebus.py``).

A Redis of the test's own (a throwaway ``redis-server``, or fakeredis's TCP
server where none is installed) is stopped and started again on the same port.
The bus says once that it reconnected, and a later outage is retried from the
shortest backoff again, not from the cap the first outage reached.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis
import trio

from dwtrio.matching.waiters import WaiterSet
from dwtrio.matching.wakebus import RedisWakeBus
from dwtrio.store import bridge

BACKOFF_MAX_S = 4.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


async def wait_for(condition: Any, timeout_s: float) -> float:
    """Seconds until ``condition()`` holds (fails after ``timeout_s``)."""
    began = trio.current_time()
    with trio.fail_after(timeout_s):
        while not condition():
            await trio.sleep(0.02)
    return trio.current_time() - began


async def scenario(workdir: Path) -> dict[str, Any]:
    """The two outages (run in a process of its own, see the test); returns what it saw."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    wakebus_log = logging.getLogger("dwtrio.matching.wakebus")
    wakebus_log.addHandler(Collect(logging.WARNING))
    wakebus_log.setLevel(logging.WARNING)
    own_redis = RestartableRedis(workdir)
    own_redis.start()
    out: dict[str, Any] = {}
    try:
        bus = RedisWakeBus(WaiterSet(), own_redis.url, backoff_max_s=BACKOFF_MAX_S)
        async with bridge.open_loop(), trio.open_nursery() as nursery:
            await nursery.start(bus.run)
            await wait_for(lambda: bus.connected, 10)

            # A first outage long enough for the retries to reach the cap.
            await trio.to_thread.run_sync(own_redis.stop)
            await wait_for(lambda: not bus.connected, 15)
            await trio.sleep(BACKOFF_MAX_S * 1.5)
            await trio.to_thread.run_sync(own_redis.start)
            await wait_for(lambda: bus.connected, BACKOFF_MAX_S + 5)
            out["reconnected_first"] = sum("reconnected" in r for r in records)
            out["health"] = bus.health()

            # A short second outage: retried from the shortest backoff, so the bus is
            # back well before the cap the first outage reached would let it look again.
            await trio.to_thread.run_sync(own_redis.stop)
            await wait_for(lambda: not bus.connected, 15)
            await trio.sleep(0.3)
            await trio.to_thread.run_sync(own_redis.start)
            out["second_took_s"] = await wait_for(lambda: bus.connected, BACKOFF_MAX_S + 5)
            out["reconnected_second"] = sum("reconnected" in r for r in records)
            nursery.cancel_scope.cancel()
        out["stopped"] = True
    finally:
        own_redis.stop()
    return out


async def test_the_bus_logs_its_reconnection_once_and_starts_each_outage_afresh(
    tmp_path: Path,
) -> None:
    """In a process of its own: this test runs a bus and an asyncio loop of its own, and
    in the long-lived test process that runs the cluster tests one after another the
    loop's shutdown twice never ended after the second outage (not seen in a process of
    its own, where a server runs). The process must still stop within its bound."""
    with trio.fail_after(90):
        done = await trio.run_process(
            [sys.executable, __file__, str(tmp_path)], capture_stdout=True, check=False
        )
    assert done.returncode == 0, done
    out = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert out["reconnected_first"] == 1
    assert out["health"] == {"status": "ok", "store": "redis"}
    assert out["second_took_s"] < 1.5
    assert out["reconnected_second"] == 2
    assert out["stopped"] is True


if __name__ == "__main__":
    print(json.dumps(trio.run(scenario, Path(sys.argv[1]))))
