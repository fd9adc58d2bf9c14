"""Database faults under real SDK load: a Postgres stop, and backends killed again and again.

The server runs on a PostgreSQL of its own (the embedded one, in a temporary
directory, reached over its Unix socket), so the test can stop it, start it and
kill its backends without touching the shared test database. The SDK worker and
starter run in a subprocess (``outage_driver.py``) with default settings.

Contract (issue 12): every workflow whose start was acknowledged completes with
its result, none fails; no request is answered 500; a claim whose answer was
lost does not strand its task for the lease's minute; throughput comes back
within seconds of the database.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from dwtrio.embedded import EmbeddedPostgres
from dwtrio.store.pool import connect_once

from conftest import CP, WP, RunningServer, StartServer, exclusive
from sdk_helpers import TOKEN, start_sdk_server

pytestmark = [pytest.mark.sdk, pytest.mark.slow]

DRIVER = Path(__file__).with_name("outage_driver.py")


@pytest.fixture(autouse=True)
def one_at_a_time() -> Iterator[None]:
    """Each test drives a server as hard as it can and times its recovery: never two at
    once on this machine (pytest-xdist workers would otherwise run them side by side)."""
    with exclusive("db-outage"):
        yield


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[EmbeddedPostgres]:
    # Not under pytest's tmp_path: another pytest session's cleanup must not take it away.
    data_dir = Path(tempfile.mkdtemp(prefix="dwtrio-outage-pg-"))
    pg = EmbeddedPostgres(data_dir)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


class ServerErrors(logging.Handler):
    """Counts the 500s the server answered (each is logged once as an unhandled error)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("unhandled error"):
            self.messages.append(self.format(record))


@pytest.fixture
def server_errors() -> Iterator[ServerErrors]:
    handler = ServerErrors()
    logger = logging.getLogger("dwtrio")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def run_load(url: str, *, rate: float, seconds: float) -> dict[str, Any]:
    env = {**os.environ, "DRIVER_RATE": str(rate), "DRIVER_SECONDS": str(seconds)}
    with trio.fail_after(seconds + 240):
        proc = await trio.run_process(
            [sys.executable, str(DRIVER), "load", url, TOKEN],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def check_books(result: dict[str, Any], errors: ServerErrors) -> None:
    assert result["failed"] == [] and result["wrong"] == []
    assert result["completed"] == result["acknowledged"] > 0
    assert errors.messages == []


async def closed_at(server: RunningServer) -> dict[str, float]:
    """When the server closed each workflow (its own clock, not the driver's polling)."""
    out: dict[str, float] = {}
    token = None
    async with server.client(TOKEN) as c:
        while True:
            params = {"page_size": 100, **({"next_page_token": token} if token else {})}
            r = await c.get("/api/workflows", params=params, headers=CP)
            assert r.status_code == 200, r.text
            body = r.json()
            for run in body["workflows"]:
                if run["closed_at"]:
                    out[run["workflow_id"]] = datetime.fromisoformat(run["closed_at"]).timestamp()
            token = body.get("next_page_token")
            if not token:
                return out


def recovery_s(closed: dict[str, float], back_at: float, rate: float) -> float:
    """Seconds from the database's return until workflows close at half the offered
    rate again (over a one-second window)."""
    done = sorted(t for t in closed.values() if t >= back_at)
    for i, t in enumerate(done):
        if sum(1 for u in done[i:] if u < t + 1.0) >= rate / 2:
            return t - back_at
    return float("inf")


async def test_a_15s_postgres_stop_fails_no_workflow(
    start_server: StartServer, own_postgres: EmbeddedPostgres, server_errors: ServerErrors
) -> None:
    server = await start_sdk_server(start_server, dsn=own_postgres.dsn, bootstrap=True)
    rate, seconds = 4.0, 30.0
    results: list[dict[str, Any]] = []
    window: dict[str, float] = {}
    async with trio.open_nursery() as nursery:

        async def load() -> None:
            results.append(await run_load(server.url, rate=rate, seconds=seconds))

        nursery.start_soon(load)
        await trio.sleep(8)
        window["stopped"] = time.time()
        await trio.to_thread.run_sync(own_postgres.stop)
        await trio.sleep(max(0.0, window["stopped"] + 15 - time.time()))
        await trio.to_thread.run_sync(own_postgres.start)
        window["back"] = time.time()
    result = results[0]
    if dump := os.environ.get("DWTRIO_OUTAGE_DUMP"):
        Path(dump).write_text(json.dumps({"result": result, "window": window}))
    check_books(result, server_errors)
    # Nothing waits for a lease to run out: each workflow closes soon after the
    # database is back (a stranded workflow task would take its 60 s lease).
    closed = await closed_at(server)
    assert set(closed) >= set(result["acknowledged_at"])
    for workflow_id, acked in result["acknowledged_at"].items():
        assert closed[workflow_id] - max(acked, window["back"]) < 20, workflow_id
    recovered = recovery_s(closed, window["back"], rate)
    print(
        f"\npostgres stop: {result['acknowledged']}/{result['attempted']} acknowledged,"
        f" {result['completed']} completed, start errors {len(result['start_errors'])},"
        f" down {window['back'] - window['stopped']:.1f} s, throughput back {recovered:.2f} s later"
    )
    assert recovered < 5


async def test_backends_killed_every_half_second_fail_no_workflow(
    aio_loop: None,
    start_server: StartServer,
    own_postgres: EmbeddedPostgres,
    server_errors: ServerErrors,
) -> None:
    own_postgres.start()  # (idempotent) the stop test may have run first
    server = await start_sdk_server(start_server, dsn=own_postgres.dsn, bootstrap=True)
    kills = 0

    async def kill_dwtrio_backends() -> None:
        nonlocal kills
        for _ in range(30):
            await trio.sleep(0.5)
            kills += await connect_once(
                own_postgres.dsn,
                lambda c: c.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'dwtrio'"
                ),
            )

    results: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:

        async def load() -> None:
            results.append(await run_load(server.url, rate=5.0, seconds=20.0))

        nursery.start_soon(load)
        await trio.sleep(2)
        await kill_dwtrio_backends()
    result = results[0]
    assert kills >= 30  # every round found connections to kill
    check_books(result, server_errors)
    assert result["start_errors"] == []
    print(
        f"\nbackend kills: {kills} connections killed, {result['acknowledged']} acknowledged,"
        f" {result['completed']} completed"
    )


def sdk_retries(request: httpx.Request, response: httpx.Response) -> tuple[bool, int | None]:
    """What SDK 2.12.0's transport policy makes of this 503: (a backend refusal, the
    delay it retries the same request after; None means it gives up at once)."""
    from durable_workflow.retry_policy import _backend_unavailable_refusal

    error = httpx.HTTPStatusError("503", request=request, response=response)
    return _backend_unavailable_refusal(error)  # type: ignore[no-any-return]


async def test_worker_calls_during_an_outage_answer_the_sdks_retry_contract(
    start_server: StartServer, own_postgres: EmbeddedPostgres
) -> None:
    own_postgres.start()
    server = await start_sdk_server(
        start_server, dsn=own_postgres.dsn, bootstrap=True, db_outage_wait_s=0.5
    )
    worker = {"worker_id": "w-outage", "task_queue": "q-outage"}
    async with server.client(TOKEN, **WP) as c:
        r = await c.post("/api/worker/register", json=worker)
        assert r.status_code == 201, r.text
        await trio.to_thread.run_sync(own_postgres.stop)
        try:
            calls = {
                "/api/worker/workflow-tasks/poll": {
                    **worker,
                    "poll_request_id": "poll-1",
                    "timeout_seconds": 1,
                },
                "/api/worker/activity-tasks/poll": {
                    **worker,
                    "poll_request_id": "poll-2",
                    "timeout_seconds": 1,
                },
                "/api/worker/register": worker,
                "/api/worker/heartbeat": {"worker_id": "w-outage"},
                "/api/worker/workflow-tasks/t-1/heartbeat": {
                    "lease_owner": "w-outage",
                    "workflow_task_attempt": 1,
                },
            }
            for path, body in calls.items():
                with trio.fail_after(10):  # bounded by the poll's deadline or the outage wait
                    r = await c.post(path, json=body)
                assert r.status_code == 503, r.text
                answer = r.json()
                assert answer["reason"] == "backend_unavailable"
                assert answer["retryable"] is True and answer["retry_after_seconds"] == 1
                assert sdk_retries(r.request, r) == (True, 1), (path, answer)
            # Every other call is a plain retryable 503 (the SDK's generic 5xx retries).
            r = await c.post(
                "/api/workflows",
                json={"workflow_type": "greeter", "task_queue": "q-outage"},
                headers=CP,
            )
            assert r.status_code == 503, r.text
            assert r.json()["retryable"] is True and r.json()["retry_after_seconds"] == 1
        finally:
            await trio.to_thread.run_sync(own_postgres.start)
        # And the server serves again as soon as the database is back.
        with trio.fail_after(10):
            r = await c.post("/api/worker/heartbeat", json={"worker_id": "w-outage"})
        assert r.status_code == 200, r.text
