"""Shared fixtures: a real Postgres, a template database cloned per test, servers.

Postgres comes from ``DWTRIO_TEST_DSN`` (an admin DSN, e.g.
``postgresql://postgres@127.0.0.1:5432/postgres``; CI sets it) or, when unset,
from a throwaway embedded Postgres started for the session. When the variable
is set and the server is unreachable, tests fail: they never skip.

The template database gets every migration and the default namespace once per
session; each test gets its own ``CREATE DATABASE ... TEMPLATE`` copy, or a copy an
earlier test used and that was then put back to the template's state
(:class:`DatabasePool`: cloning costs Postgres far more than the reset).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
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

from dwtrio.main import run_bootstrap, serve
from dwtrio.settings import Settings
from dwtrio.store import bridge
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
    async with bridge.open_loop():
        await _admin(dsn, statement)


def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold the lock ``name``, shared by every pytest process on this machine: the
    pytest-xdist workers of this run and any other run."""
    path = Path(tempfile.gettempdir()) / f"dwtrio-tests-{name}.lock"
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """The session's Redis, for one test at a time on this machine: every dwtrio on one
    Redis shares one wake channel, so tests running at once (in other xdist workers, or
    another run) would wake each other's pollers."""
    with exclusive("redis-" + hashlib.sha256(redis_server_url.encode()).hexdigest()[:16]):
        yield redis_server_url


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
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


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, the controller makes the embedded Postgres's system user (when
    root and it is missing) before the workers start: workers starting embedded Postgres
    servers at once would otherwise race to ``useradd`` it, and all but one fail."""
    controller = not hasattr(config, "workerinput")
    if controller and getattr(config.option, "numprocesses", None):
        from dwtrio.embedded import EmbeddedPostgresError, _run_as

        with contextlib.suppress(EmbeddedPostgresError):  # the tests that need it report it
            _run_as()


#: Node id prefixes whose tests pytest-xdist sends to one worker as one unit: the cluster
#: tests (most share the session's Redis and would lock each other out one by one), the
#: database-outage runs (each loads the machine fully; see their lock), the container
#: tests (they share the images one module fixture builds), the reliability drills.
ONE_WORKER = (
    "tests/cluster/",
    "tests/sdk/test_sdk_db_outage.py",
    "tests/deploy/test_containers.py",
    "tests/drills/",
)
#: Prefixes of ONE_WORKER that join another's unit: the drills run on the cluster tests'
#: worker, one after the other, never beside them (each loads both cores of a small
#: machine with real nodes, nginx and SDK processes, and their timings would suffer).
SAME_UNIT = {"tests/drills/": "tests/cluster/"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist load`` (what ``-n`` picks), with the tests under each :data:`ONE_WORKER`
    prefix scheduled as one unit; the largest units go out first. (``xdist_group`` and
    ``--dist loadgroup`` do nothing with pytest 9.2: xdist 3.8 renames the grouped items
    through an attribute pytest no longer reads.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            prefix = next((p for p in ONE_WORKER if nodeid.startswith(p)), nodeid)
            return SAME_UNIT.get(prefix, prefix)

    return Scheduling(config, log)


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
    """The store bridge's asyncio loop for the test (it must be open in an ancestor)."""
    async with bridge.open_loop():
        yield


# The user schemas of a database: everything but the system catalogs, TOAST and temp schemas.
_USER_NAMESPACES = """
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname !~ '^pg_(toast|temp)'
"""

#: One hash of everything a test could change in a database besides its rows: schemas,
#: relations (with persistence, options, owner, grants), columns and defaults, constraints,
#: indexes, triggers, rules and views, functions, types, policies, extensions, per-database
#: settings and large objects. A recycled database must hash like the template.
_SCHEMA_FINGERPRINT = f"""
WITH ns AS ({_USER_NAMESPACES}),
rel AS (
    SELECT c.oid, c.relname, c.relkind, c.relpersistence, c.reloptions, c.relowner, c.relacl,
           c.relrowsecurity, ns.nspname
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
)
SELECT md5(string_agg(line, E'\n' ORDER BY line)) FROM (
    SELECT 'namespace ' || nspname AS line FROM ns
    UNION ALL SELECT format('relation %I.%I %s %s %s %s %s %s', nspname, relname, relkind,
                            relpersistence, reloptions, relowner, relacl, relrowsecurity)
        FROM rel
    UNION ALL SELECT format('column %I.%I %I %s %s %s %s %s', r.nspname, r.relname, a.attname,
                            format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
                            a.attgenerated, pg_get_expr(d.adbin, d.adrelid))
        FROM pg_attribute a JOIN rel r ON r.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL SELECT format('constraint %s %I %s', co.conrelid::regclass, co.conname,
                            pg_get_constraintdef(co.oid))
        FROM pg_constraint co JOIN ns ON ns.oid = co.connamespace
    UNION ALL SELECT format('sequence %s %s %s %s %s %s %s', sq.seqrelid::regclass, sq.seqtypid,
                            sq.seqstart, sq.seqincrement, sq.seqmax, sq.seqmin, sq.seqcycle)
        FROM pg_sequence sq JOIN rel r ON r.oid = sq.seqrelid
    UNION ALL SELECT 'index ' || pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN rel r ON r.oid = i.indexrelid
    UNION ALL SELECT format('trigger %s %I %s', t.tgrelid::regclass, t.tgname, t.tgenabled)
        FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal
    UNION ALL SELECT format('rule %s %I %s', rw.ev_class::regclass, rw.rulename,
                            pg_get_ruledef(rw.oid))
        FROM pg_rewrite rw JOIN rel r ON r.oid = rw.ev_class
    UNION ALL SELECT format('function %s %s', p.oid::regprocedure, md5(p.prosrc))
        FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
    UNION ALL SELECT format('type %s %s', t.oid::regtype, t.typtype)
        FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
    UNION ALL SELECT format('enum %s %s', e.enumtypid::regtype, e.enumlabel)
        FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN ns ON ns.oid = t.typnamespace
    UNION ALL SELECT format('policy %s %I', pol.polrelid::regclass, pol.polname) FROM pg_policy pol
    UNION ALL SELECT format('extension %I %s', extname, extversion) FROM pg_extension
    UNION ALL SELECT format('setting %s %s', s.setrole, s.setconfig)
        FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
        WHERE d.datname = current_database()
    UNION ALL SELECT format('database %s %s', datallowconn, datconnlimit)
        FROM pg_database WHERE datname = current_database()
    UNION ALL SELECT 'large objects ' || count(*) FROM pg_largeobject_metadata
) lines
"""

_TABLES = f"""
WITH ns AS ({_USER_NAMESPACES})
SELECT format('%I.%I', ns.nspname, c.relname) AS name, c.relkind,
       array(SELECT quote_ident(a.attname) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attgenerated = '' ORDER BY a.attnum) AS columns
FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
WHERE c.relkind IN ('r', 'S')
ORDER BY 1
"""


@attrs.frozen
class TemplateState:
    """What the bootstrapped template holds, to put a used copy back to exactly that."""

    schema: str  # _SCHEMA_FINGERPRINT of the template
    tables: tuple[tuple[str, tuple[str, ...], str], ...]  # name, insertable columns, rows as JSON
    sequences: tuple[tuple[str, int, bool], ...]  # name, last_value, is_called
    content: str  # hash of every table's rows and every sequence's state

    def content_query(self) -> str:
        parts = [
            f"(SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {name} t)"
            for name, _columns, _rows in self.tables
        ]
        parts += [
            f"(SELECT last_value::text || is_called::text FROM {name})"
            for name, *_ in self.sequences
        ]
        return "SELECT md5(" + " || ".join(["''", *parts]) + ")"


async def _template_state(conn: Conn) -> TemplateState | None:
    if not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        return None  # resetting needs session_replication_role, which only a superuser sets
    tables: list[tuple[str, tuple[str, ...], str]] = []
    sequences: list[tuple[str, int, bool]] = []
    for row in await conn.fetch(_TABLES):
        name = row["name"]
        if row["relkind"] == "S":
            seq = await conn.fetchrow(f"SELECT last_value, is_called FROM {name}")
            sequences.append((name, seq["last_value"], seq["is_called"]))
        else:
            rows = await conn.fetchval(f"SELECT coalesce(jsonb_agg(t), '[]')::text FROM {name} t")
            tables.append((name, tuple(row["columns"]), rows))
    state = TemplateState(
        await conn.fetchval(_SCHEMA_FINGERPRINT), tuple(tables), tuple(sequences), ""
    )
    return attrs.evolve(state, content=await conn.fetchval(state.content_query()))


async def _reset_to_template(conn: Conn, state: TemplateState) -> bool:
    """Put a used copy of the template back to the template's state; False if it cannot be."""
    import asyncio  # the op runs on the asyncio side of the bridge

    # The test's servers are stopped; any backend still here is on its way out, or
    # was left by a killed process: end them all, so the next test starts with none.
    others = (
        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'"
    )
    await conn.execute(f"SELECT pg_terminate_backend(pid) {others}")
    for _ in range(200):
        if not await conn.fetchval(f"SELECT count(*) {others}"):
            break
        await asyncio.sleep(0.01)
    else:
        return False
    if await conn.fetchval(_SCHEMA_FINGERPRINT) != state.schema:
        return False  # the test changed the schema: only a fresh copy will do
    # One transaction (an error closes the connection, which rolls it back).
    await conn.execute("BEGIN")
    await conn.execute("SET LOCAL session_replication_role = replica")  # no FK order
    for name, _columns, _rows in state.tables:
        await conn.execute(f"DELETE FROM {name}")
    for name, columns, rows in state.tables:
        if rows != "[]":
            cols = ", ".join(columns)
            await conn.execute(
                f"INSERT INTO {name} ({cols}) SELECT {cols}"
                f" FROM jsonb_populate_recordset(NULL::{name}, $1::text::jsonb)",
                rows,
            )
    for name, last_value, is_called in state.sequences:
        await conn.execute("SELECT setval($1::regclass, $2, $3)", name, last_value, is_called)
    await conn.execute("COMMIT")
    return bool(await conn.fetchval(state.content_query()) == state.content)


@attrs.define
class DatabasePool:
    """Copies of the template that a finished test gave back, reset to the template's state.

    ``CREATE DATABASE ... TEMPLATE`` costs Postgres about 0.2 s of work for every test;
    emptying a used copy's tables costs a few milliseconds. A copy is only reused when its
    schema still hashes like the template's and its rows and sequences, once reset, hash
    like the template's too; otherwise it is dropped as before. One pool per pytest process
    (each xdist worker has its own template and pool).
    """

    admin_dsn: str
    state: TemplateState | None
    ready: list[str] = attrs.field(factory=list)

    def take(self) -> str | None:
        return self.ready.pop() if self.ready else None

    async def give_back(self, name: str) -> bool:
        if self.state is None:
            return False
        state = self.state
        try:
            reset = await connect_once(
                with_database(self.admin_dsn, name), _reset_to_template, state
            )
        except Exception:
            reset = False
        if reset:
            self.ready.append(name)
        return reset


@pytest.fixture(scope="session")
def database_pool(pg_admin_dsn: str, template_db: str) -> Iterator[DatabasePool]:
    async def read_state() -> TemplateState | None:
        async with bridge.open_loop():
            return await connect_once(with_database(pg_admin_dsn, template_db), _template_state)

    pool = DatabasePool(pg_admin_dsn, trio.run(read_state))
    yield pool
    for name in pool.ready:
        trio.run(_admin_in_loop, pg_admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@attrs.define
class Databases:
    """Per-test databases on the test Postgres, each in the template's state; gone for the
    test when it ends (reset into the pool for a later test, or dropped)."""

    admin_dsn: str
    template: str
    pool: DatabasePool | None = None
    created: list[str] = attrs.field(factory=list)
    copies: set[str] = attrs.field(factory=set)

    async def create(self, *, empty: bool = False) -> str:
        """A new database: a copy of the bootstrapped template, or ``empty``."""
        if not empty and self.pool is not None and (name := self.pool.take()) is not None:
            self.created.append(name)
            self.copies.add(name)
            return name
        name = f"dwtrio_t_{uuid.uuid4().hex[:12]}"
        template = "template0" if empty else f'"{self.template}"'
        await _admin(self.admin_dsn, f'CREATE DATABASE "{name}" TEMPLATE {template}')
        self.created.append(name)
        if not empty:
            self.copies.add(name)
        return name

    async def drop(self, name: str) -> None:
        await _admin(self.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def release(self) -> None:
        """At the test's end: each copy of the template back to the pool, the rest dropped."""
        for name in dict.fromkeys(self.created):
            if name in self.copies and self.pool is not None and await self.pool.give_back(name):
                continue
            await self.drop(name)

    def dsn(self, name: str) -> str:
        return with_database(self.admin_dsn, name)


@pytest.fixture
async def databases(
    aio_loop: None, pg_admin_dsn: str, template_db: str, database_pool: DatabasePool
) -> AsyncIterator[Databases]:
    dbs = Databases(pg_admin_dsn, template_db, database_pool)
    yield dbs
    with trio.CancelScope(shield=True):  # cleanup must finish even if the test was cancelled
        await dbs.release()


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
