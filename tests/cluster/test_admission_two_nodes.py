"""A lease cap holds across nodes: two dwtrio nodes on one database, 32 pollers, cap 2.

Every node enforces ``DW_WORKFLOW_TASK_MAX_ACTIVE_LEASES_PER_QUEUE`` itself, in
the claim's transaction under the queue's advisory lock, so the cap is the
fleet's, not each node's. The test counts the leased task rows in Postgres
every few milliseconds while 16 pollers per node work through a backlog, and
checks that every poll answered 200 (a throttled poll waits or answers empty,
never an error) and that the whole backlog was done.
"""

from __future__ import annotations

from typing import Any

import httpx
import trio

from dwtrio import payloads
from dwtrio.store.pool import Conn, open_store

from conftest import CP, WP, StartServer

QUEUE = "capped-2n"
WORKFLOWS = 40
POLLERS_PER_NODE = 16
CAP = 2
TOKEN = "t"


async def leased_now(conn: Conn) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM workflow_tasks WHERE task_queue = $1 AND state = 'leased'",
            QUEUE,
        )
    )


async def test_a_lease_cap_of_two_holds_across_two_nodes_under_32_pollers(
    start_server: StartServer, db_dsn: str
) -> None:
    settings: dict[str, Any] = {
        "admin_token": None,
        "auth_token": TOKEN,
        "workflow_task_max_active_leases_per_queue": CAP,
        "worker_poll_interval_ms": 200,
    }
    nodes = [await start_server(**settings), await start_server(**settings)]
    async with nodes[0].client(TOKEN, **CP) as cc:
        for i in range(WORKFLOWS):
            r = await cc.post(
                "/api/workflows",
                json={"workflow_id": f"capped-{i}", "workflow_type": "t", "task_queue": QUEUE},
            )
            assert r.status_code == 201, r.text

    done: set[str] = set()
    statuses: list[int] = []
    samples: list[int] = []
    finished = trio.Event()

    async def poller(wc: httpx.AsyncClient, worker: str) -> None:
        while not finished.is_set():
            r = await wc.post(
                "/api/worker/workflow-tasks/poll",
                json={"worker_id": worker, "task_queue": QUEUE, "timeout_seconds": 1},
            )
            statuses.append(r.status_code)
            task = r.json().get("task") if r.status_code == 200 else None
            if task is None:
                continue
            await trio.sleep(0.02)  # hold the lease a little, as real work does
            c = await wc.post(
                f"/api/worker/workflow-tasks/{task['task_id']}/complete",
                json={
                    "lease_owner": task["lease_owner"],
                    "workflow_task_attempt": task["workflow_task_attempt"],
                    "commands": [
                        {
                            "type": "complete_workflow",
                            "result": {"codec": "avro", "blob": payloads.encode("ok")},
                        }
                    ],
                },
            )
            assert c.status_code == 200, c.text
            done.add(task["workflow_id"])
            if len(done) == WORKFLOWS:
                finished.set()

    async def sampler() -> None:
        # One connection kept open: a sample every few milliseconds, however fast the
        # workload runs (a connection per sample took longer than the whole run at times).
        async with open_store(db_dsn, min_size=1, max_size=1) as store:
            while not finished.is_set():
                samples.append(await store.read(leased_now))
                await trio.sleep(0.005)

    with trio.fail_after(90):
        async with (
            nodes[0].client(TOKEN, **WP) as wa,
            nodes[1].client(TOKEN, **WP) as wb,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(sampler)
            for i in range(POLLERS_PER_NODE):
                nursery.start_soon(poller, wa, f"a-{i}")
                nursery.start_soon(poller, wb, f"b-{i}")

    assert len(done) == WORKFLOWS
    assert set(statuses) == {200}, sorted(set(statuses))
    assert len(samples) > 50, "the sampler barely ran"
    assert max(samples) <= CAP, f"{max(samples)} leases at once under a cap of {CAP}"
    assert max(samples) == CAP, "the cap was never reached: the test proves nothing"
