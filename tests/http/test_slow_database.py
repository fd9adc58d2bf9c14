"""A slow database through HTTP: requests end with a clean 503, other queues go on, and
the pool is idle again once the slowness ends (DW_DB_STATEMENT_TIMEOUT_SECONDS,
DW_DB_POOL_WAIT_SECONDS).

The slowness is a lock another session holds on one run's row, so only the statements
that touch that run wait: a poll on its queue (the claim updates the run), a signal to
it. Without the statement timeout those requests waited as long as the lock was held,
each keeping a pooled connection, and once the pool was full every other request
queued behind them.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import trio

from dwtrio.store import bridge
from dwtrio.store.pool import connect_once

from conftest import StartServer
from http_clients import Clients

TOKEN = "slow-db-token"
POLL_WF = "/api/worker/workflow-tasks/poll"


async def hold_run_lock(db_dsn: str, workflow_id: str, seconds: float) -> None:
    """Another session locks the run of ``workflow_id`` for ``seconds``."""
    statement = (
        f"SELECT pg_sleep({seconds}) FROM "
        "(SELECT 1 FROM workflow_runs WHERE workflow_id = $1 FOR UPDATE) locked"
    )
    async with bridge.open_loop():
        await connect_once(db_dsn, lambda c: c.execute(statement, workflow_id))


async def poll(
    wc: httpx.AsyncClient, queue: str, poll_id: str, timeout: int = 0
) -> tuple[int, dict[str, Any]]:
    r = await wc.post(
        POLL_WF,
        json={
            "worker_id": f"w-{queue}",
            "task_queue": queue,
            "timeout_seconds": timeout,
            "poll_request_id": poll_id,
        },
    )
    return r.status_code, r.json()


async def pool(c: Clients) -> dict[str, Any]:
    r = await c.cc.get("/api/system/metrics")
    assert r.status_code == 200, r.text
    stats: dict[str, Any] = r.json()["metrics"]["store"]["pool"]
    return stats


async def test_requests_on_a_locked_run_answer_503_while_other_queues_are_served(
    start_server: StartServer, db_dsn: str
) -> None:
    async with Clients.open(start_server, TOKEN, db_statement_timeout_s=3, db_pool_max_size=4) as c:
        await c.start_workflow("slow-1", "t", "slow-q", [])
        answers: dict[str, tuple[float, int, dict[str, Any]]] = {}

        async def timed(name: str, call: Any) -> None:
            began = time.monotonic()
            status, body = await call()
            answers[name] = (time.monotonic() - began, status, body)

        async def signal() -> tuple[int, dict[str, Any]]:
            r = await c.cc.post("/api/workflows/slow-1/signal/go", json={"input": []})
            return r.status_code, r.json()

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hold_run_lock, db_dsn, "slow-1", 6)
                # A poll parked on another queue before the slowness starts.
                nursery.start_soon(timed, "parked", lambda: poll(c.wc, "fast-q", "p-fast", 10))
                await trio.sleep(0.5)
                nursery.start_soon(timed, "slow poll", lambda: poll(c.wc, "slow-q", "p-slow"))
                nursery.start_soon(timed, "signal", signal)
                await trio.sleep(0.3)
                woken_at = time.monotonic()
                await c.start_workflow("fast-1", "t", "fast-q", [])
                with trio.fail_after(2):  # served while the other two still wait
                    while "parked" not in answers:
                        await trio.sleep(0.02)
                assert time.monotonic() - woken_at < 2.0
                assert "signal" not in answers and "slow poll" not in answers
                status, body = answers["parked"][1:]
                assert status == 200 and body["task"]["workflow_id"] == "fast-1", body
                # Both requests on the locked run end at the statement timeout.
                while "signal" not in answers or "slow poll" not in answers:
                    await trio.sleep(0.05)
                for name in ("signal", "slow poll"):
                    took, status, body = answers[name]
                    assert 2.9 < took < 5.5, (name, took)
                    assert status == 503, (name, body)
                    assert body["reason"] == "backend_unavailable"
                    assert body["cause"] == "statement_timeout"
                    assert "DW_DB_STATEMENT_TIMEOUT_SECONDS" in body["message"]
                    assert body["retryable"] is True and body["retry_after_seconds"] == 1
                    assert body["request_id"]
                # The poll's answer is the one the SDK retries as the same poll.
                _, _, body = answers["slow poll"]
                assert body["task"] is None and body["poll_status"] == "backend_unavailable"
                assert body["poll_request_id"] == "p-slow"
                assert body["retry_same_poll_request_id"] is True
                assert body["operation"] == "poll_workflow_task" and body["outcome"] == "unknown"
                assert (await pool(c))["waiting"] == 0

        # The lock is gone: the same poll gets its task, the signal goes through, and the
        # pool is idle.
        status, body = await poll(c.wc, "slow-q", "p-slow")
        assert status == 200 and body["task"]["workflow_id"] == "slow-1", body
        r = await c.cc.post("/api/workflows/slow-1/signal/go", json={"input": []})
        assert r.status_code == 202, r.text
        stats = await pool(c)
        assert (stats["in_use"], stats["waiting"]) == (0, 0), stats


async def test_requests_queued_behind_a_full_pool_answer_503_and_the_pool_recovers(
    start_server: StartServer, db_dsn: str
) -> None:
    async with Clients.open(
        start_server,
        TOKEN,
        db_statement_timeout_s=10,
        db_pool_wait_s=0.5,
        db_pool_max_size=2,
        db_pool_min_size=1,
    ) as c:
        await c.start_workflow("slow-1", "t", "slow-q", [])
        signals: list[int] = []

        async def signal(i: int) -> None:
            r = await c.cc.post("/api/workflows/slow-1/signal/go", json={"input": [i]})
            signals.append(r.status_code)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hold_run_lock, db_dsn, "slow-1", 3)
                await trio.sleep(0.5)
                for i in range(2):  # both pooled connections wait on the lock
                    nursery.start_soon(signal, i)
                await trio.sleep(0.3)
                began = time.monotonic()
                r = await c.cc.post(
                    "/api/workflows",
                    json={"workflow_id": "other", "workflow_type": "t", "task_queue": "q"},
                )
                assert 0.4 < time.monotonic() - began < 3.0
                assert r.status_code == 503, r.text
                body = r.json()
                assert body["reason"] == "backend_unavailable"
                assert body["cause"] == "pool_wait_timeout"
                assert "DW_DB_POOL_WAIT_SECONDS" in body["message"]
        assert signals == [202, 202]  # they waited for the lock, within their timeout
        stats = await pool(c)
        assert (stats["in_use"], stats["waiting"]) == (0, 0), stats
        await c.start_workflow("other", "t", "q", [])
