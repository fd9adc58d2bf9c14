"""Start, describe and history are served below Quart (``worker_plane.ControlRoute``);
their answers are the ones the Quart app gave for the same requests.

The expectations in ``snapshots/below_quart.json`` were recorded from the Quart app
(commit 30c22c2, before these routes moved): status, every response header in order
but ``date``, ``server`` and ``x-request-id``, and the body, with what differs from
run to run (run ids, command ids, times, request ids) replaced by placeholders. A gzip body is
compared once decompressed, ``content-length`` only as the body's length.
``DWTRIO_RECORD_PARITY=1`` writes the file anew.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
from test_request_log import request_lines
from test_request_log import request_logs as request_logs  # the fixture

from dwtrio.http.workflows import BELOW_QUART, encode_token

from conftest import ADMIN_TOKEN, CP, RunningServer, StartServer
from test_gates import RawHttp

SNAPSHOT = Path(__file__).parent / "snapshots" / "below_quart.json"
SKIPPED_HEADERS = {"date", "server", "x-request-id"}
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
#: Ids made per request (command ids), once the known ones are swapped.
_ID = re.compile(r'"0[0-9a-z]{25}"')
BIG_INPUT = ["x" * 2000]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON_HEADERS = {**AUTH, **CP, "Content-Type": "application/json"}


def start_body(workflow_id: str, workflow_input: Any = None) -> bytes:
    body = {"workflow_id": workflow_id, "workflow_type": "parity.Flow", "task_queue": "q"}
    if workflow_input is not None:
        body["input"] = workflow_input
    return json.dumps(body).encode()


class OrderedHttp(RawHttp):
    """``RawHttp`` that keeps the last response's headers as sent, in order."""

    last_headers: list[tuple[str, str]]

    async def _response(self) -> tuple[int, dict[str, str], bytes]:
        status, chunks = 0, []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                self.last_headers = [(k.decode(), v.decode()) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, dict(self.last_headers), b"".join(chunks)


def normalize(text: str, swaps: dict[str, str]) -> str:
    for value, placeholder in swaps.items():
        text = text.replace(value, placeholder)
    return _ID.sub('"<id>"', _TIME.sub("<time>", text))


async def test_start_describe_history_answer_as_quart_did(start_server: StartServer) -> None:
    srv = await start_server(
        worker_token="tok-worker", operator_token="tok-operator", max_payload_bytes=3000
    )
    http = await OrderedHttp.open(srv)
    answers: list[dict[str, Any]] = []
    swaps: dict[str, str] = {}

    async def ask(
        name: str, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> dict[str, Any]:
        nonlocal http
        status, _, data = await http.request(method, target, headers, body)
        raw_headers = http.last_headers
        request_id = dict(raw_headers)["x-request-id"]
        assert dict(raw_headers)["content-length"] == str(len(data))
        if dict(raw_headers).get("content-encoding") == "gzip":
            data = gzip.decompress(data)
        # The length follows the body's (already compared), not the other way round.
        raw_headers = [(k, "<length>" if k == "content-length" else v) for k, v in raw_headers]
        decoded = json.loads(data)
        if isinstance(decoded.get("run_id"), str) and decoded["run_id"] not in swaps:
            swaps[decoded["run_id"]] = f"<run_id_{len(swaps)}>"
        swaps[request_id] = "<request_id>"
        text = normalize(data.decode(), swaps)
        answer = {
            "name": name,
            "status": status,
            "headers": [[k, v] for k, v in raw_headers if k not in SKIPPED_HEADERS],
            "body": json.loads(text),
        }
        answers.append(answer)
        if dict(raw_headers).get("connection") == "close":
            await http.aclose()
            http = await OrderedHttp.open(srv)
        else:
            http.next_cycle()
        return answer

    started = await ask(
        "start", "POST", "/api/workflows", JSON_HEADERS, start_body("wf-1", BIG_INPUT)
    )
    run_id = next(k for k, v in swaps.items() if v == "<run_id_0>")
    await ask("duplicate start", "POST", "/api/workflows", JSON_HEADERS, start_body("wf-1"))
    await ask(
        "start, generated id", "POST", "/api/workflows?namespace=default", JSON_HEADERS, b"{}"
    )
    await ask("malformed json", "POST", "/api/workflows", JSON_HEADERS, b"{nope")
    await ask(
        "no version header",
        "POST",
        "/api/workflows",
        {**AUTH, "Content-Type": "application/json"},
        start_body("wf-2"),
    )
    await ask(
        "wrong role",
        "POST",
        "/api/workflows",
        {**JSON_HEADERS, "Authorization": "Bearer tok-worker"},
        start_body("wf-2"),
    )
    await ask("no credentials", "GET", "/api/workflows/wf-1", CP)
    # Refused with its body unread: Connection: close.
    await ask("too large", "POST", "/api/workflows", JSON_HEADERS, start_body("wf-3", ["x" * 3000]))
    await ask(
        "unknown namespace",
        "POST",
        "/api/workflows",
        {**JSON_HEADERS, "X-Namespace": "nowhere"},
        start_body("wf-2"),
    )
    await ask(
        "text body", "POST", "/api/workflows", {**JSON_HEADERS, "Content-Type": "text/plain"}, b"{}"
    )
    await ask(
        "NUL in a string", "POST", "/api/workflows", JSON_HEADERS, b'{"workflow_type": "a\\u0000b"}'
    )
    await ask("describe", "GET", "/api/workflows/wf-1", {**AUTH, **CP})
    await ask(
        "describe gzip", "GET", "/api/workflows/wf-1", {**AUTH, **CP, "Accept-Encoding": "gzip"}
    )
    await ask("describe missing", "GET", "/api/workflows/wf-nope", {**AUTH, **CP})
    await ask("describe unstorable id", "GET", "/api/workflows/wf%20x", {**AUTH, **CP})
    history = f"/api/workflows/wf-1/runs/{run_id}/history"
    await ask("history", "GET", history, {**AUTH, **CP})
    await ask(
        "history page",
        "GET",
        history + "?page_size=1",
        {**AUTH, **CP, "Accept-Encoding": "gzip, deflate"},
    )
    await ask("history bad token", "GET", history + "?next_page_token=%25%25", {**AUTH, **CP})
    await ask("history bad page size", "GET", history + "?page_size=x", {**AUTH, **CP})
    await ask("history missing run", "GET", "/api/workflows/wf-1/runs/nope/history", {**AUTH, **CP})
    await ask("put on start", "PUT", "/api/workflows", JSON_HEADERS, b"{}")
    await ask("delete on describe", "DELETE", "/api/workflows/wf-1", {**AUTH, **CP})
    await ask("post on history", "POST", history, JSON_HEADERS, b"{}")
    await http.aclose()
    assert started["status"] == 201

    if os.environ.get("DWTRIO_RECORD_PARITY"):
        SNAPSHOT.write_text(json.dumps(answers, indent=1) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert [a["name"] for a in answers] == [e["name"] for e in expected]
    for answer, want in zip(answers, expected, strict=True):
        assert answer == want, answer["name"]


def test_only_exact_matches_are_served_below_quart() -> None:
    """Anything but the exact method and path (HEAD, a trailing slash, other methods,
    the routes beside them) is left to the Quart app."""

    def served(method: str, path: str) -> str | None:
        for route in BELOW_QUART:
            if route.match(method, path) is not None:
                return route.handler.__name__
        return None

    assert served("POST", "/api/workflows") == "start_workflow"
    assert served("GET", "/api/workflows/wf-1") == "describe_workflow"
    assert served("GET", "/api/workflows/wf-1/runs/r-1/history") == "history"
    for method, path in [
        ("GET", "/api/workflows"),
        ("PUT", "/api/workflows"),
        ("POST", "/api/workflows/"),
        ("HEAD", "/api/workflows/wf-1"),
        ("GET", "/api/workflows/wf-1/"),
        ("DELETE", "/api/workflows/wf-1"),
        ("GET", "/api/workflows/wf-1/runs"),
        ("GET", "/api/workflows/wf-1/runs/r-1"),
        ("GET", "/api/workflows/wf-1/runs//history"),
        ("GET", "/api/workflows/wf-1/runs/r-1/history/export"),
        ("POST", "/api/workflows/wf-1/runs/r-1/history"),
    ]:
        assert served(method, path) is None, (method, path)


async def test_a_history_poll_whose_client_left_logs_client_gone(
    server: RunningServer, request_logs: pytest.LogCaptureFixture
) -> None:
    """The long-polled history page watches for its client below Quart as Quart did:
    the client leaves, the poll ends there (no answer, ``action=client_gone``)."""
    async with server.client(**CP) as c:
        r = await c.post("/api/workflows", json={"workflow_id": "gone", "workflow_type": "t"})
        assert r.status_code == 201, r.text
        history = f"/api/workflows/gone/runs/{r.json()['run_id']}/history"
        last = (await c.get(history)).json()["events"][-1]["sequence"]
        with pytest.raises(httpx.ReadTimeout):
            await c.get(
                history,
                params={"wait_new_event": "1", "next_page_token": encode_token(last)},
                headers={"X-Request-Id": "rid-history-gone"},
                timeout=0.5,
            )
    (line,) = await request_lines(request_logs, "rid-history-gone")
    assert line.status is None and line.action == "client_gone"
    assert line.route == "/api/workflows/{wf}/runs/{run_id}/history"
