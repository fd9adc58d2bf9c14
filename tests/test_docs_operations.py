"""docs/operations.md's recovery runbook runs as written.

The blocks of the "Backup and restore" section run in order against real
servers and databases: each ``sh`` block after the first (which sets the
variables) with bash, the ``python`` block with the official SDK in its own
interpreter. Before the restore the variables point at a test server and its
database; the block that starts ``dwtrio serve`` is run in the background on
the restored database, and the blocks after it address that server. What each
block prints must match the ``text`` block right after it. ``pg_dump``,
``pg_restore``, ``createdb`` and ``psql`` must be installed: the test fails
without them rather than skipping.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import trio
from docs_examples import DOCUMENTED_URL, Example, Page

from dwtrio.embedded import bin_dir as embedded_bin_dir

from conftest import REPO_ROOT, StartServer, free_port, with_database

DOC = (REPO_ROOT / "docs" / "operations.md").read_text()
DOCUMENTED_ADMIN_DB = "postgresql://postgres@127.0.0.1:5432/postgres"
DOCUMENTED_DB = "postgresql://postgres@127.0.0.1:5432/dwtrio"
DOCUMENTED_RESTORED_DB = "postgresql://postgres@127.0.0.1:5432/dwtrio_restored"
TOOLS = ("pg_dump", "pg_restore", "createdb", "psql", "curl", "jq")


def runbook() -> tuple[str, int]:
    """The two recovery sections (backup and restore, after a restore) and where they start."""
    start = DOC.index("\n## Backup and restore\n")
    after = DOC.index("\n## After a restore\n", start)
    end = DOC.find("\n## ", after + 1)
    return DOC[start : end if end != -1 else len(DOC)], DOC.count("\n", 0, start) + 1


def examples() -> list[Example]:
    text, first_line = runbook()
    return Page("docs/operations.md", text, first_line).examples("sh", "python")


assert_prints = Page.load("docs/operations.md").assert_prints


def test_the_runbook_has_the_steps_it_promises() -> None:
    found = examples()
    setup, *rest = found
    assert setup.language == "sh" and "RESTORED_DB=" in setup.code and setup.prints is None
    code = "\n".join(e.code for e in rest)
    for step in ("pg_dump --format=custom", "pg_restore", "createdb", "dwtrio serve"):
        assert step in code, step
    for check in (
        "/api/ready",
        "/api/cluster/info",
        "/api/worker/register",
        "/api/worker/heartbeat",
    ):
        assert check in code, check
    serve = [e for e in rest if "dwtrio serve" in e.code]
    assert len(serve) == 1 and serve[0].prints is None
    assert [e.line for e in rest if e.prints is None] == [serve[0].line]
    assert sum(e.language == "python" for e in rest) == 1


async def run_block(argv: list[str], example: Example, cwd: Path) -> str:
    with trio.fail_after(120):
        proc = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, check=False, cwd=cwd, env=environment()
        )
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, (
        f"the block at docs/operations.md:{example.line} failed ({proc.returncode}):\n{err}\n{out}"
    )
    return out


def environment() -> dict[str, str]:
    """The test's environment without DW_* settings, with this venv's ``dwtrio`` on PATH.

    Without ``DWTRIO_TEST_DSN`` the tests run on the embedded PostgreSQL of the pip
    wheel: its own client tools come first, so pg_dump matches the server's version
    (and a machine with no PostgreSQL installed has them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DW_")}
    path = [str(Path(sys.executable).parent)]
    if not os.environ.get("DWTRIO_TEST_DSN"):
        path.append(str(embedded_bin_dir()))
    env["PATH"] = os.pathsep.join([*path, env.get("PATH", "")])
    return env


async def wait_ready(url: str, proc: trio.Process, log: Path) -> None:
    async with httpx.AsyncClient() as client:
        with trio.fail_after(90):
            while True:
                try:
                    if (await client.get(f"{url}/api/ready", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert proc.returncode is None, f"dwtrio serve exited:\n{log.read_text()}"
                await trio.sleep(0.1)


async def test_backup_restore_and_verify_as_written(
    start_server: StartServer, db_dsn: str, pg_admin_dsn: str, tmp_path: Path
) -> None:
    search = environment()["PATH"]
    missing = [tool for tool in TOOLS if shutil.which(tool, path=search) is None]
    assert not missing, f"the runbook needs {missing} installed"
    old = await start_server(admin_token=None, auth_token="dev-token")
    restored_name = f"dwtrio_restored_{uuid.uuid4().hex[:10]}"
    restored_dsn = with_database(pg_admin_dsn, restored_name)
    port = free_port()
    new_url = f"http://127.0.0.1:{port}"

    def localize(code: str, url: str) -> str:
        code = code.replace(DOCUMENTED_RESTORED_DB, "@RESTORED@").replace(DOCUMENTED_DB, "@DB@")
        code = code.replace(DOCUMENTED_ADMIN_DB, "@ADMIN@").replace(" dwtrio_restored", " @NAME@")
        code = code.replace(DOCUMENTED_URL, url).replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        # Quoted: an embedded Postgres's DSN is a socket path with query parameters
        # (``?host=...&port=...``), and a bare ``&`` would background the assignment.
        return (
            code.replace("@RESTORED@", shlex.quote(restored_dsn))
            .replace("@DB@", shlex.quote(db_dsn))
            .replace("@ADMIN@", shlex.quote(pg_admin_dsn))
            .replace("@NAME@", restored_name)
        )

    setup, *rest = examples()
    url = old.url
    server: trio.Process | None = None
    log = tmp_path / "serve.log"
    try:
        for example in rest:
            if "dwtrio serve" in example.code:
                await old.shutdown()  # every server moves to the restored database
                script = localize(setup.code + example.code, new_url)
                with log.open("wb") as sink:
                    server = await trio.lowlevel.open_process(
                        ["bash", "-euo", "pipefail", "-c", script],
                        cwd=tmp_path,
                        env=environment(),
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # bash and dwtrio: stopped together below
                    )
                await wait_ready(new_url, server, log)
                url = new_url
                continue
            if example.language == "sh":
                script = localize(setup.code + example.code, url)
                out = await run_block(["bash", "-euo", "pipefail", "-c", script], example, tmp_path)
            else:
                path = tmp_path / "example.py"
                path.write_text(localize(example.code, url))
                out = await run_block([sys.executable, str(path)], example, tmp_path)
            assert_prints(example, out)
        assert server is not None, "the runbook never started dwtrio on the restored database"
    finally:
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            with trio.move_on_after(30):
                await server.wait()
            if server.returncode is None:
                os.killpg(server.pid, signal.SIGKILL)
        with trio.fail_after(60):
            await trio.run_process(
                [
                    "dropdb",
                    "--if-exists",
                    "--force",
                    f"--maintenance-db={pg_admin_dsn}",
                    restored_name,
                ],
                check=False,
            )
