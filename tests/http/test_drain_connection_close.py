"""A draining server's answers say ``Connection: close``.

Hypercorn closes a connection after its response once the server is shutting down. A
load balancer that keeps connections alive must be told, or it sends the next request
on that connection (a worker polls again at once when its poll is answered), finds it
closed and answers its client 502, since a POST may not be sent twice (found by the
graceful-drain drill: two 502s per drain through nginx).
"""

from __future__ import annotations

import base64

import httpx
import trio

from conftest import CP, WP, StartServer

TOKEN = "drain-token"
POLL = "/api/worker/workflow-tasks/poll"


def token_after(sequence: int) -> str:
    """A history page token: the events after ``sequence``."""
    return base64.b64encode(str(sequence).encode()).decode()


def poll_body(timeout_s: int) -> dict[str, object]:
    return {"worker_id": "w1", "task_queue": "q", "timeout_seconds": timeout_s}


async def test_answers_given_while_draining_ask_the_client_to_close(
    start_server: StartServer,
) -> None:
    server = await start_server(admin_token=None, auth_token=TOKEN)
    got: dict[str, httpx.Response] = {}
    async with server.client(TOKEN, **WP) as wc, server.client(TOKEN, **CP) as cc:
        before = await wc.post(POLL, json=poll_body(0))
        assert before.status_code == 200 and before.json()["task"] is None
        assert before.headers.get("connection") != "close"  # kept alive while serving
        r = await cc.post(
            "/api/workflows", json={"workflow_id": "wf", "workflow_type": "t", "task_queue": "x"}
        )
        run_id = r.json()["run_id"]
        last = (await cc.get(f"/api/workflows/wf/runs/{run_id}/history")).json()["events"][-1]

        async def parked_poll() -> None:
            got["poll"] = await wc.post(POLL, json=poll_body(30))

        async def parked_history_wait() -> None:
            got["history"] = await cc.get(
                f"/api/workflows/wf/runs/{run_id}/history",
                params={"next_page_token": token_after(last["sequence"]), "wait_new_event": "1"},
            )

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(parked_poll)
                nursery.start_soon(parked_history_wait)
                await trio.sleep(0.5)
                server.stop.set()
            await server.stopped.wait()
    assert got["poll"].status_code == 200 and got["poll"].json()["task"] is None
    assert got["history"].status_code == 200, got["history"].text
    for name, answer in got.items():
        assert answer.headers.get("connection") == "close", (name, answer.headers)
