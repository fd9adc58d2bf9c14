"""One client process of the connection storm in tests/drills/test_abuse.py.

    python conn_storm.py PORT COUNT SOURCES CONNECT_S ANSWER_S

Opens COUNT TCP connections to 127.0.0.1:PORT at once, spread over the loopback
source addresses in SOURCES (comma separated, e.g. ``127.0.0.2,127.0.0.3``; the
local port is picked per destination, so every source has the whole ephemeral
range). Each connect may take CONNECT_S seconds. On every connection it sends
``GET /api/live`` and waits up to ANSWER_S seconds for the status line. A
connection the server admitted answers; one it turned away (over
DW_MAX_CONNECTIONS) is closed or reset without an answer. Every connection stays
open until all of them have their outcome, so the admitted ones keep the server
at its cap for the whole storm. Prints one JSON line of counts.

The process raises its own soft RLIMIT_NOFILE to its hard limit; the parent splits
the storm so that COUNT fits under it.
"""

from __future__ import annotations

import errno
import json
import resource
import socket
import sys
from collections import Counter

import trio

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
LIVE = b"GET /api/live HTTP/1.1\r\nHost: drill\r\n\r\n"
HOLD_MAX_S = 90.0


async def read_status(sock: trio.socket.SocketType) -> str:
    """The status code of the response, or ``closed`` when the server hung up first."""
    data = b""
    while b"\r\n" not in data:
        chunk = await sock.recv(4096)
        if not chunk:
            return "closed"
        data += chunk
    return data.split(b" ", 2)[1].decode()


async def storm(
    port: int, count: int, sources: list[str], connect_s: float, answer_s: float
) -> dict[str, object]:
    """The storm; prints its report, then holds the connections until released."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    outcomes: Counter[str] = Counter()
    open_sockets: list[trio.socket.SocketType] = []
    connect_deadline = trio.current_time() + connect_s

    async def one(source: str) -> None:
        sock = trio.socket.socket()
        open_sockets.append(sock)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        try:
            await sock.bind((source, 0))
            with trio.fail_at(connect_deadline):
                await sock.connect(("127.0.0.1", port))
        except trio.TooSlowError:
            outcomes["connect timed out"] += 1
            return
        except OSError as exc:
            outcomes["connect " + errno.errorcode.get(exc.errno or 0, "error")] += 1
            return
        try:
            with trio.fail_after(answer_s):
                await sock.send(LIVE)
                outcomes[await read_status(sock)] += 1
        except trio.TooSlowError:
            outcomes["no answer"] += 1
        except OSError:
            outcomes["closed"] += 1  # reset by the server

    started = trio.current_time()
    try:
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, sources[i % len(sources)])
        report = {
            "attempted": count,
            "outcomes": dict(sorted(outcomes.items())),
            "seconds": round(trio.current_time() - started, 2),
        }
        print(json.dumps(report), flush=True)
        with trio.move_on_after(HOLD_MAX_S):
            await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    finally:
        for sock in open_sockets:
            sock.close()
    return report


if __name__ == "__main__":
    port, count, sources, connect_s, answer_s = sys.argv[1:6]
    trio.run(storm, int(port), int(count), sources.split(","), float(connect_s), float(answer_s))
