"""The worker plane's own HTTP layer (``dwtrio/http/worker_plane.py``), over real HTTP.

The worker routes are served below Quart, so the pipeline guarantees that
``test_gates.py`` checks mostly on control-plane routes are checked here on
worker routes: the body gate, gate order before routing, 404/405, trailing
slashes, the namespace query parameter, compression, and a body that never
arrives. Every error carries the worker-plane envelope.
"""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import attrs
import httpx
import orjson
import pytest
import trio

from dwtrio.store import bridge

from conftest import CP, WP, RunningServer, StartServer
from test_gates import JSON_CT, WP_HEADER, RawHttp, assert_worker_error

POLL = "/api/worker/workflow-tasks/poll"
WORKER_TOKEN = "test-worker-token"


def register_body(worker: str = "w-1") -> dict[str, object]:
    return {"worker_id": worker, "task_queue": "q", "runtime": "python"}


async def test_body_gate_on_worker_routes(start_server: StartServer) -> None:
    srv = await start_server(max_payload_bytes=2048, worker_token=WORKER_TOKEN)
    big = b'{"worker_id": "' + b"x" * 3000 + b'"}'
    async with srv.client(WORKER_TOKEN, **WP) as c:
        r = await c.post(POLL, content=big, headers=JSON_CT)
        assert_worker_error(r, 413, "payload_too_large", limit=2048)
        # A body that was never read ends the connection rather than poisoning it.
        assert r.headers.get("connection") == "close"

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(4):
                yield b"x" * 1000

        r = await c.post(POLL, content=chunks(), headers=JSON_CT)
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert_worker_error(r, 413, "payload_too_large", limit=2048)

        r = await c.post(POLL, content=b"{nope", headers=JSON_CT)
        assert_worker_error(r, 400, "malformed_json")
        r = await c.post(POLL, content=b"{}", headers={"Content-Type": "text/plain"})
        assert_worker_error(r, 415, "unsupported_media_type")
        # The same client goes on working: the errors above left no connection hung.
        r = await c.post("/api/worker/register", json=register_body())
        assert r.status_code == 201, r.text


async def head_only_poll(
    server: RunningServer, declared_length: int
) -> tuple[int, dict[str, str], bytes]:
    """A poll whose head declares a body that is never sent."""
    raw = await RawHttp.open(server)
    try:
        with trio.fail_after(5):
            return await raw.request(
                "POST", POLL, {**JSON_CT, **WP}, declared_length=declared_length
            )
    finally:
        await raw.aclose()


async def test_declared_length_over_limit_answers_from_the_head(start_server: StartServer) -> None:
    srv = await start_server(max_payload_bytes=2048)
    status, headers, body = await head_only_poll(srv, 10_000_000)
    assert status == 413
    assert headers[WP_HEADER.lower()] == "1.20"
    assert headers["connection"] == "close"
    assert orjson.loads(body)["reason"] == "payload_too_large"


@pytest.mark.parametrize(
    ("path", "headers"),
    [(POLL, {**JSON_CT, **WP}), ("/api/namespaces", {**JSON_CT, **CP})],
    ids=["worker", "control"],
)
async def test_a_body_that_never_arrives_is_408(
    start_server: StartServer, path: str, headers: dict[str, str]
) -> None:
    """DW_BODY_TIMEOUT_SECONDS bounds the body on both planes (the control plane had
    Quart's fixed 60 s and werkzeug's message); the connection is closed after the 408."""
    server = await start_server(body_timeout_s=0.3)
    raw = await RawHttp.open(server)
    try:
        with trio.fail_after(5):
            status, _headers, body = await raw.request("POST", path, headers, declared_length=50)
            assert status == 408
            assert orjson.loads(body)["reason"] == "request_timeout"
            assert orjson.loads(body)["message"] == "The request body did not arrive in time."
            assert await raw.stream.receive_some() == b""
    finally:
        await raw.aclose()


async def test_gates_run_before_routing(start_server: StartServer) -> None:
    """An unknown method or path still passes auth, role and the version gate first."""
    server = await start_server(worker_token=WORKER_TOKEN)
    async with server.client(token=None, **WP) as c:
        r = await c.get(POLL)
        assert_worker_error(r, 401, "unauthorized")
    async with server.client(**WP) as c:
        r = await c.get(POLL)
        assert_worker_error(r, 403, "forbidden")
    async with server.client(WORKER_TOKEN) as c:
        r = await c.get(POLL)
        assert_worker_error(r, 400, "missing_protocol_version")
    async with server.client(WORKER_TOKEN, **WP) as c:
        r = await c.get(POLL)
        assert_worker_error(r, 405, "method_not_allowed")
        r = await c.delete("/api/worker/register")
        assert_worker_error(r, 405, "method_not_allowed")
        r = await c.post("/api/worker/registrations/w-1")
        assert_worker_error(r, 405, "method_not_allowed")
        r = await c.post("/api/worker/workflow-tasks/t-1/nothing")
        assert_worker_error(r, 404, "not_found")
        r = await c.post("/api/worker/workflow-tasks//complete", json={})
        assert_worker_error(r, 404, "not_found")
        r = await c.head(POLL)
        assert r.status_code == 405
        assert r.content == b""


async def test_trailing_slash_and_namespace_parameter(start_server: StartServer) -> None:
    server = await start_server(worker_token=WORKER_TOKEN)
    async with server.client(WORKER_TOKEN, **WP) as c:
        r = await c.post("/api/worker/register/", json=register_body())
        assert r.status_code == 201, r.text
        r = await c.post(
            "/api/worker/register", params={"namespace": "nowhere"}, json=register_body()
        )
        assert_worker_error(r, 404, "namespace_not_found", namespace="nowhere")
        r = await c.post(
            "/api/worker/register", params={"namespace": "DEFAULT"}, json=register_body("w-2")
        )
        assert r.status_code == 201, r.text
        # The header wins over the parameter.
        r = await c.post(
            "/api/worker/register",
            params={"namespace": "nowhere"},
            headers={"X-Namespace": "default"},
            json=register_body("w-3"),
        )
        assert r.status_code == 201, r.text


async def server_with_a_workflow(start_server: StartServer) -> tuple[RunningServer, str]:
    """A server with worker-token auth and one started workflow on a fresh queue."""
    server = await start_server(worker_token=WORKER_TOKEN)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with server.client(**CP) as cc:
        r = await cc.post(
            "/api/workflows",
            json={"workflow_id": f"wf-{queue}", "workflow_type": "greeter", "task_queue": queue},
        )
        assert r.status_code == 201, r.text
    return server, queue


async def test_poll_answers_are_compressed_when_asked(start_server: StartServer) -> None:
    server, queue = await server_with_a_workflow(start_server)
    async with server.client(WORKER_TOKEN, **WP) as c:
        body = {"worker_id": "w-1", "task_queue": queue, "timeout_seconds": 0}
        async with c.stream("POST", POLL, json=body, headers={"Accept-Encoding": "gzip"}) as r:
            packed = b"".join([chunk async for chunk in r.aiter_raw()])
        assert r.status_code == 200
        assert r.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in r.headers["vary"].lower()
        assert int(r.headers["content-length"]) == len(packed)
        task = orjson.loads(gzip.decompress(packed))["task"]
        assert task["workflow_id"] == f"wf-{queue}"
        # Without Accept-Encoding the same kind of answer comes plain.
        r = await c.post(POLL, json=body, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in r.headers
        assert r.json()["poll_status"] == "empty"


def task_count() -> int:
    """Every task of this trio run (the in-process server's included)."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


async def settle_to(count: int) -> int:
    with trio.move_on_after(3):
        while task_count() > count:
            await trio.sleep(0.05)
    return task_count()


async def test_a_big_refused_body_leaves_no_task_behind(start_server: StartServer) -> None:
    """The body keeps coming after the 413 (more than Hypercorn queues for the
    application): the answer still arrives, and neither the request's task nor
    Hypercorn's connection task is left hanging afterwards."""
    srv = await start_server(max_payload_bytes=2048, worker_token=WORKER_TOKEN)
    await trio.sleep(0.2)
    baseline = task_count()
    url = httpx.URL(srv.url)
    assert url.port is not None
    stream = await trio.open_tcp_stream(url.host, url.port)
    head = (
        f"POST {POLL} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {WORKER_TOKEN}\r\n{WP_HEADER}: 1.20\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n%s\r\n" % (1000, b"x" * 1000)
    with trio.fail_after(10):
        await stream.send_all(head + chunk * 200 + b"0\r\n\r\n")
        answer = b""
        while b"payload_too_large" not in answer:
            data = await stream.receive_some(65536)
            assert data, answer
            answer += data
    assert answer.startswith(b"HTTP/1.1 413")
    await stream.aclose()
    assert await settle_to(baseline) <= baseline


async def test_absolute_form_targets_reach_the_worker_plane(start_server: StartServer) -> None:
    srv = await start_server(worker_token=WORKER_TOKEN)
    raw = await RawHttp.open(srv)
    try:
        body = orjson.dumps(register_body())
        status, headers, payload = await raw.request(
            "POST",
            f"{srv.url}/api/worker/register",
            {**JSON_CT, **WP, "Authorization": f"Bearer {WORKER_TOKEN}"},
            body,
        )
    finally:
        await raw.aclose()
    assert status == 201, payload
    assert headers[WP_HEADER.lower()] == "1.20"


async def test_a_task_claimed_for_a_poller_that_left_is_released(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poller disconnects while its claim runs: the claimed task goes back to
    the queue at once (not after the lease expires) for the next poller."""
    import asyncio

    from dwtrio.http import workflow_tasks as wt_http

    real_claim = wt_http.WORKFLOW_TASKS.claim
    claim_started = trio.Event()
    started = bridge.to_trio(claim_started.set)  # the claim runs on the loop's thread

    async def slow_claim(conn: Any, params: Any, *, replay_poll: bool) -> Any:
        if params.worker_id == "leaver":
            started()
            await asyncio.sleep(0.5)  # the store operation runs on the asyncio side
        return await real_claim(conn, params, replay_poll=replay_poll)

    # The server's workflow-task poll claims with this (read as its routes are built).
    slow = attrs.evolve(wt_http.WORKFLOW_TASKS, claim=slow_claim)
    monkeypatch.setattr(wt_http, "WORKFLOW_TASKS", slow)
    server, queue = await server_with_a_workflow(start_server)
    url = httpx.URL(server.url)
    assert url.port is not None
    stream = await trio.open_tcp_stream(url.host, url.port)
    body = orjson.dumps({"worker_id": "leaver", "task_queue": queue, "timeout_seconds": 5})
    head = (
        f"POST {POLL} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {WORKER_TOKEN}\r\n{WP_HEADER}: 1.20\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with trio.fail_after(10):
        await stream.send_all(head + body)
        await claim_started.wait()
    await stream.aclose()  # gone while the claim runs
    await trio.sleep(1.0)  # the claim ends; the lease is released
    async with server.client(WORKER_TOKEN, **WP) as c:
        r = await c.post(
            POLL, json={"worker_id": "stayer", "task_queue": queue, "timeout_seconds": 0}
        )
    task = r.json()["task"]
    assert task is not None, r.text
    assert task["lease_owner"] == "stayer"
    assert task["workflow_task_attempt"] == 1


async def test_idle_keep_alive_connections_close_after_the_configured_time(
    start_server: StartServer,
) -> None:
    """DW_KEEP_ALIVE_TIMEOUT_SECONDS reaches Hypercorn: an idle connection stays usable
    within it and the server closes it after it; the default (75 s) outlasts the 5 s
    for which httpx keeps idle connections, so a pooled connection is never closed
    under a client about to reuse it."""
    server = await start_server(auth_driver="none", keep_alive_timeout_s=1.0)
    raw = await RawHttp.open(server)
    assert (await raw.request("GET", "/api/health", {}))[0] == 200
    await trio.sleep(0.2)
    raw.next_cycle()
    assert (await raw.request("GET", "/api/health", {}))[0] == 200  # still open
    idle_from = trio.current_time()
    with trio.fail_after(2.5):  # well before Hypercorn's own default of 5 s
        assert await raw.stream.receive_some(1024) == b""  # closed by the server
    assert trio.current_time() - idle_from >= 0.8  # ... not before the timeout
    await raw.aclose()
    # The default keeps an idle connection open past a client pool's 5 s.
    default = await start_server(auth_driver="none", server_id="test-node-2")
    assert default.settings.keep_alive_timeout_s > 5
    raw = await RawHttp.open(default)
    assert (await raw.request("GET", "/api/health", {}))[0] == 200
    await trio.sleep(5.5)
    raw.next_cycle()
    assert (await raw.request("GET", "/api/health", {}))[0] == 200
    await raw.aclose()
