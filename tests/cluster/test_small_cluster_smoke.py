"""The small cluster as processes: two ``dwtrio serve`` nodes behind nginx (the compose
config, rendered for loopback), on this machine's Postgres and Redis.

The smoke goes through the load balancer the way a deployment is used: probes, discovery,
an SDK worker registering, a workflow started; then it polls the workflow task on node A
and completes it on node B (leases live in Postgres: no sticky sessions needed) and reads
the run back through the load balancer.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
from processes import NGINX_TEMPLATE, ProcessCluster, process_cluster, render_nginx_conf

from conftest import CP, WP

DRIVER = Path(__file__).with_name("lb_driver.py")
DRIVER_TIMEOUT_S = 90

pytestmark = pytest.mark.sdk


async def run_driver(*args: str) -> Any:
    """One run of ``lb_driver.py``; its result is the last line it prints."""
    with trio.fail_after(DRIVER_TIMEOUT_S):
        proc = await trio.run_process(
            [sys.executable, str(DRIVER), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def test_the_rendered_config_keeps_the_template_but_its_addresses(tmp_path: Path) -> None:
    template = NGINX_TEMPLATE.read_text()
    text = render_nginx_conf(
        template, upstreams=["127.0.0.1:1001", "127.0.0.1:1002"], port=1003, prefix=tmp_path
    )
    servers = [line.strip() for line in text.splitlines() if re.match(r"\s*server \S+:", line)]
    assert servers == [
        "server 127.0.0.1:1001 max_fails=1 fail_timeout=2s;",
        "server 127.0.0.1:1002 max_fails=1 fail_timeout=2s;",
    ]
    assert "listen 127.0.0.1:1003;" in text and "listen 8080;" not in text
    assert f"pid {tmp_path}/nginx.pid;" in text and "/tmp/nginx-dwtrio" not in text
    # Everything that shapes the traffic is the template's own.
    for line in (
        "keepalive 64;",
        "proxy_read_timeout 90s;",
        "proxy_buffering off;",
        "proxy_next_upstream error http_502 http_503;",
    ):
        assert line in text
    directives = "\n".join(line.split("#")[0] for line in text.splitlines())
    assert "ip_hash" not in directives and "sticky" not in directives  # round robin


async def probes_through_the_balancer(cluster: ProcessCluster) -> None:
    async with cluster.client(cluster.lb_url, token="") as anonymous:
        health = await anonymous.get("/api/health")
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "serving"
        ready = await anonymous.get("/api/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
        assert ready.json()["checks"]["cache"] == {"status": "ok", "store": "redis"}
    seen = set()
    async with cluster.client(cluster.lb_url) as c:
        for _ in range(4):  # one keep-alive connection: nginx alternates the nodes
            r = await c.get("/api/cluster/info")
            assert r.status_code == 200, r.text
            info = r.json()
            seen.add(info["server_id"])
            assert info["default_namespace"] == "default"
            assert info["capabilities"]["workflow_tasks"] is True
            assert info["capabilities"]["activity_tasks"] is True
            assert info["worker_protocol"]["version"] == "1.20"
            assert info["control_plane"]["version"] == "2"
    assert seen == {"node-a", "node-b"}, f"round robin reached only {seen}"


async def test_a_task_polled_on_one_node_completes_on_the_other(
    db_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    async with process_cluster(tmp_path / "cluster", dsn=db_dsn, redis_url=redis_url) as cluster:
        a, b = cluster.nodes
        await probes_through_the_balancer(cluster)

        queue = f"smoke-{uuid.uuid4().hex[:8]}"
        worker_id = f"smoke-worker-{uuid.uuid4().hex[:8]}"
        entry = await run_driver("register", cluster.lb_url, cluster.token, queue, worker_id)
        assert entry["worker_id"] == worker_id and entry["task_queue"] == queue
        assert "lb-greeter" in entry["supported_workflow_types"]
        for node in (a, b):  # the registration is in Postgres, so every node knows it
            async with cluster.client(node.url, **CP) as c:
                r = await c.get(f"/api/workers/{worker_id}")
                assert r.status_code == 200, r.text
                assert r.json()["sdk_version"] == entry["sdk_version"]

        workflow_id = f"smoke-{uuid.uuid4().hex}"
        async with cluster.client(cluster.lb_url, **CP) as c:
            r = await c.post(
                "/api/workflows",
                json={
                    "workflow_id": workflow_id,
                    "workflow_type": "lb-greeter",
                    "task_queue": queue,
                    "input": ["smoke"],
                },
            )
            assert r.status_code == 201, r.text
            run_id = r.json()["run_id"]

        async with cluster.client(a.url, **WP) as on_a:
            r = await on_a.post(
                "/api/worker/workflow-tasks/poll",
                json={"worker_id": worker_id, "task_queue": queue, "timeout_seconds": 10},
            )
            assert r.status_code == 200, r.text
            task = r.json()["task"]
        assert task is not None, f"node A answered no task: {r.text}\n{cluster.logs()}"
        assert (task["workflow_id"], task["run_id"]) == (workflow_id, run_id)

        async with cluster.client(b.url, **WP) as on_b:
            r = await on_b.post(
                f"/api/worker/workflow-tasks/{task['task_id']}/complete",
                json={
                    "lease_owner": worker_id,
                    "workflow_task_attempt": task["workflow_task_attempt"],
                    "commands": [{"type": "complete_workflow", "result": "hello, smoke"}],
                },
            )
            assert r.status_code == 200, r.text

        async with cluster.client(cluster.lb_url, **CP) as c:
            described = (await c.get(f"/api/workflows/{workflow_id}")).json()
            assert described["status"] == "completed", described
            assert described["output"] == "hello, smoke"
            r = await c.get(f"/api/workflows/{workflow_id}/runs/{run_id}/history")
            assert r.status_code == 200, r.text
            events = r.json()["events"]
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
        assert [e["event_type"] for e in events] == [
            "StartAccepted",
            "WorkflowStarted",
            "WorkflowCompleted",
        ]
