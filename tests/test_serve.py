"""``dwtrio`` as a real process: ``serve`` on the embedded Postgres, ``bootstrap``, ``--help``.

Every process is started with trio (``trio.lowlevel.open_process`` / ``trio.run_process``)
so nothing here blocks the event loop. ``serve`` runs on its default storage --
an embedded PostgreSQL in ``DW_DATA_DIR`` -- and after it stops no postgres
process of that data dir may remain.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import trio

from dwtrio.embedded import EmbeddedPostgres
from dwtrio.store.migrate import list_migrations

from conftest import CP, Databases

TOKEN = "t"
READY_TIMEOUT_S = 60
EXIT_TIMEOUT_S = 20
GONE_TIMEOUT_S = 10


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any DW_* / DWTRIO_* setting, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DW_", "DWTRIO_"))}
    env.update(values)
    return env


def postgres_procs(data_dir: Path) -> list[psutil.Process]:
    """Live postgres processes whose cwd or command line mentions ``data_dir``.

    Zombies do not count: a postmaster orphaned by a crash is reparented to this
    container's init, which may never reap it.
    """
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.name() != "postgres" or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.cwd().startswith(str(data_dir)) or str(data_dir) in " ".join(proc.cmdline()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


async def assert_nothing_left(data_dir: Path) -> None:
    """No postgres of ``data_dir`` survives (bounded wait) and no postmaster.pid remains."""
    with trio.move_on_after(GONE_TIMEOUT_S):
        while postgres_procs(data_dir):
            await trio.sleep(0.1)
    left = [(p.pid, " ".join(p.cmdline())) for p in postgres_procs(data_dir)]
    assert left == [], f"postgres processes left behind: {left}"
    assert not (data_dir / "pg" / "postmaster.pid").exists()


class Serve:
    """One ``python -m dwtrio serve`` child with its output in a log file."""

    def __init__(self, data_dir: Path, log: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = clean_env(
            DW_DATA_DIR=str(data_dir), DW_BIND=f"127.0.0.1:{self.port}", DW_AUTH_TOKEN=TOKEN, **env
        )
        self.proc: trio.Process | None = None

    async def start(self) -> Serve:
        with self.log.open("ab") as out:
            self.proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "dwtrio", "serve"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def client(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)

    async def wait_ready(self) -> dict[str, Any]:
        """Poll GET /api/ready until 200; fail if the process exits or time runs out."""
        assert self.proc is not None
        last = "no answer"
        async with self.client(token=None) as c:
            with trio.move_on_after(READY_TIMEOUT_S):
                while True:
                    assert self.proc.returncode is None, (
                        f"dwtrio serve exited with {self.proc.returncode}:\n{self.output()}"
                    )
                    try:
                        r = await c.get("/api/ready", timeout=2)
                    except httpx.TransportError as exc:
                        last = repr(exc)
                    else:
                        if r.status_code == 200:
                            body: dict[str, Any] = r.json()
                            return body
                        last = f"{r.status_code} {r.text}"
                    await trio.sleep(0.1)
        raise AssertionError(f"not ready after {READY_TIMEOUT_S}s ({last}):\n{self.output()}")

    async def stop(self, signum: int = signal.SIGTERM) -> tuple[int, float]:
        """Send ``signum``; return the exit code and the seconds it took to exit."""
        assert self.proc is not None
        start = trio.current_time()
        self.proc.send_signal(signum)
        with trio.move_on_after(EXIT_TIMEOUT_S):
            code = await self.proc.wait()
            return code, trio.current_time() - start
        raise AssertionError(
            f"dwtrio serve still running {EXIT_TIMEOUT_S}s after {signal.Signals(signum).name}:\n"
            f"{self.output()}"
        )

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with trio.move_on_after(EXIT_TIMEOUT_S):
                await self.proc.wait()


@pytest.fixture
async def serve_proc(tmp_path: Path) -> AsyncIterator[Callable[..., Serve]]:
    """``serve_proc(data_dir, **env)`` makes a Serve; all are killed and their Postgres stopped."""
    made: list[Serve] = []

    def make(data_dir: Path, **env: str) -> Serve:
        s = Serve(data_dir, tmp_path / f"serve-{len(made)}.log", **env)
        made.append(s)
        return s

    yield make
    with trio.CancelScope(shield=True):
        for s in made:
            await s.kill()
        for data_dir in {s.data_dir for s in made}:
            # Only after a failure is anything left: stop it so no postgres outlives the test.
            if postgres_procs(data_dir):
                await trio.to_thread.run_sync(EmbeddedPostgres(data_dir).stop)


def assert_all_ready(body: dict[str, Any]) -> None:
    assert body["status"] == "ready", body
    checks = body["checks"]
    assert {"database", "migrations", "default_namespace", "cache", "auth"} <= set(checks), checks
    assert all(c["status"] == "ok" for c in checks.values()), checks
    assert checks["default_namespace"]["namespace"] == "default"
    assert checks["cache"]["store"] == "in_process"
    assert checks["auth"]["driver"] == "token"


async def assert_cluster_info(s: Serve) -> None:
    async with s.client() as c:
        r = await c.get("/api/cluster/info")
        assert r.status_code == 200, r.text
        info = r.json()
        assert info["control_plane"]["version"] == "2"
        assert info["worker_protocol"]["version"] == "1.20"
    async with s.client(token=None) as c:
        r = await c.get("/api/cluster/info")
        assert r.status_code == 401, r.text
        assert r.json()["reason"] == "unauthorized"


# --- tests --------------------------------------------------------------------------


async def test_help_lists_commands() -> None:
    proc = await trio.run_process(
        [sys.executable, "-m", "dwtrio", "--help"],
        capture_stdout=True,
        capture_stderr=True,
        env=clean_env(),
    )
    out = proc.stdout.decode()
    commands = {line.split()[0] for line in out.splitlines() if line.startswith("    ")}
    assert {"serve", "bootstrap"} <= commands, out
    assert "{serve,bootstrap,config,history}" in out, out


@pytest.mark.slow
async def test_serve_embedded_ready_then_sigterm_leaves_nothing(
    tmp_path: Path, serve_proc: Callable[..., Serve]
) -> None:
    data_dir = tmp_path / "data"
    s = await serve_proc(data_dir).start()
    assert_all_ready(await s.wait_ready())
    await assert_cluster_info(s)
    assert (data_dir / "pg" / "PG_VERSION").exists()
    assert postgres_procs(data_dir), "the embedded postgres should be running"

    # A second server on the same data dir is refused and leaves the first one alone.
    second = await serve_proc(data_dir).start()
    assert second.proc is not None
    with trio.fail_after(READY_TIMEOUT_S):
        code = await second.proc.wait()
    assert code == 1, second.output()
    assert "in use by another dwtrio process" in second.output()
    async with s.client(token=None) as c:
        assert (await c.get("/api/ready")).status_code == 200

    code, took = await s.stop(signal.SIGTERM)
    assert code == 0, s.output()
    assert "received SIGTERM: draining" in s.output()
    await assert_nothing_left(data_dir)
    print(f"SIGTERM to exit: {took:.2f}s")


@pytest.mark.slow
async def test_serve_recovers_after_crash(tmp_path: Path, serve_proc: Callable[..., Serve]) -> None:
    data_dir = tmp_path / "data"
    first = await serve_proc(data_dir).start()
    assert_all_ready(await first.wait_ready())
    async with first.client() as c:
        r = await c.post(
            "/api/namespaces", json={"name": "survivor", "retention_days": 3}, headers=CP
        )
        assert r.status_code in (200, 201), r.text

    code, _ = await first.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL
    # The crash left the embedded postgres behind: that is what the restart must handle.
    assert postgres_procs(data_dir), "expected an orphaned postgres after SIGKILL"
    assert (data_dir / "pg" / "postmaster.pid").exists()

    second = await serve_proc(data_dir).start()
    assert_all_ready(await second.wait_ready())
    await assert_cluster_info(second)
    async with second.client() as c:
        r = await c.get("/api/namespaces/survivor", headers=CP)
        assert r.status_code == 200, r.text  # same cluster, data kept
        assert r.json()["retention_days"] == 3

    code, _ = await second.stop(signal.SIGTERM)
    assert code == 0, second.output()
    await assert_nothing_left(data_dir)


@pytest.mark.slow
async def test_idle_keepalive_connection_does_not_hold_shutdown(
    tmp_path: Path, serve_proc: Callable[..., Serve]
) -> None:
    s = await serve_proc(tmp_path / "data", DW_GRACEFUL_TIMEOUT_SECONDS="5").start()
    await s.wait_ready()
    async with s.client() as c:  # an SDK client's pooled, idle keep-alive connection
        assert (await c.get("/api/cluster/info")).status_code == 200
        code, took = await s.stop(signal.SIGTERM)
    assert code == 0, s.output()
    await assert_nothing_left(tmp_path / "data")
    assert took < 2.5, f"SIGTERM took {took:.1f}s with an idle keep-alive connection open"


async def test_bootstrap_cli_on_empty_database(databases: Databases) -> None:
    dsn = databases.dsn(await databases.create(empty=True))
    env = clean_env(DW_DATABASE_URL=dsn)
    expected = [f"{m.version:04d}_{m.name}" for m in list_migrations()]

    first = await trio.run_process(
        [sys.executable, "-m", "dwtrio", "bootstrap"],
        capture_stdout=True,
        capture_stderr=True,
        env=env,
        check=False,
    )
    out = first.stdout.decode()
    assert first.returncode == 0, out + first.stderr.decode()
    assert f"migrations applied: {', '.join(expected)} (already applied: 0)" in out, out
    assert "default namespace created" in out, out

    second = await trio.run_process(
        [sys.executable, "-m", "dwtrio", "bootstrap"],
        capture_stdout=True,
        capture_stderr=True,
        env=env,
        check=False,
    )
    out = second.stdout.decode()
    assert second.returncode == 0, out + second.stderr.decode()
    assert f"migrations applied: none (already applied: {len(expected)})" in out, out
    assert "default namespace present" in out, out


@pytest.mark.slow
@pytest.mark.sdk
async def test_sdk_quickstart_prints_hello_world_against_serve(
    tmp_path: Path, serve_proc: Callable[..., Serve]
) -> None:
    """The SDK README quickstart, unchanged but for URL and token, against `dwtrio serve`."""
    driver = Path(__file__).parent / "sdk" / "workflows_driver.py"
    s = await serve_proc(tmp_path / "data").start()
    await s.wait_ready()
    with trio.fail_after(120):
        proc = await trio.run_process(
            [sys.executable, str(driver), "greeter", s.url, TOKEN],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert out["result"] == "hello, world"
    code, _ = await s.stop(signal.SIGTERM)
    assert code == 0, s.output()
    await assert_nothing_left(tmp_path / "data")
