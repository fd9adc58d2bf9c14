"""The wire, byte for byte: one scripted session of requests, its answers compared with a snapshot.

A restructuring of the code must not change what clients see. This test plays a
fixed scenario against a fresh server (control plane, worker plane, discovery,
and a range of refusals) and compares every answer's status, content type and
body, byte for byte, with ``snapshots/wire.json``, after masking what differs
from run to run (ids, timestamps, the bound port). Run with ``DWTRIO_UPDATE_SNAPSHOTS=1`` to
write the snapshot anew, and review its diff like code: a change there is a
change of the protocol.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import attrs
import httpx

from conftest import CP, WP, StartServer

SNAPSHOT = Path(__file__).parent / "snapshots" / "wire.json"
TOKEN = "snap-token"
Q = "snap-queue"

ULID = re.compile(r"\b[0-9a-hjkmnp-tv-z]{26}\b")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
#: A worker registration's fencing token (32 lowercase hex characters, random).
REGISTRATION_TOKEN = re.compile(r"\b[0-9a-f]{32}\b")


def mask(value: Any, port: str) -> Any:
    if isinstance(value, dict):
        return {k: mask(v, port) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, port) for v in value]
    if isinstance(value, str):
        value = TIMESTAMP.sub("<ts>", ULID.sub("<id>", value))
        value = REGISTRATION_TOKEN.sub("<token>", value)
        return value.replace(port, "<port>")
    return value


@attrs.define
class Recorder:
    client: httpx.AsyncClient
    port: str
    answers: list[dict[str, Any]] = attrs.field(factory=list)

    async def call(
        self,
        label: str,
        method: str,
        path: str,
        *,
        plane: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        # A fixed request id, so the error bodies' request_id is the same every run.
        headers = {"X-Request-Id": "snap-request", **(plane or {}), **kwargs.pop("headers", {})}
        r = await self.client.request(method, path, headers=headers, **kwargs)
        assert r.headers["x-request-id"] == headers["X-Request-Id"]
        try:
            body = r.json()
        except ValueError:
            body = r.text
        self.answers.append(
            {
                "call": f"{label}: {method} {mask(path, self.port)}",
                "status": r.status_code,
                "content_type": r.headers.get("content-type"),
                # The exact bytes (key order included), masked like the body.
                "raw": mask(r.text, self.port),
                "body": mask(body, self.port),
            }
        )
        return body


async def play(rec: Recorder) -> None:
    call = rec.call
    await call("discovery", "GET", "/api/cluster/info")
    await call("health", "GET", "/api/health")
    await call("namespaces", "GET", "/api/namespaces", plane=CP)
    await call(
        "create namespace",
        "POST",
        "/api/namespaces",
        plane=CP,
        json={"name": "snap", "description": "snapshot"},
    )
    await call("describe namespace", "GET", "/api/namespaces/snap", plane=CP)
    start = {
        "workflow_id": "snap-1",
        "workflow_type": "greeter",
        "task_queue": Q,
        "input": ["world"],
        "memo": {"owner": "snap"},
        "search_attributes": {"Region": "eu"},
    }
    await call("start", "POST", "/api/workflows", plane=CP, json=start)
    await call("start again", "POST", "/api/workflows", plane=CP, json=start)
    await call("describe", "GET", "/api/workflows/snap-1", plane=CP)
    worker = {"worker_id": "snap-worker", "task_queue": Q}
    await call(
        "register",
        "POST",
        "/api/worker/register",
        plane=WP,
        json={
            **worker,
            "runtime": "python",
            "supported_workflow_types": ["greeter"],
            "supported_activity_types": ["greet"],
        },
    )
    poll = {**worker, "timeout_seconds": 1}
    task = await call(
        "poll workflow task",
        "POST",
        "/api/worker/workflow-tasks/poll",
        plane=WP,
        json={**poll, "poll_request_id": "snap-poll-1"},
    )
    task = task["task"]
    lease = {"lease_owner": "snap-worker", "workflow_task_attempt": 1}
    await call(
        "workflow task heartbeat",
        "POST",
        f"/api/worker/workflow-tasks/{task['task_id']}/heartbeat",
        plane=WP,
        json=lease,
    )
    schedule = {
        "type": "schedule_activity",
        "activity_type": "greet",
        "queue": Q,
        "arguments": task["arguments"],
    }
    await call(
        "complete with a stale attempt",
        "POST",
        f"/api/worker/workflow-tasks/{task['task_id']}/complete",
        plane=WP,
        json={**lease, "workflow_task_attempt": 2, "commands": [schedule]},
    )
    await call(
        "complete: schedule activity",
        "POST",
        f"/api/worker/workflow-tasks/{task['task_id']}/complete",
        plane=WP,
        json={**lease, "commands": [schedule]},
    )
    act = await call(
        "poll activity task", "POST", "/api/worker/activity-tasks/poll", plane=WP, json=poll
    )
    act = act["task"]
    attempt = {"activity_attempt_id": act["activity_attempt_id"], "lease_owner": "snap-worker"}
    await call(
        "activity heartbeat",
        "POST",
        f"/api/worker/activity-tasks/{act['task_id']}/heartbeat",
        plane=WP,
        json={**attempt, "details": {"progress": 1}},
    )
    await call(
        "complete activity",
        "POST",
        f"/api/worker/activity-tasks/{act['task_id']}/complete",
        plane=WP,
        json={**attempt, "result": "hello, world"},
    )
    await call(
        "signal",
        "POST",
        "/api/workflows/snap-1/signal/nudge",
        plane=CP,
        json={"input": [1], "request_id": "snap-signal"},
    )
    task = await call(
        "poll workflow task again", "POST", "/api/worker/workflow-tasks/poll", plane=WP, json=poll
    )
    task = task["task"]
    await call(
        "history page",
        "POST",
        f"/api/worker/workflow-tasks/{task['task_id']}/history",
        plane=WP,
        json={"lease_owner": "snap-worker", "workflow_task_attempt": 1},
    )
    await call(
        "complete workflow",
        "POST",
        f"/api/worker/workflow-tasks/{task['task_id']}/complete",
        plane=WP,
        json={
            "lease_owner": "snap-worker",
            "workflow_task_attempt": 1,
            "commands": [{"type": "complete_workflow", "result": "hello, world"}],
        },
    )
    described = await call("describe closed", "GET", "/api/workflows/snap-1", plane=CP)
    run_id = described["run_id"]
    await call("runs", "GET", "/api/workflows/snap-1/runs", plane=CP)
    await call("history", "GET", f"/api/workflows/snap-1/runs/{run_id}/history", plane=CP)
    await call("list", "GET", "/api/workflows", plane=CP, params={"page_size": 10})
    await call("heartbeat", "POST", "/api/worker/heartbeat", plane=WP, json=worker)
    for n, action in ((2, "terminate"), (3, "cancel")):
        other = {**start, "workflow_id": f"snap-{n}"}
        await call(f"start {n}", "POST", "/api/workflows", plane=CP, json=other)
        await call(
            action,
            "POST",
            f"/api/workflows/snap-{n}/{action}",
            plane=CP,
            json={"reason": "snapshot", "request_id": f"snap-{action}"},
        )
    await call("empty poll", "POST", "/api/worker/activity-tasks/poll", plane=WP, json=poll)
    await call("deregister", "DELETE", "/api/worker/registrations/snap-worker", plane=WP)
    fence = "/api/worker/registrations/snap-worker/deregister"
    again = await call("register again", "POST", "/api/worker/register", plane=WP, json=worker)
    token = {"registration_token": again["registration_token"]}
    await call("fenced deregister", "POST", fence, plane=WP, json=token)
    await call("fenced deregister replayed", "POST", fence, plane=WP, json=token)
    unknown = {"registration_token": "0" * 32}
    await call("fenced deregister unknown token", "POST", fence, plane=WP, json=unknown)
    # Refusals, each in its documented envelope.
    await call("unknown route", "GET", "/api/nothing-here", plane=CP)
    await call("no version header", "GET", "/api/workflows/snap-1")
    await call("no protocol header", "POST", "/api/worker/heartbeat", json=worker)
    await call("unknown workflow", "GET", "/api/workflows/nobody", plane=CP)
    await call(
        "bad start", "POST", "/api/workflows", plane=CP, json={"workflow_type": 3, "input": []}
    )
    await call(
        "malformed json",
        "POST",
        "/api/workflows",
        plane=CP,
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    await call("bad poll", "POST", "/api/worker/workflow-tasks/poll", plane=WP, json={"x": 1})
    await call(
        "unknown task",
        "POST",
        "/api/worker/activity-tasks/nope/complete",
        plane=WP,
        json={**attempt, "result": None},
    )
    await call("wrong method", "PUT", "/api/worker/register", plane=WP, json=worker)


async def test_the_wire_matches_its_snapshot(start_server: StartServer) -> None:
    server = await start_server(admin_token=None, auth_token=TOKEN, worker_poll_interval_ms=60_000)
    port = server.url.rsplit(":", 1)[1]
    async with server.client(TOKEN) as client:
        rec = Recorder(client, port)
        await play(rec)
    if os.environ.get("DWTRIO_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(rec.answers, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert len(rec.answers) == len(expected)
    for got, want in zip(rec.answers, expected, strict=True):
        assert got == want, got["call"]
