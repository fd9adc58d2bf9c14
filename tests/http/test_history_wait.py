"""``GET .../history?wait_new_event=1``: the history long-poll (control-plane.md §6.1).

A follower asks for the events after its token; while the run is open and none
follow, the request waits for the run's next commit of events, woken by a
history wake: from this process, or from another node through Redis. The
recheck without a wake is two poll intervals; these tests set the interval
long, so an answer in well under it came from a wake.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import pytest
import trio

from dwtrio import payloads

from conftest import CP, StartServer
from http_clients import Clients

TOKEN = "t"
QUEUE = "follow-q"
SLOW_RECHECK_MS = 10_000  # history rechecks every 20 s: only a wake answers sooner


def token_after(sequence: int) -> str:
    return base64.b64encode(str(sequence).encode()).decode()


@attrs.define
class Follower(Clients):
    async def events(self, wf: str, run_id: str, **params: Any) -> httpx.Response:
        return await self.cc.get(f"/api/workflows/{wf}/runs/{run_id}/history", params=params)

    async def signal(self, cc: httpx.AsyncClient, wf: str) -> None:
        r = await cc.post(
            f"/api/workflows/{wf}/signal/poke",
            json={"input": {"codec": "avro", "blob": payloads.encode([1])}},
        )
        assert r.status_code == 202, r.text


@pytest.fixture
async def f(start_server: StartServer) -> AsyncIterator[Follower]:
    async with Follower.open(
        start_server, TOKEN, worker_poll_interval_ms=SLOW_RECHECK_MS, worker_poll_timeout_s=8
    ) as follower:
        yield follower


async def follow_next(
    f: Follower, wf: str, run_id: str, after: int, got: list[tuple[httpx.Response, float]]
) -> None:
    started = trio.current_time()
    r = await f.events(wf, run_id, next_page_token=token_after(after), wait_new_event="1")
    got.append((r, trio.current_time() - started))


async def test_a_follower_gets_the_next_event_as_soon_as_it_is_committed(f: Follower) -> None:
    started = await f.start_workflow("followed", "t", QUEUE, [])
    run_id = started["run_id"]
    first = (await f.events("followed", run_id)).json()["events"]
    last = first[-1]["sequence"]
    got: list[tuple[httpx.Response, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow_next, f, "followed", run_id, last, got)
        await trio.sleep(0.5)
        assert not got  # parked: nothing after the token yet
        await f.signal(f.cc, "followed")
    [(r, took)] = got
    assert r.status_code == 200, r.text
    events = r.json()["events"]
    assert events and events[0]["sequence"] == last + 1
    assert "WorkflowSignaled" in {e["event_type"] for e in events} or events
    assert took < 3.0  # woken by the commit, not by the 20 s recheck or the 8 s deadline


async def test_an_event_already_there_answers_at_once_and_the_deadline_answers_empty(
    f: Follower,
) -> None:
    run_id = (await f.start_workflow("waits", "t", QUEUE, []))["run_id"]
    with trio.fail_after(2):
        r = await f.events("waits", run_id, wait_new_event="true")
    assert r.status_code == 200 and r.json()["events"]
    last = r.json()["events"][-1]["sequence"]
    began = trio.current_time()
    r = await f.events("waits", run_id, next_page_token=token_after(last), wait_new_event="1")
    took = trio.current_time() - began
    assert r.status_code == 200 and r.json()["events"] == []
    assert r.json()["next_page_token"] is None
    assert 7.5 <= took < 12  # DW_WORKER_POLL_TIMEOUT (8 s), then an empty page


async def test_a_closed_run_answers_at_once(f: Follower) -> None:
    run_id = (await f.start_workflow("closes", "t", QUEUE, []))["run_id"]
    r = await f.cc.post("/api/workflows/closes/terminate", json={"reason": "done"})
    assert r.status_code == 200, r.text
    events = (await f.events("closes", run_id)).json()["events"]
    with trio.fail_after(2):  # no more events can come: no wait
        r = await f.events(
            "closes",
            run_id,
            next_page_token=token_after(events[-1]["sequence"]),
            wait_new_event="1",
        )
    assert r.status_code == 200 and r.json()["events"] == []


@pytest.mark.parametrize("value", ["maybe", "2", "tru"])
async def test_wait_new_event_must_be_a_boolean(f: Follower, value: str) -> None:
    run_id = (await f.start_workflow(f"bad-{value}", "t", QUEUE, []))["run_id"]
    r = await f.events(f"bad-{value}", run_id, wait_new_event=value)
    assert r.status_code == 422, r.text
    assert "wait_new_event" in r.json()["errors"]


async def test_false_does_not_wait(f: Follower) -> None:
    run_id = (await f.start_workflow("nowait", "t", QUEUE, []))["run_id"]
    with trio.fail_after(2):
        r = await f.events("nowait", run_id, next_page_token=token_after(99), wait_new_event="0")
    assert r.status_code == 200 and r.json()["events"] == []


async def test_a_follower_on_one_node_is_woken_by_events_committed_on_another(
    start_server: StartServer, redis_url: str
) -> None:
    settings: dict[str, Any] = {
        "admin_token": None,
        "auth_token": TOKEN,
        "redis_url": redis_url,
        "worker_poll_interval_ms": SLOW_RECHECK_MS,
        "worker_poll_timeout_s": 8,
    }
    a, b = await start_server(**settings), await start_server(**settings)
    async with (
        Follower.open_on(a, TOKEN) as fa,
        b.client(TOKEN, **CP) as cb,
    ):
        run_id = (await fa.start_workflow("two-nodes", "t", QUEUE, []))["run_id"]
        last = (await fa.events("two-nodes", run_id)).json()["events"][-1]["sequence"]
        await trio.sleep(0.5)  # both nodes subscribed
        got: list[tuple[httpx.Response, float]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow_next, fa, "two-nodes", run_id, last, got)
            await trio.sleep(0.5)
            await fa.signal(cb, "two-nodes")  # committed through node b
        [(r, took)] = got
        assert r.status_code == 200 and r.json()["events"], r.text
        assert took < 3.0


async def test_a_draining_server_answers_its_history_waits(start_server: StartServer) -> None:
    server = await start_server(admin_token=None, auth_token=TOKEN, worker_poll_timeout_s=30)
    async with server.client(TOKEN, **CP) as cc:
        r = await cc.post(
            "/api/workflows",
            json={"workflow_id": "drain-follow", "workflow_type": "t", "task_queue": QUEUE},
        )
        run_id = r.json()["run_id"]
        events = (await cc.get(f"/api/workflows/drain-follow/runs/{run_id}/history")).json()
        last = events["events"][-1]["sequence"]
        got: list[tuple[int, float]] = []

        async def follow() -> None:
            began = trio.current_time()
            r = await cc.get(
                f"/api/workflows/drain-follow/runs/{run_id}/history",
                params={"next_page_token": token_after(last), "wait_new_event": "1"},
            )
            got.append((r.status_code, trio.current_time() - began))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.sleep(0.5)
            await server.shutdown()
    [(status, took)] = got
    assert status == 200 and took < 10  # answered by the drain, not the 30 s deadline
