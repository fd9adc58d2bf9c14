"""GET /metrics: the Prometheus text of a real server after real traffic.

What is checked: the families and their types, that the counters of the
traffic moved (HTTP by route template, claims, poll answers, store calls), who
may scrape (operator/admin credentials or DW_METRICS_TOKEN; 401 without a
credential, 403 for the worker role), and that labels stay bounded (forty
queues, unknown methods and raw ids add no series).

Tests in one process share prometheus_client's registry, so every assertion
is about a difference between two scrapes of the same process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from dwtrio import payloads

from conftest import ADMIN_TOKEN, CP, WP, RunningServer, StartServer
from http_clients import Clients

TOKEN = "metrics-test-token"
Q = "metrics-q"
POLL_WF = "/api/worker/workflow-tasks/poll"
DONE = [{"type": "complete_workflow", "result": {"codec": "avro", "blob": payloads.encode(1)}}]

#: Every dwtrio family and its type (as the parser names it: counters without _total).
FAMILIES = {
    "dwtrio_http_requests": "counter",
    "dwtrio_http_request_duration_seconds": "histogram",
    "dwtrio_polls_open": "gauge",
    "dwtrio_poll_answers": "counter",
    "dwtrio_poll_wake_to_answer_seconds": "histogram",
    "dwtrio_claims": "counter",
    "dwtrio_sync_matches": "counter",
    "dwtrio_wake_bus_published": "counter",
    "dwtrio_wake_bus_received": "counter",
    "dwtrio_wake_bus_dropped": "counter",
    "dwtrio_wake_bus_degraded": "gauge",
    "dwtrio_store_call_duration_seconds": "histogram",
    "dwtrio_store_retries": "counter",
    "dwtrio_store_unavailable": "counter",
    "dwtrio_background_last_pass_timestamp_seconds": "gauge",
    "dwtrio_background_pass_duration_seconds": "histogram",
    "dwtrio_background_pass_failures": "counter",
}


class Scrape:
    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` whose labels include ``labels``."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def series(self, prefix: str = "dwtrio_") -> set[tuple[str, tuple[tuple[str, str], ...]]]:
        return {
            (s.name, tuple(sorted(s.labels.items())))
            for s in self.samples
            if s.name.startswith(prefix)
        }


async def scrape(server: RunningServer, token: str | None = ADMIN_TOKEN) -> Scrape:
    async with server.client(token) as c:
        r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return Scrape(r.text)


class Worker(Clients):
    async def poll(self, queue: str = Q, timeout: int = 0) -> dict[str, Any] | None:
        r = await self.wc.post(
            POLL_WF, json={"worker_id": "w1", "task_queue": queue, "timeout_seconds": timeout}
        )
        assert r.status_code == 200, r.text
        return r.json()["task"]  # type: ignore[no-any-return]


async def test_scrape_after_start_poll_complete(start_server: StartServer) -> None:
    async with Worker.open(start_server, TOKEN) as w:
        before = await scrape(w.server, TOKEN)
        assert {n: before.families[n].type for n in FAMILIES} == FAMILIES
        # prometheus_client's process and Python collectors come along.
        assert before.families["process_cpu_seconds"].type == "counter"
        assert "python_gc_collections" in before.families

        await w.start_workflow("m-1", "greeter", Q, ["x"])
        task = await w.poll()
        assert task is not None
        await w.complete(task, DONE)
        assert await w.poll() is None  # an empty answer
        r = await w.cc.get("/api/workflows/m-1")
        assert r.status_code == 200, r.text
        r = await w.cc.get("/api/workflows/no-such-id")
        assert r.status_code == 404

        after = await scrape(w.server, TOKEN)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    requests = "dwtrio_http_requests_total"
    assert moved(requests, route="/api/workflows", method="POST", status="201") == 1
    assert (
        moved(requests, route="/api/worker/workflow-tasks/poll", method="POST", status="200") == 2
    )
    assert (
        moved(
            requests,
            route="/api/worker/workflow-tasks/{task_id}/complete",
            method="POST",
            status="200",
        )
        == 1
    )
    # Both describes count under one template: the id is not a label.
    assert moved(requests, route="/api/workflows/{wf}", method="GET") == 2
    assert moved(requests, route="/api/workflows/{wf}", status="404") == 1
    # The scrape before this one counted too.
    assert moved(requests, route="/metrics", method="GET", status="200") == 1
    duration = "dwtrio_http_request_duration_seconds_count"
    assert moved(duration, route="/api/worker/workflow-tasks/poll", status_class="2xx") == 2

    assert moved("dwtrio_claims_total", kind="workflow", result="found") == 1
    assert moved("dwtrio_claims_total", kind="workflow", result="empty") >= 1
    assert moved("dwtrio_poll_answers_total", kind="workflow", result="task") == 1
    assert moved("dwtrio_poll_answers_total", kind="workflow", result="empty") == 1
    assert after.value("dwtrio_polls_open", kind="workflow") == 0
    assert moved("dwtrio_store_call_duration_seconds_count", mode="autocommit") >= 2
    assert moved("dwtrio_store_call_duration_seconds_count", mode="transaction") >= 1
    assert moved("dwtrio_store_call_duration_seconds_sum") > 0


async def test_parked_poll_is_open_then_woken(start_server: StartServer) -> None:
    async with Worker.open(start_server, TOKEN) as w:
        before = await scrape(w.server, TOKEN)
        got: list[dict[str, Any] | None] = []
        async with trio.open_nursery() as nursery:

            async def park() -> None:
                got.append(await w.poll(timeout=10))

            nursery.start_soon(park)
            empty = "dwtrio_claims_total"
            # Parked: its claim found nothing (it parks right after, without a checkpoint).
            with trio.fail_after(5):
                while (await scrape(w.server, TOKEN)).value(empty, result="empty") == before.value(
                    empty, result="empty"
                ):
                    await trio.sleep(0.02)
            parked = await scrape(w.server, TOKEN)
            assert parked.value("dwtrio_polls_open", kind="workflow") == 1
            await w.start_workflow("m-2", "greeter", Q, ["x"])
        after = await scrape(w.server, TOKEN)
    assert got[0] is not None
    assert after.value("dwtrio_polls_open", kind="workflow") == 0
    # The start handed its task straight to the parked poll.
    assert (
        after.value("dwtrio_sync_matches_total", kind="workflow")
        - before.value("dwtrio_sync_matches_total", kind="workflow")
        == 1
    )
    woken = "dwtrio_poll_wake_to_answer_seconds_count"
    assert after.value(woken, kind="workflow") - before.value(woken, kind="workflow") == 1


async def test_who_may_scrape(start_server: StartServer) -> None:
    server = await start_server(worker_token="wt", operator_token="ot", metrics_token="scrape-only")
    async with httpx.AsyncClient(base_url=server.url) as c:

        async def status(token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            r = await c.get("/metrics", headers=headers)
            if r.status_code != 200:
                assert r.headers["content-type"].startswith("application/json")
                assert "reason" in r.json()
            return r.status_code

        assert await status(None) == 401
        assert await status("wrong") == 401
        assert await status("wt") == 403
        assert await status("ot") == 200
        assert await status(ADMIN_TOKEN) == 200
        assert await status("scrape-only") == 200
        # The metrics token opens nothing else.
        r = await c.get("/api/namespaces", headers={"Authorization": "Bearer scrape-only", **CP})
        assert r.status_code == 401
        r = await c.post(
            POLL_WF,
            json={"worker_id": "w", "task_queue": Q, "timeout_seconds": 0},
            headers={"Authorization": "Bearer scrape-only", **WP},
        )
        assert r.status_code == 401


def label_values(samples: Iterable[Sample]) -> set[str]:
    return {v for s in samples for v in s.labels.values()}


async def test_labels_stay_bounded(start_server: StartServer) -> None:
    async with Worker.open(start_server, TOKEN) as w:
        assert await w.poll("bounded-0") is None
        r = await w.cc.request("BREW", "/api/workflows/bounded-wf-0")
        assert r.status_code in (404, 405)
        first = await scrape(w.server, TOKEN)
        for i in range(1, 41):
            assert await w.poll(f"bounded-{i}") is None
            r = await w.cc.get(f"/api/workflows/bounded-wf-{i}")
            assert r.status_code == 404
            r = await w.cc.request(f"BREW{i}", f"/api/no/such/path/{i}")
            assert r.status_code in (404, 405)
            r = await w.wc.post(
                f"/api/worker/workflow-tasks/bounded-task-{i}/complete",
                json={"lease_owner": "w1", "workflow_task_attempt": 1, "commands": DONE},
            )
            assert r.status_code in (404, 409), r.text
        second = await scrape(w.server, TOKEN)
    values = label_values(s for s in second.samples if s.name.startswith("dwtrio_"))
    assert not [v for v in values if "bounded" in v or "BREW" in v]
    assert "other" in {s.labels.get("method") for s in second.samples}
    # Forty more queues, ids and methods added only the series of the routes used
    # for the first time (the complete route, describe's GET, the unmatched path with
    # its statuses).
    new = {name_labels for name_labels in second.series() - first.series()}
    routes = {dict(labels).get("route") for _name, labels in new}
    assert routes <= {
        "/api/worker/workflow-tasks/{task_id}/complete",
        "/api/workflows/{wf}",
        "unmatched",
        "/metrics",
    }
    assert len(new) <= 60, sorted(new)
