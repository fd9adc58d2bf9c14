"""The abuse and bad-input drill (issue 18, item 7), from outside a real ``dwtrio serve``.

Two server processes on one database, on loopback:

* node A, token auth with a distinct worker, operator and admin token and a cap of
  :data:`CAP` connections: the connection storm, bad bodies and headers, the whole
  role matrix, namespaces and the poll storm;
* node B, the signature driver with one key per role and short clocks
  (``DW_KEEP_ALIVE_TIMEOUT_SECONDS=3``, ``DW_BODY_TIMEOUT_SECONDS=3``): forged,
  tampered and replayed signatures, and slowloris clients.

Every input class is one :class:`Row`: what was sent, the documented answer, and a
count of each answer observed. A row fails when an answer it does not allow shows
up, and the drill fails on any 5xx. Node A's memory and descriptors are sampled
throughout; at the end both nodes must still be alive and ready, stop cleanly on
SIGTERM, and have logged no traceback. With ``DWTRIO_FIGURES_DIR`` set the matrix
is written to ``abuse.json`` there (docs/reliability.md shows one run).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import resource
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import orjson
import psutil
import pytest
import trio
from cluster.processes import NodeProcess, node_env

from dwtrio.http.openapi_document import OPERATIONS, Operation

from conftest import CP, WP, client_ssl_context, free_port

pytestmark = [
    pytest.mark.drill,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="loopback source addresses are Linux's"
    ),
]

TOKENS = {role: f"drill-{role}-token" for role in ("worker", "operator", "admin")}
KEYS = {role: f"drill-{role}-key" for role in ("worker", "operator", "admin")}
CAP = 2_000  # DW_MAX_CONNECTIONS of node A
STORM = 20_000  # connections opened at once
SLOW_CLOCK_S = 3.0  # node B's keep-alive and body timeouts
BOTH = {**CP, **WP}
JSON_CT = {"Content-Type": "application/json"}


# --- the matrix -------------------------------------------------------------------------
@attrs.define(eq=False)
class Row:
    """One input class: what was sent, what the protocol documents, what came back."""

    input_class: str
    sent: str
    expected: str
    #: Whether an answer (an :func:`answer_key`) is one this row allows.
    allows: Callable[[str], bool]
    observed: Counter[str] = attrs.field(factory=Counter)
    note: str = ""

    def record(self, key: str) -> None:
        self.observed[key] += 1

    @property
    def five_xx(self) -> int:
        return sum(n for key, n in self.observed.items() if key[:1] == "5")

    @property
    def unexpected(self) -> dict[str, int]:
        return {key: n for key, n in self.observed.items() if not self.allows(key)}

    def as_json(self) -> dict[str, Any]:
        return {
            "input_class": self.input_class,
            "sent": self.sent,
            "expected": self.expected,
            "observed": dict(self.observed.most_common()),
            "five_xx": self.five_xx,
            "note": self.note,
        }


def exactly(*keys: str) -> Callable[[str], bool]:
    return lambda key: key in keys


def not_refused(key: str) -> bool:
    """An allowed role's call: any answer but 401, 403 or 5xx (a 4xx about the body is fine)."""
    return key[:3] not in ("401", "403") and key[:1] in ("2", "4")


@attrs.define(eq=False)
class Matrix:
    rows: list[Row] = attrs.field(factory=list)

    def row(
        self,
        input_class: str,
        sent: str,
        expected: str,
        allows: Callable[[str], bool],
        note: str = "",
    ) -> Row:
        row = Row(input_class, sent, expected, allows, note=note)
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        lines = [
            "| Input | Sent | Expected | Observed | 5xx |",
            "|---|---|---|---|---|",
        ]
        for r in self.rows:
            observed = ", ".join(f"{key} x{n:,}" for key, n in r.observed.most_common())
            lines.append(
                f"| {r.input_class} | {r.sent} | {r.expected} | {observed} | {r.five_xx} |"
            )
        return "\n".join(lines)


def answer_key(status: int, body: bytes) -> str:
    """``200``, ``404 namespace_not_found`` (the error's reason), ``400 (no body)``."""
    if status < 400:
        return str(status)
    if not body:
        return f"{status} (no body)"
    try:
        reason = orjson.loads(body).get("reason")
    except (orjson.JSONDecodeError, AttributeError):
        reason = None
    return f"{status} {reason}" if reason else f"{status} (not the error envelope)"


def key_of(r: httpx.Response) -> str:
    return answer_key(r.status_code, r.content)


# --- raw HTTP/1.1 over one connection -----------------------------------------------------
@attrs.frozen
class RawAnswer:
    status: int | None  # None: no status line came
    body: bytes
    #: The server closed the connection (after its answer, or instead of one).
    closed: bool
    #: Until the answer was complete (or the connection closed, or time ran out).
    seconds: float

    @property
    def key(self) -> str:
        if self.status is None:
            return "closed, no answer" if self.closed else "no answer"
        key = answer_key(self.status, self.body)
        return f"{key}; closed" if self.closed else key


async def receive(stream: trio.SocketStream) -> bytes:
    try:
        return await stream.receive_some(65536)
    except trio.BrokenResourceError:  # reset
        return b""


async def raw_exchange(
    port: int, parts: Sequence[bytes], *, pause_s: float = 0.0, timeout_s: float = 10.0
) -> RawAnswer:
    """Send ``parts`` (``pause_s`` apart) on a new connection while reading the answer:
    one response (its status and body), then whether the server closes within 0.5 s."""
    start = trio.current_time()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    data, status, body, eof = b"", None, b"", False
    seconds = math.inf

    async def send_parts() -> None:
        try:
            for i, part in enumerate(parts):
                if i and pause_s:
                    await trio.sleep(pause_s)
                await stream.send_all(part)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the server hung up on us

    try:
        with trio.move_on_after(timeout_s):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_parts)
                while b"\r\n\r\n" not in data and not eof:
                    chunk = await receive(stream)
                    eof = not chunk
                    data += chunk
                if b"\r\n\r\n" in data:
                    head, _, body = data.partition(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    status = int(lines[0].split()[1])
                    length = next(
                        (
                            int(x.split(":", 1)[1])
                            for x in lines
                            if x.lower().startswith("content-length:")
                        ),
                        0,
                    )
                    while len(body) < length and not eof:
                        chunk = await receive(stream)
                        eof = not chunk
                        body += chunk
                    seconds = trio.current_time() - start
                    with trio.move_on_after(0.5):
                        while not eof:
                            eof = not await receive(stream)
                nursery.cancel_scope.cancel()
        if status is None:
            seconds = trio.current_time() - start
        return RawAnswer(status, body, eof, seconds)
    finally:
        await stream.aclose()


def request_head(method: str, target: bytes, headers: dict[str, str], extra: bytes = b"") -> bytes:
    lines = [f"{method} ".encode() + target + b" HTTP/1.1", b"Host: drill"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


def post(target: str, headers: dict[str, str], body: bytes) -> bytes:
    head = request_head(
        "POST", target.encode(), {**JSON_CT, **headers, "Content-Length": str(len(body))}
    )
    return head + body


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def sign(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


# --- the two nodes --------------------------------------------------------------------------
@attrs.define(eq=False)
class Watch:
    """Node A's resident memory and open descriptors, sampled every 0.2 s."""

    proc: psutil.Process
    rss: list[int] = attrs.field(factory=list)
    fds: list[int] = attrs.field(factory=list)

    def sample(self) -> tuple[int, int]:
        rss, fds = self.proc.memory_info().rss, self.proc.num_fds()
        self.rss.append(rss)
        self.fds.append(fds)
        return rss, fds

    async def run(self) -> None:
        while True:
            self.sample()
            await trio.sleep(0.2)


def node(tmp_path: Path, name: str, dsn: str, **env: str) -> NodeProcess:
    port = free_port()
    return NodeProcess(
        server_id=name,
        port=port,
        env=node_env(
            DW_DATABASE_URL=dsn,
            DW_BIND=f"127.0.0.1:{port}",
            DW_SERVER_ID=name,
            DW_DB_POOL_MIN_SIZE="1",
            DW_DB_POOL_MAX_SIZE="8",
            DW_GRACEFUL_TIMEOUT_SECONDS="3",
            **env,
        ),
        log=tmp_path / f"{name}.log",
    )


@asynccontextmanager
async def running(*nodes: NodeProcess) -> AsyncIterator[None]:
    try:
        async with trio.open_nursery() as nursery:
            for n in nodes:
                nursery.start_soon(n.start)
        yield
    finally:
        with trio.CancelScope(shield=True):
            for n in nodes:
                if n.running:
                    await n.kill()


def client(n: NodeProcess, *, connections: int = 20, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=n.url,
        headers=headers,
        timeout=30,
        verify=client_ssl_context(),
        limits=httpx.Limits(max_connections=connections, keepalive_expiry=1.0),
    )


# --- node A: connections ---------------------------------------------------------------------
STORM_SCRIPT = Path(__file__).with_name("conn_storm.py")


async def connection_storm(m: Matrix, a: NodeProcess, watch: Watch) -> dict[str, Any]:
    """:data:`STORM` connections at once, split over client processes that each fit under
    the hard RLIMIT_NOFILE and use their own loopback source addresses."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    per_process = min(10_000, hard - 200)
    processes = math.ceil(STORM / per_process)
    assert processes <= 10, (
        f"the hard open-file limit ({hard}) is too low for {STORM:,} connections in at most "
        "10 client processes; raise it (ulimit -Hn) where the drill runs"
    )
    row = m.row(
        "Connection storm",
        f"{STORM:,} connections at once from {processes} processes, `GET /api/live` on each",
        f"up to DW_MAX_CONNECTIONS ({CAP:,}) served 200, the rest closed at accept",
        lambda key: key in ("200", "closed"),
    )
    fds_before = watch.sample()[1]
    reports: list[dict[str, Any]] = []
    reported = trio.Semaphore(0)
    release = trio.Event()

    async def one(i: int, count: int) -> None:
        """One client process: its report, then it holds until every process has reported."""
        sources = f"127.0.0.{2 * i + 2},127.0.0.{2 * i + 3}"
        command = [sys.executable, str(STORM_SCRIPT), str(a.port), str(count), sources, "25", "30"]
        proc = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stdin is not None
        try:
            line = b""
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some()
                assert chunk, f"storm client {i} exited with {await proc.wait()} before reporting"
                line += chunk
            reports.append(json.loads(line))
            reported.release()
            await release.wait()
            await proc.stdin.send_all(b"release\n")
            assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
                await proc.stdin.aclose()
                await proc.stdout.aclose()

    start = trio.current_time()
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            left = STORM
            for i in range(processes):
                count = min(per_process, left, math.ceil(STORM / processes))
                left -= count
                nursery.start_soon(one, i, count)
            for _ in range(processes):
                await reported.acquire()
            release.set()
    storm_s = trio.current_time() - start
    for report in reports:
        for key, n in report["outcomes"].items():
            row.observed[key] += n
    ready_after_s = await ready_within(a, 20)
    served = row.observed["200"]
    row.note = (
        f"{storm_s:.1f} s; node A peaked at {max(watch.fds):,} descriptors "
        f"({fds_before} before); /api/ready 200 {ready_after_s:.2f} s after"
    )
    assert sum(row.observed.values()) == STORM
    assert 0 < served <= CAP, row.observed
    assert max(watch.fds) <= fds_before + CAP + 16, max(watch.fds)
    return {
        "seconds": round(storm_s, 1),
        "ready_after_s": round(ready_after_s, 2),
        "clients": reports,
    }


async def ready_within(n: NodeProcess, seconds: float) -> float:
    start = trio.current_time()
    with trio.fail_after(seconds):
        while True:
            try:
                async with httpx.AsyncClient(base_url=n.url, timeout=1) as c:
                    if (await c.get("/api/ready")).status_code == 200:
                        return trio.current_time() - start
            except httpx.HTTPError:
                pass
            await trio.sleep(0.05)


# --- node A: bodies and headers --------------------------------------------------------------
def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


async def bad_bodies(m: Matrix, a: NodeProcess) -> None:
    cp = {**CP, **bearer("admin")}
    wp = {**WP, **bearer("worker")}
    routes = [("/api/namespaces", cp), ("/api/worker/register", wp)]
    too_large = exactly("413 payload_too_large; closed")

    row = m.row(
        "Oversized body",
        "`Content-Length: 10000000`, body never sent (control, worker)",
        "413 payload_too_large from the head, connection closed",
        too_large,
    )
    for target, headers in routes:
        head = request_head(
            "POST", target.encode(), {**JSON_CT, **headers, "Content-Length": "10000000"}
        )
        row.record((await raw_exchange(a.port, [head])).key)

    row = m.row(
        "Oversized body",
        "3 MiB sent with its `Content-Length` (control, worker)",
        "413 payload_too_large, connection closed",
        too_large,
    )
    big = b'"' + b"x" * (3 * 1024 * 1024) + b'"'
    for target, headers in routes:
        row.record((await raw_exchange(a.port, [post(target, headers, big)])).key)

    row = m.row(
        "Oversized body",
        "3 MiB chunked, no `Content-Length` (control, worker)",
        "413 payload_too_large, connection closed",
        too_large,
    )
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    for target, headers in routes:
        head = request_head(
            "POST", target.encode(), {**JSON_CT, **headers, "Transfer-Encoding": "chunked"}
        )
        parts = [head] + [chunk] * 48 + [b"0\r\n\r\n"]
        row.record((await raw_exchange(a.port, parts)).key)

    row = m.row(
        "Deep JSON",
        "arrays nested 100,000 and 1,000,000 deep, objects 50,000 deep (control, worker)",
        "400 malformed_json (at most 64 levels)",
        exactly("400 malformed_json"),
    )
    deep_object = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    for body in (nested(100_000), nested(1_000_000), deep_object):
        for target, headers in routes:
            row.record((await raw_exchange(a.port, [post(target, headers, body)])).key)

    row = m.row(
        "Invalid UTF-8",
        "in a JSON string of the body (control, worker)",
        "400 malformed_json",
        exactly("400 malformed_json"),
    )
    for target, headers in routes:
        body = b'{"name": "\xff\xfe", "worker_id": "\xc3\x28", "task_queue": "q"}'
        row.record((await raw_exchange(a.port, [post(target, headers, body)])).key)


async def bad_heads(m: Matrix, a: NodeProcess) -> None:
    cp = {**CP, **bearer("operator")}

    async def head(
        extra: bytes = b"",
        *,
        target: bytes = b"/api/workflows",
        headers: dict[str, str] = cp,
        body: bytes = b"",
    ) -> str:
        """A request with ``extra`` raw header lines (``body`` makes it a POST)."""
        if not body:
            return (await raw_exchange(a.port, [request_head("GET", target, headers, extra)])).key
        headers = {**headers, "Content-Length": str(len(body))}
        return (
            await raw_exchange(a.port, [request_head("POST", target, headers, extra) + body])
        ).key

    worker_post = {
        "target": b"/api/worker/register",
        "headers": {**bearer("worker"), **JSON_CT},
        "body": b"{}",
    }
    cases: list[tuple[str, bytes, dict[str, Any], str]] = [
        ("`X-Namespace`", b"X-Namespace: \xff\xfe\r\n", {}, "404 namespace_not_found"),
        (
            "`Authorization`",
            b"Authorization: Bearer \xff\xfe\r\n",
            {"headers": CP},
            "401 unauthorized",
        ),
        (
            "the control-plane version header",
            b"X-Durable-Workflow-Control-Plane-Version: \xff\r\n",
            {"headers": bearer("operator")},
            "400 unsupported_control_plane_version",
        ),
        (
            "the worker-plane version header",
            b"X-Durable-Workflow-Protocol-Version: \xff\r\n",
            worker_post,
            "400 unsupported_protocol_version",
        ),
        (
            "`Content-Type` of a body",
            b"Content-Type: application/\xffjson\r\n",
            {"target": b"/api/namespaces", "body": b"{}"},
            "415 unsupported_media_type",
        ),
    ]
    for where, extra, request, expected in cases:
        row = m.row("Invalid UTF-8", f"in {where}", expected, exactly(expected))
        row.record(await head(extra, **request))
    row = m.row(
        "Invalid UTF-8",
        "in `X-Request-Id`",
        "200, under an id the server makes up",
        exactly("200"),
    )
    row.record(await head(b"X-Request-Id: \xff\xfe\r\n"))
    row = m.row(
        "Invalid UTF-8",
        "raw bytes in the path",
        "400 from the HTTP parser, no body, connection closed",
        exactly("400 (no body); closed"),
    )
    row.record(await head(target=b"/api/workflows/\xff\xfe"))
    row = m.row(
        "Invalid UTF-8",
        "percent-encoded in the path and the `namespace` parameter",
        "404 (the id or namespace names nothing)",
        exactly("404 instance_not_found", "404 namespace_not_found"),
    )
    row.record(await head(target=b"/api/workflows/%ff%fe"))
    row.record(await head(target=b"/api/workflows?namespace=%ff%fe"))

    row = m.row(
        "Huge headers",
        "one 70 KB header (arrives in two reads)",
        "431 from the HTTP parser, no body, connection closed",
        exactly("431 (no body); closed"),
    )
    row.record(await head(b"X-Big: " + b"a" * 70_000 + b"\r\n"))
    row = m.row(
        "Huge headers",
        "one 20 KB header, 3,000 small headers (30 KB), 200 x 100 B cookies; one write each",
        "431 headers_too_large (16 KiB of head at most), connection closed",
        exactly("431 headers_too_large; closed"),
    )
    row.record(await head(b"X-Big: " + b"a" * 20_000 + b"\r\n"))
    row.record(await head(b"".join(b"X-H%04d: v\r\n" % i for i in range(3000))))
    row.record(await head(b"".join(b"Cookie: c%d=%s\r\n" % (i, b"v" * 90) for i in range(200))))
    row = m.row(
        "Huge headers",
        "500 small headers (7 KB)",
        "200 (under the limit)",
        exactly("200"),
    )
    row.record(await head(b"".join(b"X-H%03d: v\r\n" % i for i in range(500))))

    async def framed(headers: dict[str, str], body: bytes) -> str:
        start = request_head("POST", b"/api/namespaces", {**cp, **JSON_CT, **headers})
        return (await raw_exchange(a.port, [start + body])).key

    row = m.row(
        "Bad framing",
        "both `Content-Length` and `Transfer-Encoding` (a smuggling attempt's shape)",
        "400 ambiguous_framing, connection closed",
        exactly("400 ambiguous_framing; closed"),
    )
    body = b"2\r\n{}\r\n0\r\n\r\n"
    row.record(await framed({"Content-Length": "2", "Transfer-Encoding": "chunked"}, body))
    row = m.row(
        "Bad framing",
        "a negative `Content-Length`; a chunk size that is not hex",
        "400 from the HTTP parser, no body, connection closed",
        exactly("400 (no body); closed"),
    )
    row.record(await framed({"Content-Length": "-5"}, b""))
    row.record(await framed({"Transfer-Encoding": "chunked"}, b"zz\r\n{}\r\n0\r\n\r\n"))


# --- node A: the role matrix and namespaces ---------------------------------------------------
CREDENTIALS: dict[str, str | None] = {**TOKENS, "none": None, "garbage": "not-a-drill-token"}


def concrete(path: str) -> str:
    """An OpenAPI path with every parameter filled with a name that matches nothing."""
    return re.sub(
        r"\{[^}]+\}", lambda p: "drill-none" if p.group(0) == "{namespace}" else "drill-x", path
    )


def call_args(op: Operation, token: str | None, **headers: str) -> dict[str, Any]:
    sent = {**BOTH, **headers}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    args: dict[str, Any] = {"headers": sent}
    if op.method in ("POST", "PUT"):
        args["json"] = {}
    return args


async def role_matrix(m: Matrix, a: NodeProcess) -> dict[str, Any]:
    """Every operation of the OpenAPI table with each role's token, none and a garbage one."""
    public = m.row(
        "Role matrix",
        "public routes (probes, OpenAPI) with every credential, none and a garbage one",
        "200 (no authentication)",
        exactly("200"),
    )
    forbidden = m.row(
        "Role matrix",
        "every other route with each role's token where the route does not allow the role",
        "403 forbidden, naming the role and the route's allowed roles",
        exactly("403 forbidden"),
    )
    allowed = m.row(
        "Role matrix",
        "every other route with each role's token where the route allows the role, `{}` as body",
        "not 401/403 (a 4xx about the empty body or unknown ids is fine)",
        not_refused,
    )
    anonymous = m.row(
        "Role matrix",
        "every other route with no credential",
        "401 unauthorized",
        exactly("401 unauthorized"),
    )
    garbage = m.row(
        "Role matrix",
        "every other route with a token no role has",
        "401 unauthorized",
        exactly("401 unauthorized"),
    )
    calls: list[dict[str, Any]] = []
    limiter = trio.CapacityLimiter(8)

    async def call(c: httpx.AsyncClient, op: Operation, who: str) -> None:
        async with limiter:
            r = await c.request(op.method, concrete(op.path), **call_args(op, CREDENTIALS[who]))
        key = key_of(r)
        calls.append({"method": op.method, "path": op.path, "credential": who, "answer": key})
        if op.plane == "public":
            public.record(key)
        elif who == "none":
            anonymous.record(key)
        elif who == "garbage":
            garbage.record(key)
        elif not op.roles or who in op.roles:
            allowed.record(key)
        else:
            forbidden.record(key)
            body = r.json()
            assert (body.get("role"), body.get("allowed_roles")) == (who, list(op.roles)), (
                op.method,
                op.path,
                body,
            )

    async with client(a) as c, trio.open_nursery() as nursery:
        for op in OPERATIONS:
            for who in CREDENTIALS:
                nursery.start_soon(call, c, op, who)
    return {
        "operations": len(OPERATIONS),
        "calls": sorted(calls, key=lambda x: (x["path"], x["method"], x["credential"])),
    }


async def namespaces(m: Matrix, a: NodeProcess) -> None:
    unknown = m.row(
        "Namespace",
        "`X-Namespace: drill-ghost` (no such namespace) on every namespaced route, with a role it allows",
        "404 namespace_not_found",
        exactly("404 namespace_not_found"),
    )
    odd = m.row(
        "Namespace",
        "`X-Namespace` of 10,000 characters, with spaces; `?namespace=` unknown",
        "404 namespace_not_found",
        exactly("404 namespace_not_found"),
    )
    other = m.row(
        "Namespace",
        "another namespace's workflow: describe, signal, cancel, terminate it from `drill-b`",
        "404 instance_not_found (data stays in its namespace)",
        exactly("404 instance_not_found"),
        note="Tokens carry a role, not a namespace (auth-and-headers.md 4.2): any "
        "namespace is reachable, but its data only through that namespace.",
    )
    async with client(a) as c:
        for op in OPERATIONS:
            if not op.namespaced or op.plane not in ("control", "worker"):
                continue
            who = op.roles[0]
            r = await c.request(
                op.method,
                concrete(op.path),
                **call_args(op, TOKENS[who], **{"X-Namespace": "drill-ghost"}),
            )
            unknown.record(key_of(r))
        operator = call_args(OPERATIONS[0], TOKENS["operator"])["headers"]
        for headers, params in (
            ({"X-Namespace": "n" * 10_000}, {}),
            ({"X-Namespace": "No Such Namespace"}, {}),
            ({}, {"namespace": "drill-ghost"}),
        ):
            r = await c.get("/api/workflows", headers={**operator, **headers}, params=params)
            odd.record(key_of(r))

        admin = {**BOTH, **bearer("admin")}
        for name in ("drill-a", "drill-b"):
            r = await c.post("/api/namespaces", json={"name": name}, headers=admin)
            assert r.status_code == 201, r.text
        r = await c.post(
            "/api/workflows",
            json={
                "workflow_type": "DrillType",
                "workflow_id": "drill-wf-a",
                "task_queue": "drill-q",
            },
            headers={**operator, "X-Namespace": "drill-a"},
        )
        assert r.status_code == 201, r.text
        in_b = {**operator, "X-Namespace": "drill-b"}
        other.record(key_of(await c.get("/api/workflows/drill-wf-a", headers=in_b)))
        for verb, body in (("signal/go", {}), ("cancel", {}), ("terminate", {"reason": "drill"})):
            other.record(
                key_of(await c.post(f"/api/workflows/drill-wf-a/{verb}", json=body, headers=in_b))
            )
        listed = await c.get("/api/workflows", headers=in_b)
        assert listed.status_code == 200 and "drill-wf-a" not in listed.text, listed.text
        r = await c.get("/api/workflows/drill-wf-a", headers={**operator, "X-Namespace": "drill-a"})
        assert r.status_code == 200, r.text


# --- node A: the poll storm ------------------------------------------------------------------
POLLERS = 200
SAME_ID_POLLERS = 100
POLL_TIMEOUT_S = 5


async def poll_storm(m: Matrix, a: NodeProcess) -> dict[str, Any]:
    """Hundreds of concurrent workflow-task polls from one worker id, each on its own
    connection, while five workflows start on the queue; a hundred more that all carry
    the same poll_request_id. The SDK gives a poll ``timeout_seconds`` + 5 s before it
    gives up on it, so that is the bound for every answer."""
    bound_s = POLL_TIMEOUT_S + 5
    distinct = m.row(
        "Poll storm",
        f"{POLLERS} concurrent polls from one worker id (`timeout_seconds: {POLL_TIMEOUT_S}`), "
        "5 workflows started meanwhile",
        f"200 within {bound_s} s each: 5 polls get one task each, the rest `task: null`",
        exactly("200"),
    )
    same = m.row(
        "Poll storm",
        f"{SAME_ID_POLLERS} concurrent polls from one worker id with one `poll_request_id`, "
        "empty queue",
        f"200 `task: null` within {bound_s} s each",
        exactly("200"),
    )
    worker = {**WP, **bearer("worker")}
    tasks: list[str] = []
    seconds: list[float] = []

    async def poll(queue: str, poll_id: str, row: Row) -> None:
        body = orjson.dumps(
            {
                "worker_id": "drill-storm-worker",
                "task_queue": queue,
                "poll_request_id": poll_id,
                "timeout_seconds": POLL_TIMEOUT_S,
            }
        )
        answer = await raw_exchange(
            a.port, [post("/api/worker/workflow-tasks/poll", worker, body)], timeout_s=bound_s + 5
        )
        row.record(answer.key.removesuffix("; closed"))
        seconds.append(answer.seconds)
        if answer.status == 200 and (task := orjson.loads(answer.body).get("task")):
            tasks.append(task["task_id"])

    async with client(a) as c:
        for queue in ("drill-storm", "drill-storm-same"):
            r = await c.post(
                "/api/worker/register",
                json={"worker_id": "drill-storm-worker", "task_queue": queue},
                headers=worker,
            )
            assert r.status_code in (200, 201), r.text
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(POLLERS):
                nursery.start_soon(poll, "drill-storm", f"wf-poll-{uuid.uuid4().hex}", distinct)
            same_id = f"wf-poll-{uuid.uuid4().hex}"
            for _ in range(SAME_ID_POLLERS):
                nursery.start_soon(poll, "drill-storm-same", same_id, same)
            await trio.sleep(1.5)
            for i in range(5):
                r = await c.post(
                    "/api/workflows",
                    json={
                        "workflow_type": "DrillType",
                        "workflow_id": f"drill-storm-{i}",
                        "task_queue": "drill-storm",
                    },
                    headers={**CP, **bearer("operator")},
                )
                assert r.status_code == 201, r.text
        wall_s = trio.current_time() - start
    slowest = max(seconds)
    distinct.note = (
        f"{len(tasks)} tasks handed out, {len(set(tasks))} distinct; answers after "
        f"{min(seconds):.1f}-{slowest:.1f} s"
    )
    assert sorted(tasks) == sorted(set(tasks)) and len(tasks) == 5, tasks
    assert slowest <= bound_s, sorted(seconds)[-20:]
    return {"seconds": round(wall_s, 1), "tasks": len(tasks), "slowest_answer_s": round(slowest, 2)}


# --- node B: signatures and slow clients -------------------------------------------------------
async def signatures(m: Matrix, b: NodeProcess) -> None:
    body = b'{"name": "drill-signed"}'

    async def create(c: httpx.AsyncClient, content: bytes, signature: str, **extra: str) -> str:
        headers = {**CP, **JSON_CT, "X-Signature": signature, **extra}
        return key_of(await c.post("/api/namespaces", content=content, headers=headers))

    async with client(b) as c:
        row = m.row("HMAC signature", "valid admin signature of the body", "201", exactly("201"))
        row.record(await create(c, body, sign(KEYS["admin"], body)))
        row = m.row(
            "HMAC signature",
            "forged: signed with a key the server does not have; empty; 8 KB of non-hex",
            "401 unauthorized",
            exactly("401 unauthorized"),
        )
        row.record(await create(c, body, sign("not-a-drill-key", body)))
        row.record(await create(c, body, ""))
        row.record(await create(c, body, "zz" * 4096))
        row = m.row(
            "HMAC signature",
            "tampered: a valid signature of another body (one byte changed, or `{}`)",
            "401 unauthorized",
            exactly("401 unauthorized"),
        )
        row.record(await create(c, body.replace(b"signed", b"signee"), sign(KEYS["admin"], body)))
        row.record(await create(c, body, sign(KEYS["admin"], b"{}")))
        row = m.row(
            "HMAC signature",
            "a valid signature under a role the route does not allow (operator key, admin route)",
            "403 forbidden",
            exactly("403 forbidden"),
        )
        row.record(await create(c, body, sign(KEYS["operator"], body)))
        row = m.row(
            "HMAC signature",
            "a bearer token instead of a signature",
            "401 unauthorized",
            exactly("401 unauthorized"),
        )
        r = await c.get(
            "/api/namespaces", headers={**CP, "Authorization": f"Bearer {TOKENS['admin']}"}
        )
        row.record(key_of(r))
        row = m.row(
            "HMAC signature",
            "replayed: a signed `GET /api/namespaces` sent again 3 s later, with "
            "`X-Signature-Timestamp` of 2001 (uppercase hex once)",
            "200: the scheme signs only the body, with no time in it",
            exactly("200"),
            note="Documented weakness kept for compatibility (auth-and-headers.md 4.4): a "
            "signature can be replayed; only TLS and a proxy keep it from being seen.",
        )
        signed = {**CP, "X-Signature": sign(KEYS["operator"], b"")}
        row.record(key_of(await c.get("/api/namespaces", headers=signed)))
        await trio.sleep(3)
        stale = {**signed, "X-Signature-Timestamp": "2001-01-01T00:00:00Z"}
        row.record(key_of(await c.get("/api/namespaces", headers=stale)))
        upper = {**CP, "X-Signature": sign(KEYS["operator"], b"").upper()}
        row.record(key_of(await c.get("/api/namespaces", headers=upper)))


async def slow_clients(m: Matrix, b: NodeProcess) -> None:
    """Slowloris: many connections dribbling their head, bodies dribbled on both planes."""
    signed = {**BOTH, "X-Signature": sign(KEYS["admin"], b"")}
    head_row = m.row(
        "Slowloris",
        "50 connections sending their head 1 byte per 0.5 s",
        f"closed without an answer within DW_KEEP_ALIVE_TIMEOUT_SECONDS ({SLOW_CLOCK_S:.0f} s)",
        exactly("closed, no answer"),
    )
    body_row = m.row(
        "Slowloris",
        "a body dribbled 1 byte per 0.5 s, or declared and never sent (control, worker)",
        f"408 request_timeout within DW_BODY_TIMEOUT_SECONDS ({SLOW_CLOCK_S:.0f} s), connection closed",
        exactly("408 request_timeout; closed"),
    )
    seconds: list[float] = []
    request = request_head("GET", b"/api/namespaces", signed)

    async def dribble_head() -> None:
        answer = await raw_exchange(
            b.port, [bytes([x]) for x in request], pause_s=0.5, timeout_s=15
        )
        head_row.record(answer.key)
        seconds.append(answer.seconds)

    async def dribble_body(parts: list[bytes]) -> None:
        answer = await raw_exchange(b.port, parts, pause_s=0.5, timeout_s=15)
        body_row.record(answer.key)
        seconds.append(answer.seconds)

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(dribble_head)
        for target in (b"/api/namespaces", b"/api/worker/register"):
            head = request_head("POST", target, {**JSON_CT, **signed, "Content-Length": "100"})
            nursery.start_soon(dribble_body, [head] + [b" "] * 100)
            nursery.start_soon(dribble_body, [head + b"{"])
        await trio.sleep(1)
        ready_s = await ready_within(b, 2)  # the node still answers others meanwhile
    head_row.note = (
        f"closed after {min(seconds):.1f}-{max(seconds):.1f} s; /api/ready answered in "
        f"{ready_s:.2f} s meanwhile"
    )
    assert max(seconds) < SLOW_CLOCK_S + 3, seconds


# --- the drill ------------------------------------------------------------------------------
async def test_abuse_drill(db_dsn: str, tmp_path: Path) -> None:
    started = time.monotonic()
    m = Matrix()
    a = node(
        tmp_path,
        "drill-a",
        db_dsn,
        DW_AUTH_DRIVER="token",
        DW_WORKER_TOKEN=TOKENS["worker"],
        DW_OPERATOR_TOKEN=TOKENS["operator"],
        DW_ADMIN_TOKEN=TOKENS["admin"],
        DW_MAX_CONNECTIONS=str(CAP),
    )
    b = node(
        tmp_path,
        "drill-b",
        db_dsn,
        DW_AUTH_DRIVER="signature",
        DW_WORKER_SIGNATURE_KEY=KEYS["worker"],
        DW_OPERATOR_SIGNATURE_KEY=KEYS["operator"],
        DW_ADMIN_SIGNATURE_KEY=KEYS["admin"],
        DW_KEEP_ALIVE_TIMEOUT_SECONDS=str(SLOW_CLOCK_S),
        DW_BODY_TIMEOUT_SECONDS=str(SLOW_CLOCK_S),
    )
    figures: dict[str, Any] = {}
    async with running(a, b):
        assert a.proc is not None and b.proc is not None
        watch = Watch(psutil.Process(a.proc.pid))
        rss_start, fds_start = watch.sample()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch.run)
            figures["storm"] = await connection_storm(m, a, watch)
            rss_after_storm = watch.sample()[0]
            await bad_bodies(m, a)
            await bad_heads(m, a)
            figures["role_matrix"] = await role_matrix(m, a)
            await namespaces(m, a)
            figures["poll_storm"] = await poll_storm(m, a)
            await signatures(m, b)
            await slow_clients(m, b)
            await trio.sleep(1)  # the last connections close
            rss_end, fds_end = watch.sample()
            nursery.cancel_scope.cancel()
        for n in (a, b):
            assert n.running, f"{n.server_id} died:\n{n.tail()}"
            assert (await n.wait_ready(5))["status"] == "ready"
        codes = [await a.stop(), await b.stop()]
    logs = {n.server_id: n.log.read_text(errors="replace") for n in (a, b)}

    mib = 1024 * 1024
    figures["node_a"] = {
        "rss_mib": {
            "start": round(rss_start / mib, 1),
            "peak": round(max(watch.rss) / mib, 1),
            "after_storm": round(rss_after_storm / mib, 1),
            "end": round(rss_end / mib, 1),
        },
        "fds": {"start": fds_start, "peak": max(watch.fds), "end": fds_end},
    }
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["five_xx"] = sum(r.five_xx for r in m.rows)
    figures["rows"] = [r.as_json() for r in m.rows]
    print(m.markdown())
    print(
        json.dumps({k: v for k, v in figures.items() if k not in ("rows", "role_matrix")}, indent=1)
    )
    if out := os.environ.get("DWTRIO_FIGURES_DIR"):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "abuse.json").write_text(json.dumps(figures, indent=2) + "\n")

    assert figures["five_xx"] == 0, [r.as_json() for r in m.rows if r.five_xx]
    wrong = {f"{r.input_class}: {r.sent}": r.unexpected for r in m.rows if r.unexpected}
    assert not wrong, wrong
    assert all(sum(r.observed.values()) for r in m.rows), [r.sent for r in m.rows if not r.observed]
    assert codes == [0, 0], codes
    for name, text in logs.items():
        assert "Traceback" not in text and "unhandled error" not in text, f"{name}:\n{text[-4000:]}"
    # Memory is bounded by the cap, not by the number of connections or requests: what the
    # storm's admitted connections took is not exceeded by the rest of the drill.
    assert max(watch.rss) - rss_start < CAP * 96 * 1024, figures["node_a"]
    assert rss_end - rss_after_storm < 64 * mib, figures["node_a"]
    assert fds_end <= fds_start + 8, figures["node_a"]
