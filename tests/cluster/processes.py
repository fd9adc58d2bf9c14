"""A small dwtrio cluster made of real processes: ``dwtrio serve`` nodes and an nginx in
front of them, on loopback, for tests that need what in-process servers cannot give
(a node killed with SIGKILL, a restart on the same port, an older build beside a newer
one, a real load balancer between the SDK and the nodes).

    async with process_cluster(tmp_path, dsn=db_dsn, redis_url=redis_url) as cluster:
        async with cluster.client(cluster.lb_url) as c: ...
        await cluster.nodes[0].kill()
        await cluster.nodes[0].restart()

Every node and nginx write their output to a log file under the work dir; when the block
fails, the tail of each log is printed (pytest shows it with the failure) and
:meth:`ProcessCluster.logs` gives the same text for an assertion message. Every wait
is bounded; whatever is still running when the block ends is stopped (SIGTERM, then
SIGKILL), even when the test was cancelled.

A node's command line is overridable (:attr:`NodeProcess.command`, :attr:`NodeProcess.cwd`,
extra environment), so a node can run another dwtrio (an older build from a git worktree,
with its own python) on the same database and Redis.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from conftest import REPO_ROOT, client_ssl_context, free_port

TOKEN = "cluster-token"
NGINX_TEMPLATE = REPO_ROOT / "compose" / "small-cluster" / "nginx.conf"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
TAIL_LINES = 40

#: What ``dwtrio serve`` runs with unless a test says otherwise: small pools (two cores
#: are shared by every node and the SDK processes), a short drain.
NODE_DEFAULTS: dict[str, str] = {
    "DW_DB_POOL_MIN_SIZE": "1",
    "DW_DB_POOL_MAX_SIZE": "8",
    "DW_GRACEFUL_TIMEOUT_SECONDS": "3",
}


def serve_command(python: str = sys.executable) -> list[str]:
    """The command line of one node: ``python -m dwtrio serve``."""
    return [python, "-m", "dwtrio", "serve"]


def node_env(**values: str) -> dict[str, str]:
    """This process's environment without any DW_* / DWTRIO_* variable, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DW_", "DWTRIO_"))}
    env.update(values)
    return env


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    if not path.exists():
        return f"({path.name}: no output)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(text)


@attrs.define(eq=False)
class NodeProcess:
    """One ``dwtrio serve`` child on its own port. ``start``/``stop``/``kill``/``restart``
    keep the port, the server id and the environment; the log file collects the output
    of every start, each one after a ``=== start N ===`` line."""

    server_id: str
    port: int
    env: dict[str, str]
    log: Path
    command: list[str] = attrs.field(factory=serve_command)
    cwd: Path | None = None
    proc: trio.Process | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, *, wait: bool = True) -> None:
        assert not self.running, f"{self.server_id} is already running"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"=== start {self.starts}: {' '.join(self.command)} ===\n".encode())
            out.flush()
            self.proc = await trio.lowlevel.open_process(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if wait:
            await self.wait_ready()

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Poll ``GET /api/ready`` until it answers 200; fail if the process exits first or
        time runs out."""
        assert self.proc is not None
        last = "no answer"
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as c:
            with trio.move_on_after(timeout_s):
                while True:
                    if self.proc.returncode is not None:
                        raise AssertionError(
                            f"{self.server_id} exited with {self.proc.returncode} before it "
                            f"was ready:\n{self.tail()}"
                        )
                    try:
                        r = await c.get("/api/ready")
                    except httpx.TransportError as exc:
                        last = repr(exc)
                    else:
                        if r.status_code == 200:
                            body: dict[str, Any] = r.json()
                            return body
                        last = f"{r.status_code} {r.text}"
                    await trio.sleep(0.05)
        raise AssertionError(
            f"{self.server_id} not ready after {timeout_s}s ({last}):\n{self.tail()}"
        )

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (the node drains), then wait; return the exit code. A node still running
        after ``timeout_s`` is killed and the test fails."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.returncode is not None:
            return proc.returncode
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(timeout_s):
            return await proc.wait()
        await self.kill()
        raise AssertionError(
            f"{self.server_id} still running {timeout_s}s after SIGTERM:\n{self.tail()}"
        )

    async def kill(self) -> int:
        """SIGKILL: the node dies at once, with whatever it held (parked polls, requests in
        flight, pooled connections). Returns the exit code (``-SIGKILL``)."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.returncode is None:
            proc.kill()
            with trio.fail_after(STOP_TIMEOUT_S):
                await proc.wait()
        assert proc.returncode is not None
        return proc.returncode

    async def restart(self, *, graceful: bool = True) -> None:
        """Stop (SIGTERM, or SIGKILL when not ``graceful``) if running, start again on the
        same port with the current :attr:`command`, and wait until ready."""
        if graceful:
            await self.stop()
        else:
            await self.kill()
        await self.start()

    def tail(self, lines: int = TAIL_LINES) -> str:
        return tail(self.log, lines)


def find_nginx() -> str:
    """The nginx binary; the test fails (it never skips) when there is none."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        pytest.fail(
            "nginx is not installed: the process cluster tests put nginx in front of the "
            "nodes. Install it (Debian: apt-get install -y nginx-light); .ci/run and, as root, "
            "tests/run do that themselves."
        )
    return found


_UPSTREAM = re.compile(r"(upstream\s+dwtrio\s*\{)(.*?)(\})", re.S)
_SERVER_LINE = re.compile(r"^([ \t]*)server\s+\S+(.*?);[ \t]*\n", re.M)
_LISTEN = re.compile(r"^([ \t]*)listen\s+[^;]+;", re.M)
_PATHS = re.compile(r"^([ \t]*)(pid|\w+_temp_path)\s+[^;]+;", re.M)


def render_nginx_conf(template: str, *, upstreams: Sequence[str], port: int, prefix: Path) -> str:
    """``compose/small-cluster/nginx.conf`` for a test: one upstream ``server`` line per
    address in ``upstreams`` (each keeping the template's parameters), listening on
    127.0.0.1:``port``, with its pid file and temp dirs under ``prefix``."""
    block = _UPSTREAM.search(template)
    assert block is not None, "nginx.conf has no `upstream dwtrio { ... }` block"
    first = _SERVER_LINE.search(block.group(2))
    assert first is not None, "the upstream block has no `server host:port ...;` line"
    indent, params = first.group(1), first.group(2)
    servers = "".join(f"{indent}server {address}{params};\n" for address in upstreams)
    body = _SERVER_LINE.sub("", block.group(2), count=0)
    body = body.replace("\n", "\n" + servers, 1)  # the servers open the block, as before
    text = template[: block.start(2)] + body + template[block.end(2) :]
    assert len(_LISTEN.findall(text)) == 1, "nginx.conf should have exactly one `listen` line"
    text = _LISTEN.sub(rf"\g<1>listen 127.0.0.1:{port};", text)

    def local_path(match: re.Match[str]) -> str:
        name = match.group(2)
        target = prefix / ("nginx.pid" if name == "pid" else name.removesuffix("_path"))
        return f"{match.group(1)}{name} {target};"

    text = _PATHS.sub(local_path, text)
    if os.geteuid() == 0:
        # As root, nginx's workers would switch to `nobody`, who cannot enter pytest's
        # private tmp dirs to reach the temp paths: a test's nginx keeps root's rights.
        text = "user root;\n" + text
    return text


@attrs.define(eq=False)
class NginxProcess:
    """nginx in the foreground (``daemon off``) on a rendered copy of the compose config."""

    binary: str
    conf: Path
    prefix: Path
    port: int
    log: Path
    proc: trio.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _args(self, *extra: str) -> list[str]:
        return [self.binary, "-c", str(self.conf), "-p", str(self.prefix), "-e", "stderr", *extra]

    async def check_config(self) -> str:
        """``nginx -t`` on the rendered file; fail with its output unless it passes."""
        with trio.fail_after(STOP_TIMEOUT_S):
            done = await trio.run_process(
                self._args("-t"), capture_stdout=True, capture_stderr=True, check=False
            )
        output = (done.stdout + done.stderr).decode(errors="replace")
        assert done.returncode == 0 and "test is successful" in output, (
            f"nginx -t failed on {self.conf}:\n{output}\n{self.conf.read_text()}"
        )
        return output

    async def start(self, timeout_s: float = 10.0) -> None:
        with self.log.open("ab") as out:
            self.proc = await trio.lowlevel.open_process(
                self._args("-g", "daemon off;"),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        with trio.move_on_after(timeout_s):
            while True:
                if self.proc.returncode is not None:
                    raise AssertionError(
                        f"nginx exited with {self.proc.returncode}:\n{tail(self.log)}"
                    )
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", self.port)
                except OSError:
                    await trio.sleep(0.05)
                    continue
                await stream.aclose()
                return
        raise AssertionError(f"nginx not listening after {timeout_s}s:\n{tail(self.log)}")

    async def stop(self) -> None:
        """SIGQUIT (graceful: nginx lets open requests finish), SIGKILL if it lingers."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGQUIT)
        with trio.move_on_after(5):
            await proc.wait()
            return
        proc.kill()
        with trio.fail_after(STOP_TIMEOUT_S):
            await proc.wait()


@attrs.define(eq=False)
class ProcessCluster:
    nodes: list[NodeProcess]
    nginx: NginxProcess | None
    workdir: Path
    token: str

    @property
    def lb_url(self) -> str:
        assert self.nginx is not None, "this cluster has no load balancer"
        return self.nginx.url

    def client(self, url: str, *, token: str | None = None, **headers: str) -> httpx.AsyncClient:
        """An HTTP client for ``url`` (the load balancer or one node) with the cluster's
        token (``token=""`` sends none)."""
        token = self.token if token is None else token
        base = {"Authorization": f"Bearer {token}"} if token else {}
        base.update(headers)
        return httpx.AsyncClient(
            base_url=url, headers=base, timeout=30, verify=client_ssl_context()
        )

    def logs(self, lines: int = TAIL_LINES) -> str:
        """The tail of every log, for an assertion message."""
        parts = [
            f"--- {node.server_id} ({node.log}) ---\n{node.tail(lines)}" for node in self.nodes
        ]
        if self.nginx is not None:
            parts.append(f"--- nginx ({self.nginx.log}) ---\n{tail(self.nginx.log, lines)}")
        return "\n".join(parts)

    async def stop_all(self) -> None:
        """nginx first, then every node (SIGTERM in parallel; SIGKILL for a node that hangs)."""
        if self.nginx is not None:
            await self.nginx.stop()

        async def stop_node(node: NodeProcess) -> None:
            try:
                await node.stop()
            except AssertionError:
                traceback.print_exc()

        async with trio.open_nursery() as nursery:
            for node in self.nodes:
                nursery.start_soon(stop_node, node)


def letter(i: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[i]


@asynccontextmanager
async def process_cluster(
    workdir: Path,
    *,
    dsn: str,
    redis_url: str | None,
    nodes: int = 2,
    token: str = TOKEN,
    settings: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
    cwd: Path | None = None,
    nginx: bool = True,
) -> AsyncIterator[ProcessCluster]:
    """Start ``nodes`` dwtrio processes on ``dsn`` (and ``redis_url``, if any) and, with
    ``nginx``, a load balancer in front of them; yield the cluster, stop it all after.

    Node ``i`` is ``node-a``, ``node-b``, ... (its ``DW_SERVER_ID``), on a free port, with
    ``DW_AUTH_TOKEN=token`` (valid on both planes), :data:`NODE_DEFAULTS` and ``settings``
    (``DW_*`` names, taking precedence over the defaults) in its environment; ``command``/``cwd`` replace
    ``python -m dwtrio serve`` in the repository for every node (a test may still change
    one node's :attr:`NodeProcess.command` before a restart).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    members: list[NodeProcess] = []
    for i in range(nodes):
        port = free_port()
        server_id = f"node-{letter(i)}"
        env = node_env(
            DW_DATABASE_URL=dsn,
            DW_BIND=f"127.0.0.1:{port}",
            DW_SERVER_ID=server_id,
            DW_AUTH_TOKEN=token,
            DW_DATA_DIR=str(workdir / f"{server_id}-data"),
            **{**NODE_DEFAULTS, **(settings or {})},
        )
        if redis_url is not None:
            env["DW_REDIS_URL"] = redis_url
        members.append(
            NodeProcess(
                server_id,
                port,
                env,
                workdir / f"{server_id}.log",
                command=list(command) if command is not None else serve_command(),
                cwd=cwd if cwd is not None else REPO_ROOT,
            )
        )
    cluster = ProcessCluster(members, None, workdir, token)
    try:
        async with trio.open_nursery() as nursery:
            for node in members:
                nursery.start_soon(node.start)
        if nginx:
            prefix = workdir / "nginx"
            prefix.mkdir(exist_ok=True)
            port = free_port()
            conf = prefix / "nginx.conf"
            conf.write_text(
                render_nginx_conf(
                    NGINX_TEMPLATE.read_text(),
                    upstreams=[f"127.0.0.1:{node.port}" for node in members],
                    port=port,
                    prefix=prefix,
                )
            )
            cluster.nginx = NginxProcess(find_nginx(), conf, prefix, port, workdir / "nginx.log")
            await cluster.nginx.check_config()
            await cluster.nginx.start()
        yield cluster
    except BaseException:
        print(f"process cluster logs (tails):\n{cluster.logs()}", file=sys.stderr)
        raise
    finally:
        with trio.CancelScope(shield=True):
            await cluster.stop_all()
