"""Operator metrics, the process metrics snapshot and system health over real HTTP.

Contract: control-plane.md §3.6 and §11 (admin routes, namespace-scoped, the two
metrics envelopes), cluster-info-and-readiness.md §3.8 (the coordination-health
shape). dwtrio's own choices are in docs/operations.md: runs by status come from
counters kept by triggers (migration 0007), ``running`` is every open run, the
health checks and their thresholds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import httpx
import pytest
import trio

from dwtrio import payloads
from dwtrio.store.pool import Conn, connect_once

from conftest import ADMIN_TOKEN, CP, WP, RunningServer, StartServer

OPERATOR_TOKEN = "op-token"
WORKER_TOKEN = "wk-token"
Q = "mq"
DONE = [{"type": "complete_workflow", "result": {"codec": "avro", "blob": payloads.encode(1)}}]
FAIL = [{"type": "fail_workflow", "message": "boom"}]
OPERATOR_METRICS_KEYS = [
    "generated_at",
    "runs",
    "tasks",
    "backlog",
    "repair",
    "workers",
    "schedules",
    "backend",
    "structural_limits",
]
HEALTH_KEYS = [
    "schema",
    "version",
    "namespace_scope",
    "status",
    "http_status",
    "generated_at",
    "categories",
    "warning_checks",
    "error_checks",
    "checks",
    "routing_drains",
]


@attrs.define
class System:
    server: RunningServer
    dsn: str
    admin: httpx.AsyncClient
    operator: httpx.AsyncClient
    worker: httpx.AsyncClient

    async def operator_metrics(self, namespace: str = "default") -> dict[str, Any]:
        r = await self.admin.get("/api/system/operator-metrics", headers={"X-Namespace": namespace})
        assert r.status_code == 200, r.text
        assert r.headers["X-Durable-Workflow-Control-Plane-Version"] == "2"
        body = r.json()
        assert list(body) == ["namespace", "operator_metrics"]
        assert body["namespace"] == namespace
        assert list(body["operator_metrics"]) == OPERATOR_METRICS_KEYS
        return body["operator_metrics"]  # type: ignore[no-any-return]

    async def runs(self, namespace: str = "default") -> dict[str, int]:
        return (await self.operator_metrics(namespace))["runs"]  # type: ignore[no-any-return]

    async def health(self, status: int = 200) -> dict[str, Any]:
        r = await self.admin.get("/api/system/health")
        assert r.status_code == status, r.text
        body = r.json()
        # (an error answer may also carry the request log's request_id)
        assert [k for k in body if k != "request_id"] == HEALTH_KEYS
        assert body["http_status"] == status
        return body  # type: ignore[no-any-return]

    async def start(self, workflow_id: str, namespace: str = "default") -> None:
        r = await self.admin.post(
            "/api/workflows",
            json={"workflow_id": workflow_id, "workflow_type": "greeter", "task_queue": Q},
            headers={"X-Namespace": namespace},
        )
        assert r.status_code == 201, r.text

    async def finish(self, commands: list[dict[str, Any]], namespace: str = "default") -> None:
        """Lease the next workflow task of the namespace and answer it with ``commands``."""
        r = await self.worker.post(
            "/api/worker/workflow-tasks/poll",
            json={"worker_id": "w1", "task_queue": Q, "timeout_seconds": 2},
            headers={"X-Namespace": namespace},
        )
        assert r.status_code == 200, r.text
        task = r.json()["task"]
        assert task is not None
        r = await self.worker.post(
            f"/api/worker/workflow-tasks/{task['task_id']}/complete",
            json={
                "lease_owner": task["lease_owner"],
                "workflow_task_attempt": task["workflow_task_attempt"],
                "commands": commands,
            },
            headers={"X-Namespace": namespace},
        )
        assert r.status_code == 200, r.text

    async def terminate(self, workflow_id: str, namespace: str = "default") -> None:
        r = await self.admin.post(
            f"/api/workflows/{workflow_id}/terminate",
            json={"reason": "test"},
            headers={"X-Namespace": namespace},
        )
        assert r.status_code == 200, r.text

    async def sql(self, statement: str, *args: Any) -> Any:
        async def run(conn: Conn) -> Any:
            return await conn.fetch(statement, *args)

        return await connect_once(self.dsn, run)


async def open_system(start_server: StartServer, db: str, **settings: Any) -> System:
    server = await start_server(
        operator_token=OPERATOR_TOKEN, worker_token=WORKER_TOKEN, **settings
    )
    return System(
        server,
        db,
        server.client(ADMIN_TOKEN, **CP),
        server.client(OPERATOR_TOKEN, **CP),
        server.client(WORKER_TOKEN, **WP),
    )


@pytest.fixture
async def system(start_server: StartServer, db_dsn: str) -> AsyncIterator[System]:
    s = await open_system(start_server, db_dsn)
    async with s.admin, s.operator, s.worker:
        yield s


async def test_admin_only_and_namespace_scoped(system: System) -> None:
    for path in ("/api/system/operator-metrics", "/api/system/metrics", "/api/system/health"):
        r = await system.operator.get(path)
        assert r.status_code == 403, r.text
        assert r.json()["reason"] == "forbidden"
        assert r.json()["allowed_roles"] == ["admin"]
        r = await system.admin.get(path, headers={"X-Namespace": "nope"})
        assert r.status_code == 404 and r.json()["reason"] == "namespace_not_found", r.text
        r = await system.admin.get(path, headers={"X-Durable-Workflow-Control-Plane-Version": "1"})
        assert r.status_code == 400, r.text


async def test_an_empty_namespace(system: System) -> None:
    m = await system.operator_metrics()
    assert m["runs"] == {
        "total": 0,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "terminated": 0,
    }
    assert m["tasks"]["ready"] == 0 and m["tasks"]["task_queues"] == 0
    assert m["backlog"]["oldest_ready_task_age_seconds"] is None
    assert m["repair"]["candidates"] == 0 and m["repair"]["needs_attention"] is False
    assert m["workers"] == {"active": 0, "draining": 0, "stale": 0, "stale_after_seconds": 60}
    assert m["schedules"]["due"] == 0 and m["schedules"]["oldest_next_fire_at"] is None
    db = m["backend"]["database"]
    assert db["driver"] == "postgresql" and db["server_version_num"] >= 140000
    assert db["schema_version"] >= 7
    assert m["backend"]["pool"]["max_size"] == 8
    assert m["backend"]["wake_bus"]["kind"] == "in_process"
    assert m["backend"]["wake_bus"]["health"] == {"status": "ok", "store": "in_process"}
    assert m["structural_limits"]["payload_size_bytes"] == 2 * 1024 * 1024
    assert m["structural_limits"]["pending_activities"] == 2000


async def test_runs_by_status_follow_starts_closes_and_namespaces(system: System) -> None:
    r = await system.admin.post("/api/namespaces", json={"name": "billing"})
    assert r.status_code == 201, r.text
    for i in range(4):
        await system.start(f"d-{i}")
    for i in range(3):
        await system.start(f"b-{i}", "billing")
    assert (await system.runs())["running"] == 4
    assert (await system.runs("billing")) == {
        "total": 3,
        "running": 3,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "terminated": 0,
    }
    m = await system.operator_metrics()
    assert m["tasks"]["workflow_tasks"]["ready"] == 4 and m["tasks"]["task_queues"] == 1
    assert m["backlog"]["runnable_tasks"] == 4 and m["backlog"]["oldest_ready_task_queue"] == Q

    await system.finish(DONE)  # one completes
    await system.finish(FAIL)  # one fails
    await system.terminate("d-3")
    await system.finish(DONE, "billing")
    assert await system.runs() == {
        "total": 4,
        "running": 1,
        "completed": 1,
        "failed": 1,
        "cancelled": 0,
        "terminated": 1,
    }
    billing = await system.runs("billing")
    assert (billing["running"], billing["completed"], billing["total"]) == (2, 1, 3)
    # The counters are what a count of the rows says.
    rows = await system.sql(
        "SELECT namespace, status, count(*) FROM workflow_runs GROUP BY 1, 2 ORDER BY 1, 2"
    )
    counted = await system.sql(
        "SELECT namespace, status, sum(count)::bigint FROM run_status_counts"
        " GROUP BY 1, 2 HAVING sum(count) <> 0 ORDER BY 1, 2"
    )
    open_statuses = ("pending", "running", "waiting")
    expected: dict[tuple[str, str], int] = {}
    for ns, status, n in rows:
        key = (ns, "open" if status in open_statuses else status)
        expected[key] = expected.get(key, 0) + n
    assert {(ns, s): n for ns, s, n in counted} == expected


async def test_counters_stay_exact_under_concurrent_transitions(system: System) -> None:
    """32 starts and then their terminations, 16 at a time, on separate connections."""
    n = 32

    async def start(i: int) -> None:
        await system.start(f"c-{i}")

    async def terminate(i: int) -> None:
        await system.terminate(f"c-{i}")

    for op in (start, terminate):
        limiter = trio.CapacityLimiter(16)

        async def run(i: int, op: Any = op, limiter: trio.CapacityLimiter = limiter) -> None:
            async with limiter:
                await op(i)

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(run, i)
        runs = await system.runs()
        expected_terminated = n if op is terminate else 0
        assert runs["terminated"] == expected_terminated, runs
        assert runs["running"] == n - expected_terminated, runs
        assert runs["total"] == n
    # The writes were spread over more than one shard row.
    shards = await system.sql(
        "SELECT count(DISTINCT shard) FROM run_status_counts WHERE namespace = 'default'"
    )
    assert shards[0][0] >= 1


async def test_repair_figures_and_the_expired_leases_check(
    start_server: StartServer, db_dsn: str
) -> None:
    s = await open_system(start_server, db_dsn, task_repair_interval_s=3600.0)
    async with s.admin, s.operator, s.worker:
        await s.start("r-1")
        r = await s.worker.post(
            "/api/worker/workflow-tasks/poll",
            json={"worker_id": "w-lost", "task_queue": Q, "timeout_seconds": 1},
        )
        assert r.json()["task"] is not None
        # The lease ran out a day ago and task repair (hourly here) has not been by.
        await s.sql(
            "UPDATE workflow_tasks SET lease_expires_at = now() - interval '1 day'"
            " WHERE state = 'leased'"
        )
        m = await s.operator_metrics()
        assert m["tasks"]["leased"] == 1 and m["tasks"]["lease_expired"] == 1
        assert m["tasks"]["workflow_tasks"]["lease_expired"] == 1
        assert m["tasks"]["activity_tasks"]["lease_expired"] == 0
        assert m["repair"]["expired_leases"] == 1 and m["repair"]["candidates"] == 1
        assert m["repair"]["needs_attention"] is True
        assert m["repair"]["oldest_lease_expired_at"] is not None
        health = await s.health()
        assert health["warning_checks"] == ["expired_leases"]
        leases = check(health, "expired_leases")
        assert leases["expired_leases"] == 1 and leases["repair_grace_seconds"] == 10800.0


async def test_system_metrics_snapshot(system: System) -> None:
    await system.health()
    r = await system.admin.get("/api/system/metrics")
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["generated_at", "namespace", "metrics", "cardinality"]
    assert body["namespace"] == "default"
    metrics = body["metrics"]
    for key in ("process", "matching", "wake_bus", "store", "background_loops", "prometheus"):
        assert key in metrics, key
    assert set(metrics["background_loops"]) >= {"task_repair", "timer", "timeouts", "scheduler"}
    assert metrics["store"]["pool"]["max_size"] == 8
    label_sets = body["cardinality"]["metric_label_sets"]
    assert set(label_sets) == set(metrics["prometheus"])
    for name, family in metrics["prometheus"].items():
        assert label_sets[name] == len(family["values"])


def check(body: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in body["checks"] if c["name"] == name]
    return found


async def test_health_ok(system: System) -> None:
    body = await system.health()
    assert body["schema"] == "durable-workflow.v2.coordination-health.contract"
    assert body["version"] == 1 and body["namespace_scope"] == "default"
    assert body["status"] == "ok", body
    assert body["warning_checks"] == [] and body["error_checks"] == []
    names = [c["name"] for c in body["checks"]]
    assert names[:3] == ["database", "migrations", "wake_bus"]
    for loop in ("task_repair", "timer", "timeouts", "scheduler"):
        assert f"background_loop.{loop}" in names
    assert names[-4:] == ["task_backlog_age", "expired_leases", "stale_workers", "schedule_lag"]
    assert body["categories"]["correctness"]["status"] == "ok"
    assert body["categories"]["acceleration"] == {"status": "ok", "check_count": 1}
    for c in body["checks"]:
        assert list(c)[:4] == ["name", "status", "category", "blocking"]
    assert check(body, "database")["blocking"] is True
    assert body["routing_drains"]["queues"] == []


async def test_health_warns_about_a_dead_wake_bus(start_server: StartServer, db_dsn: str) -> None:
    # Nothing listens on port 1: the Redis wake bus never connects.
    s = await open_system(start_server, db_dsn, redis_url="redis://127.0.0.1:1/0")
    async with s.admin, s.operator, s.worker:
        body = await s.health()
        assert body["status"] == "warning"
        assert body["warning_checks"] == ["wake_bus"]
        assert check(body, "wake_bus")["category"] == "acceleration"
        assert body["categories"]["acceleration"]["status"] == "warning"
        assert body["categories"]["correctness"]["status"] == "ok"


async def test_health_warns_about_a_stalled_loop_and_recovers(
    start_server: StartServer, db_dsn: str
) -> None:
    """The timer loop's pass waits on a lock the test holds; past the stall threshold the
    loop is reported, and once the lock goes the loop is healthy again."""
    s = await open_system(start_server, db_dsn, health_loop_stall_s=0.5)
    async with s.admin, s.operator, s.worker:
        assert (await s.health())["status"] == "ok"

        async def hold_lock(release: threading.Event) -> None:
            async def op(conn: Conn) -> None:
                async with conn.transaction():  # type: ignore[attr-defined]
                    await conn.execute("LOCK TABLE timers IN ACCESS EXCLUSIVE MODE")
                    await wait_on_loop_thread(release)

            await connect_once(s.dsn, op)

        release = threading.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hold_lock, release)
                with trio.fail_after(15):
                    while True:
                        await trio.sleep(0.2)
                        body = await s.health()
                        if "background_loop.timer" in body["warning_checks"]:
                            break
                timer = check(body, "background_loop.timer")
                assert timer["status"] == "warning" and timer["pass_running_seconds"] >= 0.5
                assert "a pass has run" in timer["message"]
                assert body["status"] == "warning" and body["http_status"] == 200
                release.set()
        finally:
            release.set()  # a failed assertion must not leave the lock's thread waiting
        with trio.fail_after(15):
            while "background_loop.timer" in (await s.health())["warning_checks"]:
                await trio.sleep(0.2)


async def wait_on_loop_thread(event: threading.Event) -> None:
    """On the store's asyncio loop: wait (in an executor thread) for ``event``."""
    await asyncio.get_running_loop().run_in_executor(None, event.wait)


@attrs.define
class CuttableProxy:
    """A loopback TCP proxy to Postgres whose connections the test can cut (and refuse)."""

    target: tuple[str, int]
    port: int = 0
    scope: trio.CancelScope | None = None

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self.scope:
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started()
            await trio.serve_listeners(self.handle, listeners)

    async def handle(self, client: trio.SocketStream) -> None:
        async with client, await trio.open_tcp_stream(*self.target) as upstream:

            async def pump(a: trio.SocketStream, b: trio.SocketStream) -> None:
                async for chunk in a:
                    await b.send_all(chunk)
                await b.send_eof()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump, client, upstream)
                nursery.start_soon(pump, upstream, client)

    def cut(self) -> None:
        assert self.scope is not None
        self.scope.cancel()


async def test_health_is_503_without_the_database(
    start_server: StartServer, db_dsn: str, nursery: trio.Nursery
) -> None:
    """The server reaches Postgres through a proxy; cutting it is a database outage."""
    url = urlsplit(db_dsn)
    if url.hostname is None or url.port is None:
        pytest.skip("the test Postgres is not on TCP")
    proxy = CuttableProxy((url.hostname, url.port))
    await nursery.start(proxy.serve)
    via_proxy = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))
    s = await open_system(start_server, via_proxy, dsn=via_proxy, db_outage_wait_s=0.2)
    async with s.admin, s.operator, s.worker:
        assert (await s.health())["status"] == "ok"  # (the namespace is cached from here on)
        proxy.cut()
        body = await s.health(503)
        assert body["status"] == "error"
        assert body["error_checks"] == ["database", "migrations"]
        assert check(body, "database")["message"]
        for name in ("task_backlog_age", "expired_leases", "stale_workers", "schedule_lag"):
            assert check(body, name)["status"] == "unknown"
        assert body["categories"]["correctness"]["status"] == "error"
        assert body["routing_drains"]["queues"] == []
        # The probes: the protocol's liveness route reports the database; /api/live,
        # an orchestrator's liveness probe, does not (no restart loop in an outage).
        async with s.server.client(token=None) as anonymous:
            r = await anonymous.get("/api/health")
            assert r.status_code == 503 and r.json()["checks"] == {"database": "unavailable"}
            r = await anonymous.get("/api/live")
            assert r.status_code == 200 and r.json()["status"] == "alive", r.text
        await nursery.start(proxy.serve)  # back on the same port
        with trio.fail_after(15):
            while (await s.admin.get("/api/system/health")).status_code != 200:
                await trio.sleep(0.2)


async def test_schedule_lag(start_server: StartServer, db_dsn: str) -> None:
    """No scheduler runs here: a due schedule stays due, and past the threshold it is late."""
    s = await open_system(start_server, db_dsn, scheduler_enabled=False)
    async with s.admin, s.operator, s.worker:
        r = await s.admin.post(
            "/api/schedules",
            json={
                "schedule_id": "lagging",
                "spec": {"intervals": [{"every": "PT1H"}]},
                "action": {"workflow_type": "greeter", "task_queue": Q},
            },
        )
        assert r.status_code == 201, r.text
        await s.sql(
            "UPDATE schedules SET next_fire_at = now() - interval '10 minutes'"
            " WHERE schedule_id = 'lagging'"
        )
        m = await s.operator_metrics()
        assert m["schedules"]["due"] == 1 and m["schedules"]["late"] == 1
        assert m["schedules"]["max_lag_seconds"] >= 600
        assert m["schedules"]["oldest_next_fire_at"].endswith("Z")
        health = await s.health()
        assert health["warning_checks"] == ["schedule_lag"]
        assert check(health, "schedule_lag")["late_schedules"] == 1
