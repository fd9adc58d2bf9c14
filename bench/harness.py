"""Shared pieces of the benchmarks: a throwaway server, percentiles, results and plots.

Every benchmark talks to servers on loopback only, is bounded in count and
time, and writes ``bench/results/<name>-<timestamp>.json`` plus a PNG plot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

RESULTS = Path(__file__).resolve().parent / "results"
#: Version headers of the two planes (httpx adds the JSON content type to json= bodies).
WP = {"X-Durable-Workflow-Protocol-Version": "1.20"}
CP = {"X-Durable-Workflow-Control-Plane-Version": "2"}
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[k]

    return {
        "count": len(ordered),
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


def median_of_runs(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, float]:
    """The median over runs of each per-run figure: what every summary row reports."""
    return {k: round(statistics.median(float(r[k]) for r in runs), 2) for k in keys}


async def time_statement(dsn: str, sql: str, *args: Any, samples: int) -> list[float]:
    """Milliseconds of ``samples`` runs of one statement through asyncpg (after three
    warm-up runs): Postgres's share of a request, beside the request itself."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(3):
            await conn.fetch(sql, *args)
        times = []
        for _ in range(samples):
            t0 = time.perf_counter()
            await conn.fetch(sql, *args)
            times.append((time.perf_counter() - t0) * 1000)
        return times
    finally:
        await conn.close()


def latency_rows(runs: Sequence[Mapping[str, Any]], label: str = "request") -> list[dict[str, Any]]:
    """One row per timed request: the median over ``runs`` (each ``{name: {"ms": [...]}}``)
    of each run's p50, p99 and max."""
    rows = []
    for name in runs[0]:
        per_run = []
        for measured in runs:
            p = percentiles(measured[name]["ms"])
            per_run.append({"p50_ms": p["p50"], "p99_ms": p["p99"], "max_ms": p["max"]})
        rows.append({label: name, **median_of_runs(per_run, ["p50_ms", "p99_ms", "max_ms"])})
    return rows


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, desc: str, unit: str) -> Any:
    """A tqdm progress bar (on stderr), or a silent stand-in when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoProgress()
    return tqdm(total=total, desc=desc, unit=unit, leave=False)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def _admin(dsn: str, sql: str) -> None:
    """Run one admin statement with asyncpg (plain asyncio: this process has no trio-asyncio)."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@contextlib.contextmanager
def bench_database(admin_dsn: str | None) -> Iterator[str | None]:
    """A fresh database on ``admin_dsn`` (dropped afterwards), or None for the embedded default."""
    if not admin_dsn:
        yield None
        return
    name = f"dwtrio_bench_{uuid.uuid4().hex[:10]}"
    _admin(admin_dsn, f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_dsn)  # TCP or Unix-socket (?host=/run/postgresql) DSNs alike
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    finally:
        _admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _request_bytes(method: str, path: str, head: str, body: Any) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    if body is not None:
        head = f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n{head}"
    return f"{method} {path} HTTP/1.1\r\nHost: bench\r\n{head}\r\n".encode() + data


def _parse_head(top: bytes) -> tuple[int, int, bool]:
    """(status, content length, connection: close) of a response head.

    Only ``Content-Length`` framing is understood: anything else (chunked, or
    delimited by the close) raises rather than desynchronising the connection.
    """
    lines = top.split(b"\r\n")
    length, close = None, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"transfer-encoding":
            raise ValueError(f"unsupported response framing: {line!r}")
    if length is None:
        raise ValueError("a response without Content-Length")
    return int(lines[0].split()[1]), length, close


def _headers(headers: Mapping[str, str]) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items())


class RawClient:
    """One keep-alive HTTP/1.1 connection over asyncio streams, for load generators.

    An HTTP library costs the load generator more CPU than the request costs
    the server (httpx's pool bookkeeping grows with its connections: at 128
    loops per process the generators, not the server, ran out of CPU). This
    sends a JSON request and reads a ``Content-Length`` answer, nothing more: no
    compression, no redirects, no retries. One per loop, like one worker's
    connection.
    """

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self._address = (host, int(port))
        self._head = _headers(headers)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        """``POST path`` with ``body`` as JSON; returns (status, decoded JSON answer)."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(*self._address)
        reader, writer = self._streams
        try:
            writer.write(_request_bytes("POST", path, self._head, body))
            status, length, close = _parse_head(await reader.readuntil(b"\r\n\r\n"))
            answer = await reader.readexactly(length)
        except BaseException:
            self.close()  # an answer half read would be taken for the next one's
            raise
        if close:
            self.close()
        return status, json.loads(answer) if answer else None

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


class RawConnection:
    """The blocking twin of :class:`RawClient`, for one-at-a-time callers."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(
        self, method: str, path: str, headers: Mapping[str, str], body: Any = None
    ) -> tuple[int, Any]:
        self.sock.sendall(_request_bytes(method, path, _headers(headers), body))
        buf = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
            top, sep, rest = buf.partition(b"\r\n\r\n")
            if not sep:
                continue
            status, length, close = _parse_head(top)
            if len(rest) >= length:
                if close:
                    self.close()  # a further request fails plainly
                return status, json.loads(rest[:length] or b"null")

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def dwtrio_server(
    *,
    dsn: str | None,
    workers: int = 1,
    redis_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    data_dir: str | None = None,
) -> Iterator[str]:
    """Start ``python -m dwtrio serve`` on a free loopback port; yield its base URL.

    Several ``workers`` share the Redis wake bus of ``redis_url`` when one is given;
    otherwise the wake bus is the in-process one unless ``extra_env`` names another
    (``DW_WAKE_BUS``).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DW_", "DWTRIO_"))}
    env.update(
        {
            "DW_BIND": f"127.0.0.1:{port}",
            "DW_AUTH_DRIVER": "none",
            "DW_WORKERS": str(workers),
            "DW_LOG_LEVEL": "warning",
            "DW_DB_POOL_MAX_SIZE": "20",
        }
    )
    if workers > 1 and redis_url:
        env["DW_REDIS_URL"] = redis_url
    if dsn:
        env["DW_DATABASE_URL"] = dsn
    else:
        env["DW_DATA_DIR"] = data_dir or str(RESULTS / ".embedded")
    env.update(extra_env or {})
    # The bus these benchmarks always ran with (their figures stay comparable), not
    # DW_WAKE_BUS=auto's pick for an external database (cross_node_wakes measures that).
    env.setdefault("DW_WAKE_BUS", "redis" if env.get("DW_REDIS_URL") else "local")
    with _running([sys.executable, "-m", "dwtrio", "serve"], env, port) as url:
        yield url


@contextlib.contextmanager
def floor_server() -> Iterator[str]:
    """Start ``bench.floor`` (Hypercorn + Trio, dwtrio's HTTP config, no server
    behind it) on a free loopback port; yield its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DW_", "DWTRIO_"))}
    env["DW_BIND"] = f"127.0.0.1:{port}"  # how server_processes finds it
    cmd = [sys.executable, "-m", "bench.floor", "--bind", env["DW_BIND"]]
    with _running(cmd, env, port) as url:
        yield url


@contextlib.contextmanager
def _running(cmd: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """Run a server process until the block ends; yield its URL once /api/ready answers."""
    proc = subprocess.Popen(cmd, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(cmd[1:])} did not become ready")
            time.sleep(0.1)
        with _profiled(proc, cmd):
            yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


#: ``DWTRIO_BENCH_PROFILE=<dir>``: every server process a benchmark starts is sampled by
#: py-spy while it serves (collapsed stacks, ``<dir>/<name>-<pid>.txt``); summarise one
#: with ``python -m bench profile <file>``.
PROFILE_ENV = "DWTRIO_BENCH_PROFILE"


@contextlib.contextmanager
def _profiled(proc: subprocess.Popen[bytes], cmd: list[str]) -> Iterator[None]:
    """Sample ``proc`` with py-spy for the block when PROFILE_ENV names a directory."""
    out_dir = os.environ.get(PROFILE_ENV)
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not out_dir or spy is None:
        if out_dir:
            print("py-spy is not installed (pip install py-spy): no profile", file=sys.stderr)
        yield
        return
    name = "floor" if "bench.floor" in cmd else "dwtrio"
    out = Path(out_dir) / f"{name}-{proc.pid}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    sampler = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(proc.pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "--subprocesses",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        sampler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            sampler.wait(30)
        except subprocess.TimeoutExpired:
            sampler.kill()
        print(f"profile: {out}", file=sys.stderr)


def server_processes(url: str) -> list[Any]:
    """The server processes behind ``url``: dwtrio's serve process and its workers,
    or the floor app."""
    import psutil

    port = url.rsplit(":", 1)[1]
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info.get("cmdline") or [])
            env = proc.info.get("environ") or {}
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        if env.get("DW_BIND", "").endswith(f":{port}") and (
            "dwtrio" in cmd or "multiprocessing" in cmd or "bench.floor" in cmd
        ):
            found.append(proc)
    return found


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    data = {"benchmark": name, "machine": machine(), "written_at": stamp, **data}
    path.write_text(json.dumps(data, indent=2))
    return path


def plot_cdf(name: str, series: Mapping[str, Sequence[float]], xlabel: str) -> Path | None:
    """A latency CDF, one line per series; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, values in series.items():
        ordered = sorted(values)
        if not ordered:
            continue
        ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
        ax.plot(ordered, ys, label=label)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of samples")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(name)
    path = RESULTS / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lines(
    name: str, series: dict[str, Sequence[tuple[float, float]]], xlabel: str, ylabel: str
) -> Path | None:
    """Throughput against concurrency, one line per series; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in series.items():
        if points:
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({x for points in series.values() for x, _ in points}))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(name)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(f"{r.get(c, '')}") for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    for r in rows:
        lines.append("  ".join(f"{r.get(c, '')}".ljust(widths[c]) for c in columns))
    return "\n".join(lines)
