"""Request ids and the per-request log line (http/request_log.py, observability.py)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
import trio

from dwtrio.engine import namespaces as namespaces_engine
from dwtrio.http import namespaces as namespaces_http
from dwtrio.observability import RequestIdFilter

from conftest import ADMIN_TOKEN, CP, REPO_ROOT, WP, RunningServer, StartServer, free_port

HEX32 = re.compile(r"[0-9a-f]{32}")
WORKER_TOKEN = "log-worker-token"


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    return await start_server(worker_token=WORKER_TOKEN)


@pytest.fixture
def request_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog with the filter configure_logging puts on its handler."""
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestIdFilter())
    return caplog


async def lines_of(
    caplog: pytest.LogCaptureFixture, request_id: str, *, until: str = "dwtrio.request"
) -> list[logging.LogRecord]:
    """The records of one request, once its own line (written just after the answer
    went out) is there."""
    with trio.fail_after(5):
        while True:
            mine = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
            if any(r.name == until for r in mine):
                return mine
            await trio.sleep(0.01)


async def request_lines(
    caplog: pytest.LogCaptureFixture, request_id: str
) -> list[logging.LogRecord]:
    return [r for r in await lines_of(caplog, request_id) if r.name == "dwtrio.request"]


async def test_a_sane_request_id_is_echoed_on_answers_and_errors(server: RunningServer) -> None:
    async with server.client() as c:
        ok = await c.get("/api/health", headers={"X-Request-Id": "abc-123.x:y_z"})
        assert ok.status_code == 200 and ok.headers["x-request-id"] == "abc-123.x:y_z"
        # A control-plane error (Quart side) and a worker-plane error carry it in the body too.
        gone = await c.get("/api/workflows/nobody", headers={**CP, "X-Request-Id": "rid-cp"})
        assert gone.status_code == 404 and gone.headers["x-request-id"] == "rid-cp"
        assert gone.json()["request_id"] == "rid-cp"
    async with server.client(WORKER_TOKEN) as c:
        bad = await c.post("/api/worker/nowhere", headers={**WP, "X-Request-Id": "rid-wp"}, json={})
        assert bad.status_code == 404 and bad.headers["x-request-id"] == "rid-wp"
        assert bad.json()["request_id"] == "rid-wp" and bad.json()["reason"] == "not_found"
    async with server.client(token="wrong") as c:
        refused = await c.get("/api/namespaces", headers={**CP, "X-Request-Id": "rid-401"})
        assert refused.status_code == 401 and refused.json()["request_id"] == "rid-401"
        assert refused.headers["x-request-id"] == "rid-401"


async def test_an_id_is_made_up_when_absent_or_insane(server: RunningServer) -> None:
    insane = ["x" * 129, "two words", "<script>", "semi;colon", b"caf\xe9", ""]
    async with server.client() as c:
        seen = set()
        for sent in [None, *insane]:
            headers = {**CP} if sent is None else {**CP, "X-Request-Id": sent}
            r = await c.get("/api/workflows/nobody", headers=headers)
            rid = r.headers["x-request-id"]
            assert HEX32.fullmatch(rid), (sent, rid)
            assert r.json()["request_id"] == rid
            seen.add(rid)
        assert len(seen) == len(insane) + 1
        longest = "y" * 128
        r = await c.get("/api/health", headers={"X-Request-Id": longest})
        assert r.headers["x-request-id"] == longest


async def test_a_long_poll_answers_with_the_id_and_logs_once(
    server: RunningServer, request_logs: pytest.LogCaptureFixture
) -> None:
    body = {"worker_id": "w-log", "task_queue": "log-q", "timeout_seconds": 1}
    async with server.client(WORKER_TOKEN) as c:
        r = await c.post(
            "/api/worker/workflow-tasks/poll", headers={**WP, "X-Request-Id": "rid-poll"}, json=body
        )
    assert r.status_code == 200 and r.json()["task"] is None
    assert r.headers["x-request-id"] == "rid-poll"
    (line,) = await request_lines(request_logs, "rid-poll")
    assert line.route == "/api/worker/workflow-tasks/poll" and line.status == 200
    assert line.method == "POST" and line.namespace == "default" and line.worker_id == "w-log"
    assert line.duration_ms >= 900


async def test_the_log_line_names_the_workflow_and_run(
    server: RunningServer, request_logs: pytest.LogCaptureFixture
) -> None:
    start = {"workflow_id": "log-wf", "workflow_type": "greeter", "task_queue": "log-q"}
    async with server.client() as c:
        r = await c.post("/api/workflows", headers={**CP, "X-Request-Id": "rid-start"}, json=start)
        assert r.status_code == 201, r.text
        run_id = r.json()["run_id"]
        poll = {"worker_id": "w-1", "task_queue": "log-q", "timeout_seconds": 0}
        r = await c.post(
            "/api/worker/workflow-tasks/poll",
            headers={**WP, "X-Request-Id": "rid-claim", "Authorization": f"Bearer {WORKER_TOKEN}"},
            json=poll,
        )
        assert r.json()["task"]["run_id"] == run_id
        r = await c.get(
            f"/api/workflows/log-wf/runs/{run_id}", headers={**CP, "X-Request-Id": "rid-desc"}
        )
        assert r.status_code == 200
    (started,) = await request_lines(request_logs, "rid-start")
    assert (started.route, started.status, started.workflow_id, started.run_id) == (
        "/api/workflows",
        201,
        "log-wf",
        run_id,
    )
    (claimed,) = await request_lines(request_logs, "rid-claim")
    assert (claimed.workflow_id, claimed.run_id, claimed.worker_id) == ("log-wf", run_id, "w-1")
    (described,) = await request_lines(request_logs, "rid-desc")
    assert described.route == "/api/workflows/{wf}/runs/{run_id}"
    assert (described.workflow_id, described.run_id) == ("log-wf", run_id)


async def test_every_line_of_a_request_carries_its_id_engine_lines_included(
    server: RunningServer,
    request_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A line the engine writes inside the store transaction (run on the asyncio side
    of the bridge) carries the id of the request it serves."""
    engine_log = logging.getLogger("dwtrio.engine.namespaces")
    delete = namespaces_engine.delete_namespace

    async def logged_delete(*args: Any, **kwargs: Any) -> Any:
        engine_log.info("deleting a namespace")
        return await delete(*args, **kwargs)

    monkeypatch.setattr(namespaces_http.engine, "delete_namespace", logged_delete)
    async with server.client() as c:
        r = await c.post("/api/namespaces", headers=CP, json={"name": "logged"})
        assert r.status_code == 201, r.text
        r = await c.delete("/api/namespaces/logged", headers={**CP, "X-Request-Id": "rid-del"})
        assert r.status_code == 200, r.text
    mine = await lines_of(request_logs, "rid-del")
    assert [r.name for r in mine] == ["dwtrio.engine.namespaces", "dwtrio.request"]
    assert mine[1].route == "/api/namespaces/{name}" and mine[1].status == 200
    # Lines outside any request carry no id.
    engine_log.info("outside")
    assert getattr(request_logs.records[-1], "request_id", None) is None


async def test_an_unhandled_error_logs_and_answers_the_request_id(
    server: RunningServer,
    request_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(namespaces_http.engine, "delete_namespace", broken)
    async with server.client() as c:
        r = await c.delete("/api/namespaces/x", headers={**CP, "X-Request-Id": "rid-500"})
    assert r.status_code == 500 and r.json()["request_id"] == "rid-500"
    mine = await lines_of(request_logs, "rid-500")
    assert [r.levelname for r in mine] == ["ERROR", "INFO"] and mine[1].status == 500


async def test_json_lines_from_a_real_server_parse_and_carry_the_fields(db_dsn: str) -> None:
    """``dwtrio serve`` with DW_LOG_FORMAT=json: every stderr line is one JSON object."""
    await trio.to_thread.run_sync(json_lines_from_a_real_server, db_dsn)


def json_lines_from_a_real_server(db_dsn: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DW_")}
    env.update(
        DW_LOG_FORMAT="json",
        DW_DATABASE_URL=db_dsn,
        DW_BIND=f"127.0.0.1:{port}",
        DW_AUTH_DRIVER="token",
        DW_ADMIN_TOKEN=ADMIN_TOKEN,
        DW_WORKER_TOKEN=WORKER_TOKEN,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "dwtrio", "serve"],
        env=env,
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        httpx.get(f"{url}/api/namespaces", headers={**auth, **CP, "X-Request-Id": "json-1"})
        httpx.post(
            f"{url}/api/worker/workflow-tasks/poll",
            headers={
                "Authorization": f"Bearer {WORKER_TOKEN}",
                **WP,
                "X-Request-Id": "json-2",
                "X-Namespace": "default",
            },
            json={"worker_id": "w-json", "task_queue": "q", "timeout_seconds": 0},
        )
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "pid", "message"} <= set(line) for line in lines)
    by_id = {line.get("request_id"): line for line in lines if line["logger"] == "dwtrio.request"}
    cp, wp = by_id["json-1"], by_id["json-2"]
    assert cp["method"] == "GET" and cp["route"] == "/api/namespaces" and cp["status"] == 200
    assert isinstance(cp["duration_ms"], float) and cp["level"] == "info"
    assert (wp["route"], wp["status"], wp["namespace"], wp["worker_id"]) == (
        "/api/worker/workflow-tasks/poll",
        200,
        "default",
        "w-json",
    )
    assert any(line["message"].startswith("dwtrio serving on") for line in lines)


async def test_tasks_started_while_serving_log_with_the_request_id(
    request_logs: pytest.LogCaptureFixture,
) -> None:
    """The middleware alone, around an app that logs from a Trio task it starts."""
    from dwtrio.http.request_log import RequestLog, note_route

    app_log = logging.getLogger("dwtrio.test_app")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        note_route("/api/things/{id}")

        async def child() -> None:
            app_log.info("from a child task")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
        await send({"type": "http.response.start", "status": 204, "headers": [(b"a", b"b")]})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "headers": [(b"x-request-id", b"rid-child")]}
    await RequestLog(app)(scope, None, send)
    assert sent[0]["headers"] == [(b"a", b"b"), (b"x-request-id", b"rid-child")]
    child_line, request_line = await lines_of(request_logs, "rid-child")
    assert child_line.name == "dwtrio.test_app"
    assert (request_line.route, request_line.status) == ("/api/things/{id}", 204)


async def test_a_poll_whose_client_left_logs_client_gone(
    server: RunningServer, request_logs: pytest.LogCaptureFixture
) -> None:
    body = {"worker_id": "w-gone", "task_queue": "gone-q", "timeout_seconds": 20}
    async with server.client(WORKER_TOKEN) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.post(
                "/api/worker/workflow-tasks/poll",
                headers={**WP, "X-Request-Id": "rid-gone"},
                json=body,
                timeout=0.5,
            )
    (line,) = await request_lines(request_logs, "rid-gone")
    assert line.status is None and line.action == "client_gone"
    assert line.route == "/api/worker/workflow-tasks/poll" and line.worker_id == "w-gone"
