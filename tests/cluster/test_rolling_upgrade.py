"""A rolling upgrade with mixed versions under SDK load (docs/rolling-upgrades.md).

The previous release (``tests/previous_release.toml``, "N-1") is unpacked from git and
runs with this venv's python from its own tree, so its own ``dwtrio`` package and its own
``schema/`` are loaded (checked before anything starts). On one scratch database:

1. N-1 bootstraps the schema it knows; two N-1 nodes serve behind nginx; an SDK worker
   and a starter (``lb_driver.py``: greeters with an activity; waiters with a timer, a
   signal and the activity) run through the load balancer.
2. A node of this tree (N) started on that schema is not ready: its migrations are
   missing.
3. N's bootstrap migrates the database while the N-1 nodes serve.
4. The N node becomes ready and joins the load balancer.
5. N-1 node A is drained with SIGTERM while nginx still routes to it (as when an endpoint
   is removed after the signal), and comes back as an N node on the same port.
6. N-1 node B is taken out of the load balancer, then drained with SIGTERM.

Then the books: every acknowledged start completed exactly once with its result, every
history is gap-free with each step recorded once, no client saw a 5xx (nginx's own access
log, which records what clients got) but for the keep-alive close race of step 5 (at most
two 502s from A within a second of its signal), and both N-1 nodes answered polls and completions
after the migration (the same log, by upstream address). One line of figures is printed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from processes import (
    NGINX_TEMPLATE,
    NodeProcess,
    ProcessCluster,
    node_env,
    process_cluster,
    render_nginx_conf,
    serve_command,
)
from releases import Release, extract, previous_release

from dwtrio.store.migrate import label, list_migrations
from dwtrio.store.pool import Conn, connect_once

from conftest import CP, REPO_ROOT, Databases, free_port

pytestmark = [pytest.mark.sdk, pytest.mark.slow]

DRIVER = Path(__file__).with_name("lb_driver.py")
LOAD_SECONDS = 34.0
LOAD_PER_SECOND = 4.0
#: When each step starts, in seconds after the load began.
MIGRATE_AT, DRAIN_A_AT, DRAIN_B_AT = 4.0, 12.0, 22.0
#: How long after A's signal a 502 from A counts as the keep-alive close race (step 5).
CLOSE_RACE_S = 1.0

#: The default: requests in flight get this long when a node drains.
GRACEFUL_TIMEOUT_S = 10
ACCESS_FORMAT = "$msec $status $upstream_addr $upstream_status $request_method $uri"


async def run_python(args: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    """``python args`` (this venv's) in ``cwd``; its output, once it exited 0."""
    with trio.fail_after(120):
        done = await trio.run_process(
            [sys.executable, *args],
            cwd=cwd,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output
    return output


async def check_imports_from(tree: Path, env: dict[str, str]) -> None:
    """What a node started in ``tree`` with ``env`` imports: its own package and SQL."""
    code = "import dwtrio, dwtrio.store.queries as q; print(dwtrio.__file__); print(q.schema_dir())"
    package, schema = (await run_python(["-c", code], cwd=tree, env=env)).split()
    assert Path(package) == tree / "dwtrio" / "__init__.py", package
    assert Path(schema) == tree / "schema", schema


@attrs.define
class Timeline:
    began: float = attrs.field(factory=time.time)
    marks: dict[str, float] = attrs.field(factory=dict)

    def mark(self, name: str) -> float:
        self.marks[name] = now = time.time()
        return now

    async def until(self, offset_s: float) -> None:
        await trio.sleep(max(0.0, self.began + offset_s - time.time()))

    def line(self) -> str:
        return ", ".join(f"{k} +{v - self.began:.1f}s" for k, v in self.marks.items())


def access_log(cluster: ProcessCluster) -> Path:
    assert cluster.nginx is not None
    return cluster.nginx.prefix / "access.log"


async def route_to(cluster: ProcessCluster, nodes: list[NodeProcess]) -> None:
    """Point nginx at ``nodes`` (the compose config rendered again, with an access log of
    what every client got and from which node) and reload it (SIGHUP: new workers take
    the new config, old ones finish the requests they hold)."""
    nginx = cluster.nginx
    assert nginx is not None and nginx.proc is not None
    text = render_nginx_conf(
        NGINX_TEMPLATE.read_text(),
        upstreams=[f"127.0.0.1:{node.port}" for node in nodes],
        port=nginx.port,
        prefix=nginx.prefix,
    )
    assert text.count("access_log off;") == 1, "the template's access_log line moved"
    text = text.replace(
        "access_log off;",
        f"log_format upgrade '{ACCESS_FORMAT}';\n    access_log {access_log(cluster)} upgrade;",
    )
    nginx.conf.write_text(text)
    await nginx.check_config()
    nginx.proc.send_signal(signal.SIGHUP)
    await trio.sleep(0.5)  # the new workers start within milliseconds


@attrs.frozen
class Served:
    """One line of the access log."""

    at: float
    status: int
    upstreams: tuple[str, ...]
    method: str
    uri: str


def read_access_log(path: Path) -> list[Served]:
    out = []
    for line in path.read_text().splitlines():
        at, status, rest = line.split(" ", 2)
        *addresses, _upstream_status, method, uri = rest.replace(", ", ",").split(" ")
        upstreams = tuple(a for a in ",".join(addresses).split(",") if a and a != "-")
        out.append(Served(float(at), int(status), upstreams, method, uri))
    return out


def served_by(log: list[Served], node: NodeProcess, start: float, end: float) -> Counter[str]:
    """What ``node`` answered between ``start`` and ``end``: polls and completions."""
    counts: Counter[str] = Counter()
    for entry in log:
        if not (start <= entry.at <= end and entry.upstreams[-1:] == (f"127.0.0.1:{node.port}",)):
            continue
        if entry.status < 300 and entry.uri.startswith("/api/worker/"):
            counts["polls" if entry.uri.endswith("/poll") else "other worker calls"] += 1
            if entry.uri.endswith("/complete"):
                counts["completions"] += 1
    return counts


async def open_driver(args: list[str], out: Path) -> trio.Process:
    with out.open("wb") as sink:
        return await trio.lowlevel.open_process(
            [sys.executable, str(DRIVER), *args],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def last_json(path: Path) -> Any:
    return json.loads(path.read_text().strip().splitlines()[-1])


def expected_result(line: dict[str, Any]) -> Any:
    greeting = f"hello, {line['name']}"
    if line["kind"] == "greeter":
        return greeting
    return {"greeting": greeting, "items": [line["signal"]], "ok": True}


async def open_runs(dsn: str, prefix: str) -> int:
    async def count(conn: Conn) -> int:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM workflow_runs WHERE workflow_id LIKE $1"
                " AND status IN ('pending', 'running', 'waiting')",
                prefix + "-%",
            )
        )

    return await connect_once(dsn, count)


async def stuck_runs(dsn: str, prefix: str) -> list[str]:
    """The open runs with their last events and their tasks, for a failure message."""

    async def read(conn: Conn) -> list[str]:
        rows = await conn.fetch(
            "SELECT r.workflow_id, r.status,"
            "       (SELECT array_agg(e.event_type ORDER BY e.sequence) FROM history_events e"
            "         WHERE e.run_id = r.id) AS events,"
            "       (SELECT array_agg(t.kind || ':' || t.state || ':' || coalesce(t.lease_owner, '-')"
            "                         || ':' || t.attempt || ':' || t.available_at::text)"
            "          FROM workflow_tasks t WHERE t.run_id = r.id) AS tasks"
            "  FROM workflow_runs r WHERE r.workflow_id LIKE $1"
            "   AND r.status IN ('pending', 'running', 'waiting') ORDER BY r.workflow_id",
            prefix + "-%",
        )
        return [
            f"{r['workflow_id']} {r['status']} events={r['events']} tasks={r['tasks']}"
            for r in rows
        ]

    result: list[str] = await connect_once(dsn, read)
    return result


async def history_books(dsn: str, prefix: str) -> dict[str, Any]:
    """Runs per workflow id, and per run its sequence range and its events by type."""

    async def read(conn: Conn) -> dict[str, Any]:
        runs = await conn.fetch(
            "SELECT workflow_id, count(*) AS runs, min(status) AS status FROM workflow_runs"
            " WHERE workflow_id LIKE $1 GROUP BY workflow_id",
            prefix + "-%",
        )
        events = await conn.fetch(
            "SELECT r.workflow_id, count(*) AS n, count(DISTINCT e.sequence) AS distinct_n,"
            "       min(e.sequence) AS first, max(e.sequence) AS last,"
            "       jsonb_object_agg(e.event_type, 1) AS kinds,"
            "       array_agg(e.event_type ORDER BY e.sequence) AS types"
            "  FROM history_events e JOIN workflow_runs r ON r.id = e.run_id"
            " WHERE r.workflow_id LIKE $1 GROUP BY r.workflow_id",
            prefix + "-%",
        )
        return {
            "runs": {r["workflow_id"]: (r["runs"], r["status"]) for r in runs},
            "events": {
                e["workflow_id"]: (e["n"], e["distinct_n"], e["first"], e["last"], e["types"])
                for e in events
            },
        }

    result: dict[str, Any] = await connect_once(dsn, read)
    return result


def history_problems(workflow_id: str, kind: str, entry: Any) -> list[str]:
    if entry is None:
        return [f"{workflow_id}: no history"]
    n, distinct_n, first, last, types = entry
    problems = []
    if not (n == distinct_n == last and first == 1):
        problems.append(
            f"{workflow_id}: sequences {first}..{last}, {n} events ({distinct_n} distinct)"
        )
    counts = Counter(types)
    once = ["WorkflowStarted", "ActivityScheduled", "ActivityStarted", "ActivityCompleted"]
    if kind == "waiter":
        once += ["TimerScheduled", "TimerFired", "SignalReceived"]
    for event_type in once:
        if counts[event_type] != 1:
            problems.append(f"{workflow_id}: {counts[event_type]} x {event_type}")
    if types[-1] != "WorkflowCompleted" or counts["WorkflowCompleted"] != 1:
        problems.append(
            f"{workflow_id}: ends with {types[-1]} ({counts['WorkflowCompleted']} completions)"
        )
    return problems


def nginx_errors(cluster: ProcessCluster) -> list[str]:
    """nginx's own log without the refused connections (a stopped node)."""
    assert cluster.nginx is not None
    text = cluster.nginx.log.read_text(errors="replace")
    return [line[:300] for line in text.splitlines() if "refused" not in line][-20:]


def node_problems(node: NodeProcess) -> list[str]:
    text = node.log.read_text(errors="replace")
    return [
        f"{node.server_id}: {line[:200]}"
        for line in text.splitlines()
        if "Traceback" in line or "unhandled error" in line or " ERROR " in line
    ]


async def first_answer(cluster: ProcessCluster, node: NodeProcess, path: str) -> httpx.Response:
    """``GET path`` on ``node`` once it listens."""
    async with cluster.client(node.url) as client:
        with trio.fail_after(30):
            while True:
                try:
                    return await client.get(path)
                except httpx.TransportError:
                    await trio.sleep(0.1)


def run_this_tree(node: NodeProcess) -> None:
    """From its next start, ``node`` runs this tree's dwtrio."""
    node.command, node.cwd = serve_command(), REPO_ROOT
    node.env.pop("PYTHONPATH", None)


def extra_node(cluster: ProcessCluster, like: NodeProcess, server_id: str) -> NodeProcess:
    """A node of this tree with ``like``'s settings, on a port of its own (not started)."""
    port = free_port()
    node = NodeProcess(
        server_id,
        port,
        {
            **like.env,
            "DW_BIND": f"127.0.0.1:{port}",
            "DW_SERVER_ID": server_id,
            "DW_DATA_DIR": str(cluster.workdir / f"{server_id}-data"),
        },
        cluster.workdir / f"{server_id}.log",
    )
    run_this_tree(node)
    return node


def shipped_after(release: Release) -> list[str]:
    return [label(m.version, m.name) for m in list_migrations() if m.version > release.migration]


async def test_rolling_upgrade_from_the_previous_release_loses_nothing(
    databases: Databases, redis_url: str, tmp_path: Path
) -> None:
    release = previous_release()
    old_tree = extract(release, tmp_path)
    dsn = databases.dsn(await databases.create(empty=True))
    old_env = node_env(DW_DATABASE_URL=dsn, PYTHONPATH=str(old_tree))
    new_env = node_env(DW_DATABASE_URL=dsn)
    await check_imports_from(old_tree, old_env)
    await check_imports_from(REPO_ROOT, new_env)
    newer = shipped_after(release)
    assert newer, f"this tree ships no migration after {release.migration:04d}"

    # N-1 creates the schema it knows.
    out = await run_python(["-m", "dwtrio", "bootstrap"], cwd=old_tree, env=old_env)
    assert f"{release.migration:04d}_" in out and newer[0] not in out, out

    settings = {
        "DW_AUTO_BOOTSTRAP": "false",
        "DW_GRACEFUL_TIMEOUT_SECONDS": str(GRACEFUL_TIMEOUT_S),
        "PYTHONPATH": str(old_tree),
    }
    cluster_dir = tmp_path / "cluster"
    drivers: list[trio.Process] = []
    async with process_cluster(
        cluster_dir, dsn=dsn, redis_url=redis_url, settings=settings, cwd=old_tree
    ) as cluster:
        a, b = cluster.nodes
        c = extra_node(cluster, a, "node-c")
        await route_to(cluster, [a, b])
        queue = f"upgrade-{uuid.uuid4().hex[:8]}"
        try:
            worker_out, load_out = cluster_dir / "worker.out", cluster_dir / "load.out"
            starts = cluster_dir / "starts.jsonl"
            lb, token = cluster.lb_url, cluster.token
            drivers.append(await open_driver(["worker", lb, token, queue, "150", "10"], worker_out))
            await trio.sleep(2)  # the worker registers and parks its polls
            assert drivers[0].returncode is None, worker_out.read_text()[-3000:]
            t = Timeline()
            drivers.append(
                await open_driver(
                    [
                        "load",
                        lb,
                        token,
                        queue,
                        str(LOAD_SECONDS),
                        str(LOAD_PER_SECOND),
                        str(starts),
                    ],
                    load_out,
                )
            )
            load = drivers[-1]

            # N on the N-1 schema: it starts, and is not ready.
            await c.start(wait=False)
            r = await first_answer(cluster, c, "/api/ready")
            assert r.status_code == 503, r.text
            assert r.json()["checks"]["migrations"]["missing_migrations"] == newer

            await t.until(MIGRATE_AT)
            t.mark("migrate")
            out = await run_python(["-m", "dwtrio", "bootstrap"], cwd=REPO_ROOT, env=new_env)
            assert all(name in out for name in newer), out
            migrated_at = t.mark("migrated")
            await c.wait_ready()
            t.mark("c ready")
            await route_to(cluster, [a, b, c])

            await t.until(DRAIN_A_AT)
            sigterm_a = t.mark("drain a")
            assert await a.stop() == 0
            drained_a = t.mark("a gone")
            run_this_tree(a)
            await a.start()
            t.mark("a ready as N")

            await t.until(DRAIN_B_AT)
            await route_to(cluster, [a, c])
            sigterm_b = t.mark("drain b")
            assert await b.stop() == 0
            drained_b = t.mark("b gone")

            with trio.fail_after(LOAD_SECONDS + 90):
                await load.wait()
            assert load.returncode == 0, load_out.read_text()[-3000:]
            t.mark("load done")
            lines = [json.loads(x) for x in starts.read_text().splitlines()]
            prefix = last_json(load_out)["prefix"]
            with trio.move_on_after(60):
                while await open_runs(dsn, prefix):
                    await trio.sleep(0.5)
            stuck = await stuck_runs(dsn, prefix)
            assert stuck == [], (
                f"runs still open 60 s after the load ({t.line()}):\n"
                + "\n".join(stuck)
                + f"\nworker:\n{worker_out.read_text()[-3000:]}"
            )
            t.mark("all closed")
            drivers[0].send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                await drivers[0].wait()
            worker = last_json(worker_out)

            async with cluster.client(lb, **CP) as client:
                results = {}
                for line in lines:
                    if "error" not in line:
                        r = await client.get(f"/api/workflows/{line['workflow_id']}")
                        assert r.status_code == 200, r.text
                        results[line["workflow_id"]] = r.json()
            books = await history_books(dsn, prefix)
        finally:
            for proc in drivers:
                if proc.returncode is None:
                    proc.kill()
                    with trio.move_on_after(10):
                        await proc.wait()
            with trio.CancelScope(shield=True):
                await c.stop()

    acknowledged = [x for x in lines if "error" not in x]
    wrong = [
        f"{x['workflow_id']}: {results[x['workflow_id']].get('status')} "
        f"{results[x['workflow_id']].get('output')!r}"
        for x in acknowledged
        if results[x["workflow_id"]].get("status") != "completed"
        or results[x["workflow_id"]].get("output") != expected_result(x)
    ]
    duplicates = [w for w, (runs, _status) in books["runs"].items() if runs != 1]
    history = [
        p
        for x in acknowledged
        for p in history_problems(
            x["workflow_id"], x["kind"], books["events"].get(x["workflow_id"])
        )
    ]
    log = read_access_log(access_log(cluster))
    # Step 5 signals A while nginx still routes to it: a request nginx sends on an idle
    # keep-alive connection in the instant A closes it gets no answer, and nginx reports a
    # 502 without passing a POST on (it cannot know whether it was read). No server can
    # close a keep-alive connection without that race; orchestrators stop routing first
    # (docs/rolling-upgrades.md). Such a 502 is counted and tolerated only from A, within
    # a second of its signal, and at most twice; the books below must still be exact.
    a_upstream = f"127.0.0.1:{a.port}"
    close_races = [
        e
        for e in log
        if e.status == 502
        and e.upstreams == (a_upstream,)
        and 0 <= e.at - sigterm_a <= CLOSE_RACE_S
    ]
    five_xx = [e for e in log if e.status >= 500 and e not in close_races]
    after_a = served_by(log, a, migrated_at, sigterm_a)
    after_b = served_by(log, b, migrated_at, sigterm_b)
    signal_failures = [x for x in acknowledged if x.get("signal_error") or x.get("signal_failed")]
    print(
        f"\nrolling upgrade {release.commit[:10]} -> this tree: {len(lines)} starts,"
        f" {len(acknowledged)} acknowledged, {len(acknowledged) - len(wrong)} completed right,"
        f" lost/wrong {len(wrong)}, duplicate runs {len(duplicates)}, history problems"
        f" {len(history)}, client 5xx {len(five_xx)} of {len(log)} requests"
        f" (+{len(close_races)} keep-alive close races at A's signal);"
        f" drains a {drained_a - sigterm_a:.2f}s b {drained_b - sigterm_b:.2f}s;"
        f" N-1 after migration: a {dict(after_a)}, b {dict(after_b)};"
        f" SDK worker warnings {worker['warnings']}; {t.line()}"
    )
    assert [x["error"] for x in lines if "error" in x] == []
    assert signal_failures == []
    assert wrong == [] and duplicates == [] and history == []
    assert len(books["runs"]) == len(acknowledged) == int(LOAD_SECONDS * LOAD_PER_SECOND)
    nodes = {f"127.0.0.1:{n.port}": n.server_id for n in (a, b, c)}
    assert len(close_races) <= 2, close_races
    assert five_xx == [], [
        f"{e.status} {e.method} {e.uri} from {[nodes.get(u, u) for u in e.upstreams]}"
        f" at +{e.at - t.began:.3f}s"
        for e in five_xx[:10]
    ] + [t.line(), *nginx_errors(cluster)]
    assert worker["survived"], worker
    for counts in (after_a, after_b):
        assert counts["polls"] > 0 and counts["completions"] > 0, (after_a, after_b)
    assert [p for node in (a, b, c) for p in node_problems(node)] == []


WAKE_MESSAGES = """
import sys
from dwtrio.matching import wakebus
if sys.argv[1] == "encode":
    print(wakebus.CHANNEL)
    print(wakebus.encode_message("origin", ("default", "queue-1", "workflow")))
else:
    print(wakebus.decode_message(sys.argv[2]))
"""


async def test_wake_messages_travel_between_the_releases(tmp_path: Path) -> None:
    """Nodes of both releases share one Redis channel during the roll: each must read the
    other's wake messages (a lost wake only costs a recheck interval, so the load test
    alone would not notice a changed format)."""
    old_tree = extract(previous_release(), tmp_path)
    trees = {"old": (old_tree, node_env(PYTHONPATH=str(old_tree))), "new": (REPO_ROOT, node_env())}
    sent = {
        name: (await run_python(["-c", WAKE_MESSAGES, "encode"], cwd=cwd, env=env)).splitlines()
        for name, (cwd, env) in trees.items()
    }
    assert sent["old"] == sent["new"]  # one channel, one message
    for name, (cwd, env) in trees.items():
        other = sent["new" if name == "old" else "old"][1]
        decoded = await run_python(["-c", WAKE_MESSAGES, "decode", other], cwd=cwd, env=env)
        decoded = decoded.strip()
        assert decoded == "('origin', ('default', 'queue-1', 'workflow'))", (name, decoded)
