"""Shared fixtures: a real Postgres, a template database cloned per test, servers.

Postgres comes from ``DWTRIO_TEST_DSN`` (an admin DSN, e.g.
``postgresql://postgres@127.0.0.1:5432/postgres``; CI sets it) or, when unset,
from a throwaway embedded Postgres started for the session. When the variable
is set and the server is unreachable, tests fail: they never skip.

The template database gets every migration and the default namespace once per
session; each test gets its own ``CREATE DATABASE ... TEMPLATE`` copy.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import httpx
import pytest
import trio
import trio_asyncio

from dwtrio.main import run_bootstrap, serve
from dwtrio.settings import Settings
from dwtrio.store.pool import Conn, connect_once

ADMIN_TOKEN = "test-admin-token"


def with_database(dsn: str, database: str) -> str:
    """The same server, another database (works for TCP and Unix-socket DSNs)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dsn = os.environ.get("DWTRIO_TEST_DSN")
    if dsn:
        yield dsn
        return
    if os.environ.get("DWTRIO_REQUIRE_SERVICES"):
        pytest.fail("DWTRIO_REQUIRE_SERVICES is set but DWTRIO_TEST_DSN is not")
    from dwtrio.embedded import EmbeddedPostgres

    with EmbeddedPostgres(tmp_path_factory.mktemp("embedded-pg")) as embedded_dsn:
        yield embedded_dsn


async def _admin(dsn: str, statement: str) -> None:
    async def op(conn: Conn) -> None:
        await conn.execute(statement)

    await connect_once(dsn, op)


async def _admin_in_loop(dsn: str, statement: str) -> None:
    async with trio_asyncio.open_loop():
        await _admin(dsn, statement)


def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis for wake-bus tests: DWTRIO_TEST_REDIS_URL, else a throwaway redis-server.

    With neither (a laptop without Redis installed) the tests use fakeredis's TCP
    server, which speaks the same protocol; CI always provides a real Redis
    (DWTRIO_REQUIRE_SERVICES makes its absence a failure).
    """
    url = os.environ.get("DWTRIO_TEST_REDIS_URL")
    if url:
        if not _redis_ping(url):
            pytest.fail(f"DWTRIO_TEST_REDIS_URL={url} is not reachable")
        yield url
        return
    if os.environ.get("DWTRIO_REQUIRE_SERVICES"):
        pytest.fail("DWTRIO_REQUIRE_SERVICES is set but DWTRIO_TEST_REDIS_URL is not")
    port = free_port()
    binary = shutil.which("redis-server")
    if binary:
        proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=tmp_path_factory.mktemp("redis"),
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            for _ in range(100):
                if _redis_ping(url):
                    break
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)
        return
    import threading

    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def template_db(pg_admin_dsn: str) -> Iterator[str]:
    name = f"dwtrio_tpl_{uuid.uuid4().hex[:10]}"
    trio.run(_admin_in_loop, pg_admin_dsn, f'CREATE DATABASE "{name}"')
    settings = Settings.from_env({})
    trio.run(run_bootstrap, settings, with_database(pg_admin_dsn, name))
    yield name
    trio.run(_admin_in_loop, pg_admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def aio_loop() -> AsyncIterator[None]:
    """A trio-asyncio loop for the test: the store bridge needs one in an ancestor."""
    async with trio_asyncio.open_loop():
        yield


@attrs.define
class Databases:
    """Per-test databases on the test Postgres; dropped when the test ends."""

    admin_dsn: str
    template: str
    created: list[str] = attrs.field(factory=list)

    async def create(self, *, empty: bool = False) -> str:
        """A new database: a copy of the bootstrapped template, or ``empty``."""
        name = f"dwtrio_t_{uuid.uuid4().hex[:12]}"
        template = "template0" if empty else f'"{self.template}"'
        await _admin(self.admin_dsn, f'CREATE DATABASE "{name}" TEMPLATE {template}')
        self.created.append(name)
        return name

    async def drop(self, name: str) -> None:
        await _admin(self.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def dsn(self, name: str) -> str:
        return with_database(self.admin_dsn, name)


@pytest.fixture
async def databases(
    aio_loop: None, pg_admin_dsn: str, template_db: str
) -> AsyncIterator[Databases]:
    dbs = Databases(pg_admin_dsn, template_db)
    yield dbs
    with trio.CancelScope(shield=True):  # cleanup must finish even if the test was cancelled
        for name in dbs.created:
            await dbs.drop(name)


@pytest.fixture
async def db_dsn(databases: Databases) -> str:
    """A fresh, bootstrapped database for this test."""
    return databases.dsn(await databases.create())


def make_settings(**overrides: Any) -> Settings:
    """Test settings: loopback, ephemeral port, admin-token auth unless overridden."""
    base: dict[str, Any] = {
        "bind": "127.0.0.1:0",
        "auth_driver": "token",
        "admin_token": ADMIN_TOKEN,
        "server_id": "test-node",
        "graceful_timeout_s": 2.0,
        "db_pool_min_size": 1,
        "db_pool_max_size": 8,
    }
    base.update(overrides)
    return Settings.from_env({}, **base)


@functools.cache
def client_ssl_context() -> ssl.SSLContext:
    """One TLS context for every test client: httpx otherwise loads its CA bundle again for
    each client it makes (about 35 ms of CPU), though test servers speak plain HTTP."""
    return httpx.create_ssl_context()


@attrs.define
class RunningServer:
    url: str
    settings: Settings
    stop: trio.Event
    stopped: trio.Event

    async def shutdown(self, timeout_s: float = 15.0) -> None:
        """Drain and stop the server, waiting until its pool is closed."""
        self.stop.set()
        with trio.fail_after(timeout_s):
            await self.stopped.wait()

    def client(self, token: str | None = ADMIN_TOKEN, **headers: str) -> httpx.AsyncClient:
        base_headers: dict[str, str] = {}
        if token is not None:
            base_headers["Authorization"] = f"Bearer {token}"
        base_headers.update(headers)
        return httpx.AsyncClient(
            base_url=self.url, headers=base_headers, timeout=30, verify=client_ssl_context()
        )


StartServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start_server(nursery: trio.Nursery, db_dsn: str) -> AsyncIterator[StartServer]:
    """Start an in-process dwtrio on this test's database: ``await start_server(**settings)``."""
    running: list[RunningServer] = []

    async def start(
        *, dsn: str | None = None, bootstrap: bool = False, **overrides: Any
    ) -> RunningServer:
        settings = make_settings(**overrides)
        stop, stopped = trio.Event(), trio.Event()

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await serve(
                    settings,
                    dsn or db_dsn,
                    stop=stop,
                    bootstrap_first=bootstrap,
                    task_status=task_status,
                )
            finally:
                stopped.set()

        binds = await nursery.start(run)
        server = RunningServer(url=binds[0], settings=settings, stop=stop, stopped=stopped)
        running.append(server)
        return server

    yield start
    for server in running:
        await server.shutdown()


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    """A dwtrio server with admin-token auth on a fresh database."""
    return await start_server()


CP = {"X-Durable-Workflow-Control-Plane-Version": "2"}
WP = {"X-Durable-Workflow-Protocol-Version": "1.20"}

REPO_ROOT = Path(__file__).resolve().parent.parent
