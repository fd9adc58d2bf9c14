"""Connections: a client's close frees its socket at once; the connection cap;
running out of file descriptors (issue 12, item 6).

Everything runs on loopback against a real server: in-process for the first
two, a ``dwtrio serve`` child with a low ``RLIMIT_NOFILE`` for the last (the
limit is per process). Counts and waits are bounded.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import trio

from dwtrio.errors import SettingsError
from dwtrio.http.server import default_max_connections
from dwtrio.settings import Settings

from conftest import RunningServer, StartServer, free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sockets")

HEALTH_REQUEST = b"GET /api/health HTTP/1.1\r\nHost: test\r\n\r\n"


def server_port(server: RunningServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def server_side_sockets(port: int, pid: int | None = None) -> list[str]:
    """States of the TCP sockets the server process holds for connections on ``port``."""
    return [
        c.status
        for c in psutil.Process(pid).net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN
    ]


async def connect(port: int) -> trio.socket.SocketType:
    sock = trio.socket.socket()
    try:
        await sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


async def read_response(sock: trio.socket.SocketType) -> tuple[int, bytes]:
    """One whole HTTP/1.1 response with a Content-Length (what /api/health sends)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
    )
    while len(body) < length:
        chunk = await sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(lines[0].split()[1]), body


async def closed_by_server(sock: trio.socket.SocketType) -> bool:
    """Whether the server ends this connection (EOF or reset) within a second."""
    with trio.move_on_after(1):
        try:
            return await sock.recv(1) == b""
        except ConnectionResetError:
            return True
    return False


async def health_within(url: str, seconds: float) -> float:
    """Seconds until ``GET /api/health`` answers 200 on a new connection; fails after ``seconds``."""
    start = trio.current_time()
    with trio.fail_after(seconds):
        while True:
            try:
                async with httpx.AsyncClient(base_url=url, timeout=0.5) as c:
                    if (await c.get("/api/health")).status_code == 200:
                        return trio.current_time() - start
            except httpx.HTTPError:
                pass
            await trio.sleep(0.02)


async def settle(port: int, pid: int | None = None, seconds: float = 1.0) -> list[str]:
    await trio.sleep(seconds)
    return server_side_sockets(port, pid)


# --- a client's close frees the server's socket --------------------------------------------
async def test_connect_then_close_leaves_no_socket_behind(server: RunningServer) -> None:
    """1,000 clients that connect and hang up without a byte: nothing left after 1 s.

    Hypercorn 0.18 held each such socket in CLOSE_WAIT for the whole keep-alive
    timeout (75 s), enough to run a server out of descriptors (docs/hypercorn.md).
    """
    port = server_port(server)
    for _ in range(1000):
        (await connect(port)).close()
    assert await settle(port) == []


async def test_close_after_a_request_leaves_no_socket_behind(server: RunningServer) -> None:
    """The same for a keep-alive connection that its client closes after an answer."""
    port = server_port(server)
    for _ in range(100):
        sock = await connect(port)
        await sock.send(HEALTH_REQUEST)
        assert (await read_response(sock))[0] == 200
        await trio.sleep(0.005)  # the server is idle on it (keep-alive) when the FIN comes
        sock.close()
    assert await settle(port) == []


async def test_idle_keep_alive_connection_stays_open(server: RunningServer) -> None:
    """Connections whose client stays are not closed early: a pooled client reuses one."""
    port = server_port(server)
    sock = await connect(port)
    try:
        for _ in range(3):
            await sock.send(HEALTH_REQUEST)
            assert (await read_response(sock))[0] == 200
            await trio.sleep(0.3)
        assert server_side_sockets(port) == [psutil.CONN_ESTABLISHED]
    finally:
        sock.close()
    assert await settle(port, seconds=0.5) == []


async def test_a_parked_poll_whose_client_leaves_frees_its_connection(
    start_server: StartServer,
) -> None:
    """The long-poll road still notices its client leaving (matching/waiters.py) and
    the connection closes with it."""
    server = await start_server(auth_driver="none")
    port = server_port(server)
    body = b'{"worker_id": "leaver", "task_queue": "q-leave", "timeout_seconds": 20}'
    sock = await connect(port)
    await sock.send(
        b"POST /api/worker/workflow-tasks/poll HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: application/json\r\nX-Durable-Workflow-Protocol-Version: 1.20\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await trio.sleep(0.5)  # parked
    assert server_side_sockets(port) == [psutil.CONN_ESTABLISHED]
    sock.close()
    assert await settle(port) == []


def test_the_default_cap_leaves_descriptors_for_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    for soft, pool, cap in [(1024, 16, 906), (20000, 16, 17984), (256, 16, 176), (64, 16, 1)]:
        monkeypatch.setattr(resource, "getrlimit", lambda _kind, soft=soft: (soft, soft))
        assert default_max_connections(pool) == cap
    with pytest.raises(SettingsError):
        Settings.from_env({"DW_MAX_CONNECTIONS": "0"})
    assert Settings.from_env({"DW_MAX_CONNECTIONS": "50"}).max_connections == 50


# --- the connection cap --------------------------------------------------------------------
async def test_connections_over_the_cap_are_closed_with_one_log_line(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dwtrio.http.server")
    server = await start_server(max_connections=4)
    port = server_port(server)
    held = [await connect(port) for _ in range(4)]
    await trio.sleep(0.2)  # all four accepted
    extra = [await connect(port) for _ in range(10)]
    try:
        for sock in extra:
            assert await closed_by_server(sock)
        # the four under the cap still work
        for sock in held:
            await sock.send(HEALTH_REQUEST)
            assert (await read_response(sock))[0] == 200
    finally:
        for sock in held + extra:
            sock.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "dwtrio.http.server"]
    assert len(lines) == 1, lines
    assert "DW_MAX_CONNECTIONS=4" in lines[0] and "4 connections open" in lines[0], lines
    await health_within(server.url, 2)


def refusal_seconds(port: int, count: int, limit_s: float) -> float:
    """Open ``count`` connections at once (blocking sockets, in a thread) and return the
    seconds until the server has closed every one; fails after ``limit_s``."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    start = time.monotonic()
    try:
        for sock in socks:
            sock.settimeout(max(0.001, limit_s - (time.monotonic() - start)))
            try:
                assert sock.recv(1) == b"", "a connection over the cap got data"
            except ConnectionResetError:
                pass
            except TimeoutError:
                raise AssertionError(f"connections still open after {limit_s} s") from None
        return time.monotonic() - start
    finally:
        for sock in socks:
            sock.close()


async def test_a_busy_server_turns_connections_away_in_bursts(
    start_server: StartServer,
) -> None:
    """Over the cap, a storm of connections is closed within a few scheduler passes even
    when each pass is slow (thousands of busy connections): Trio's listener accepted one
    connection per pass, so 500 took 500 passes while the backlog filled up."""
    server = await start_server(max_connections=1)
    port = server_port(server)
    pass_s = 0.005

    async def slow_passes() -> None:
        while True:
            time.sleep(pass_s)  # every pass of the scheduler takes at least this long
            await trio.sleep(0)

    held = await connect(port)
    try:
        await trio.sleep(0.2)  # admitted: the cap is reached
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_passes)
            seconds = await trio.to_thread.run_sync(refusal_seconds, port, 500, 2.0)
            nursery.cancel_scope.cancel()
    finally:
        held.close()
    print(f"500 connections over the cap closed in {seconds:.3f} s")
    assert seconds < 100 * pass_s, seconds  # one pass per connection would be 500 of them


# --- running out of file descriptors -------------------------------------------------------
FD_LIMIT = 160
LIMITED_SERVE = (
    "import resource, runpy, sys\n"
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, {FD_LIMIT}))\n"
    "sys.argv = ['dwtrio', 'serve']\n"
    "runpy.run_module('dwtrio', run_name='__main__')\n"
)


async def test_descriptor_exhaustion_degrades_gracefully(db_dsn: str, tmp_path: Path) -> None:
    """Clients hold more connections than the server has descriptors for.

    While they do, accept fails with EMFILE: the log says so once, without a
    traceback per retry. Once they close, the server answers again at once.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DW_", "DWTRIO_"))}
    env.update(
        DW_DATABASE_URL=db_dsn,
        DW_BIND=f"127.0.0.1:{port}",
        DW_AUTH_DRIVER="none",
        DW_AUTO_BOOTSTRAP="false",
        DW_DB_POOL_MIN_SIZE="2",
        DW_DB_POOL_MAX_SIZE="2",
        DW_MAX_CONNECTIONS="100000",  # far above the limit: accept itself must fail
        DW_LOG_LEVEL="info",
    )
    with log.open("wb") as out:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", LIMITED_SERVE],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    clients: list[trio.socket.SocketType] = []
    try:
        await health_within(url, 60)  # started (and the first request's imports done)
        for _ in range(FD_LIMIT + 60):
            clients.append(await connect(port))  # the kernel completes them all (backlog)
        await trio.sleep(1.5)  # about 15 failed accepts
        assert "EMFILE" in log.read_text(errors="replace"), "the limit was never reached"
        for sock in clients:
            sock.close()
        clients.clear()
        recovered_s = await health_within(url, 2)
        print(f"health answered {recovered_s:.3f} s after the clients closed")
        assert await settle(port, proc.pid, seconds=0.5) == []
    finally:
        for sock in clients:
            sock.close()
        proc.terminate()
        with trio.move_on_after(20):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output[-4000:]
    accept_lines = [line for line in output.splitlines() if "EMFILE" in line]
    assert 1 <= len(accept_lines) <= 2, accept_lines
