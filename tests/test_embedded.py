"""The embedded PostgreSQL lifecycle: start, idempotence, stop, crash and stale recovery.

Connections are made with asyncpg in a subprocess: the test process runs
Trio.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest

from dwtrio.embedded import EmbeddedPostgres, EmbeddedPostgresError

REPO = Path(__file__).resolve().parents[1]


def select_1(dsn: str) -> None:
    code = textwrap.dedent("""
        import asyncio, sys, asyncpg
        async def main():
            conn = await asyncpg.connect(sys.argv[1])
            try:
                assert await conn.fetchval("SELECT 1") == 1
                assert await conn.fetchval("SHOW listen_addresses") == ""
            finally:
                await conn.close()
        asyncio.run(main())
    """)
    subprocess.run([sys.executable, "-c", code, dsn], check=True, timeout=60)


def postgres_procs(data_dir: Path) -> list[psutil.Process]:
    """Live postgres processes whose cwd or command line mentions ``data_dir``."""
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


def postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.pgdata / "postmaster.pid").read_text().split()[0])


def wait_dead(pid: int) -> None:
    """Wait until ``pid`` is gone or a zombie (this container's init may never reap it)."""
    try:
        proc = psutil.Process(pid)
        for _ in range(100):
            if proc.status() == psutil.STATUS_ZOMBIE:
                return
            time.sleep(0.05)
        raise AssertionError(f"{pid} still alive")
    except psutil.NoSuchProcess:
        return


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path.resolve() / "data dir"  # a space exercises the quoting


@pytest.fixture
def pg(data_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(data_dir)
    yield server
    server.stop()  # safety net: never leak a server
    assert postgres_procs(data_dir) == []


def test_start_returns_a_working_dsn_and_stop_leaves_nothing(
    pg: EmbeddedPostgres, data_dir: Path
) -> None:
    dsn = pg.start()
    host = quote(f"{data_dir}/run", safe="/")
    assert dsn == f"postgresql://postgres@/postgres?host={host}&port=5432"
    select_1(dsn)
    assert postgres_procs(data_dir)
    pg.stop()
    assert postgres_procs(data_dir) == []
    assert not (pg.pgdata / "postmaster.pid").exists()
    pg.stop()  # idempotent


def test_start_twice_is_idempotent_and_restart_works(pg: EmbeddedPostgres, data_dir: Path) -> None:
    dsn = pg.start()
    pid = postmaster_pid(pg)
    assert pg.start() == dsn
    assert postmaster_pid(pg) == pid
    assert [p.pid for p in postgres_procs(data_dir) if p.ppid() != pid] == [pid]
    pg.stop()
    with EmbeddedPostgres(data_dir) as again:  # existing cluster: no initdb
        assert again == dsn
        select_1(dsn)
    assert postgres_procs(data_dir) == []


def test_second_owner_is_refused_without_a_second_server(
    pg: EmbeddedPostgres, data_dir: Path
) -> None:
    pg.start()
    pid = postmaster_pid(pg)
    other = EmbeddedPostgres(data_dir)
    with pytest.raises(EmbeddedPostgresError, match="in use by another dwtrio process"):
        other.start()
    with pytest.raises(EmbeddedPostgresError, match="in use by another dwtrio process"):
        other.stop()
    assert postmaster_pid(pg) == pid
    assert [p.pid for p in postgres_procs(data_dir) if p.ppid() != pid] == [pid]


def test_recovers_from_a_sigkilled_owner(pg: EmbeddedPostgres, data_dir: Path) -> None:
    child_code = textwrap.dedent("""
        import sys, time
        from dwtrio.embedded import EmbeddedPostgres
        print(EmbeddedPostgres(sys.argv[1]).start(), flush=True)
        time.sleep(600)
    """)
    path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    with subprocess.Popen(
        [sys.executable, "-c", child_code, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        try:
            assert child.stdout is not None
            dsn = child.stdout.readline().strip()
        finally:
            child.kill()  # SIGKILL: nothing in the child gets to stop the server
    assert dsn.startswith("postgresql://")
    orphan = postmaster_pid(pg)
    assert psutil.Process(orphan).status() != psutil.STATUS_ZOMBIE  # nobody stopped it

    assert pg.start() == dsn
    assert postmaster_pid(pg) != orphan  # policy: the leftover is stopped, a fresh one started
    wait_dead(orphan)
    select_1(dsn)
    pg.stop()
    assert postgres_procs(data_dir) == []


def test_stale_pid_file_is_recovered(pg: EmbeddedPostgres, data_dir: Path) -> None:
    pg.start()
    pid_file = (pg.pgdata / "postmaster.pid").read_text()
    pg.stop()
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process
    stale = pid_file.replace(pid_file.split()[0], str(dead.pid), 1)
    (pg.pgdata / "postmaster.pid").write_text(stale)
    select_1(pg.start())
    pg.stop()
    assert postgres_procs(data_dir) == []


def test_sigkilled_postmaster_is_recovered(pg: EmbeddedPostgres, data_dir: Path) -> None:
    dsn = pg.start()
    pid = postmaster_pid(pg)
    os.kill(pid, signal.SIGKILL)  # leaves postmaster.pid, the socket lock and maybe backends
    wait_dead(pid)
    assert pg.start() == dsn
    assert postmaster_pid(pg) != pid
    select_1(dsn)
    pg.stop()
    assert postgres_procs(data_dir) == []


def test_long_data_dir_puts_the_socket_under_tmp(tmp_path: Path) -> None:
    deep = tmp_path.resolve() / ("d" * 60) / ("e" * 60)
    pg = EmbeddedPostgres(deep)
    assert str(pg.socket_dir).startswith("/tmp/dwtrio-pg-")
    with pg as dsn:
        assert f"host={pg.socket_dir}&" in dsn
        select_1(dsn)
    assert postgres_procs(deep) == []
    assert not pg.socket_dir.exists()  # stop() removes the /tmp fallback
