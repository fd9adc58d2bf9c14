"""History retention over real HTTP and in the background loop.

Contract: control-plane.md §11 (``GET /api/system/retention``, ``POST
/api/system/retention/pass``: shapes, 207 when any run failed), data-model.md §4.7
(a run is pruned when terminal, not archived and closed longer ago than its
namespace's ``retention_days``; its history, tasks and detail rows go with it; the
instance stays while other runs exist), docs/retention.md (an open parent keeps its
children; batches; several pruners at once).

Runs are bulk-loaded with SQL (``bench.retention.load_expired_runs``: every row a
run can have) with old ``closed_at``; the loop is off unless a test turns it on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from retention_support import KEEPERS, counts, execute, load, shapes_of_the_keepers

from conftest import CP, RunningServer, StartServer

NO_LOOP = {"retention_enabled": False}


def ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["X-Durable-Workflow-Control-Plane-Version"] == "2"
    body: dict[str, Any] = r.json()
    assert "control_plane" not in body
    return body


@pytest.fixture
async def admin(server_no_loop: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with server_no_loop.client(**CP) as c:
        yield c


@pytest.fixture
async def server_no_loop(start_server: StartServer) -> RunningServer:
    return await start_server(**NO_LOOP)


async def test_status_then_passes_prune_only_expired_runs_and_every_row_they_had(
    admin: httpx.AsyncClient, db_dsn: str
) -> None:
    await load(db_dsn, runs=5, prefix="a")
    await shapes_of_the_keepers(db_dsn)
    before = await counts(db_dsn, "a")
    assert before["history_events"] == 100 and before["workflow_instances"] == 5
    assert all(v > 0 for v in before.values()), before

    status = ok(await admin.get("/api/system/retention"))
    assert list(status) == [
        "namespace",
        "retention_days",
        "cutoff",
        "expired_run_count",
        "expired_run_ids",
        "scan_limit",
        "scan_pressure",
    ]
    assert status["namespace"] == "default" and status["retention_days"] == 30
    assert status["cutoff"].endswith("Z")
    assert status["expired_run_count"] == 5 and status["scan_limit"] == 100
    assert sorted(status["expired_run_ids"]) == [f"run-a{i:09d}" for i in range(5)]
    assert status["scan_pressure"] is False
    small = ok(await admin.get("/api/system/retention", params={"limit": "2"}))
    assert small["expired_run_count"] == 5 and len(small["expired_run_ids"]) == 2
    assert small["scan_limit"] == 2 and small["scan_pressure"] is True

    first = ok(await admin.post("/api/system/retention/pass", json={"limit": 2}))
    assert first["processed"] == 2 and first["pruned"] == 2
    assert first["skipped"] == 0 and first["failed"] == 0
    assert first["pruned_history_events"] == 40 and first["pruned_instances"] == 2
    assert [r["outcome"] for r in first["results"]] == ["pruned", "pruned"]
    assert all(r["history_events"] == 20 for r in first["results"])
    rest = ok(await admin.post("/api/system/retention/pass", json={}))
    assert rest["pruned"] == 3 and rest["failed"] == 0
    assert {r["run_id"] for r in first["results"] + rest["results"]} == set(
        status["expired_run_ids"]
    )
    assert ok(await admin.post("/api/system/retention/pass"))["processed"] == 0
    assert await counts(db_dsn, "a") == dict.fromkeys(before, 0)
    for keeper in KEEPERS:
        kept = await counts(db_dsn, keeper)
        assert kept["workflow_runs"] == 1 and kept["history_events"] == 20, (keeper, kept)
    after = ok(await admin.get("/api/system/retention"))
    assert after["expired_run_count"] == 0 and after["expired_run_ids"] == []


async def test_named_runs_are_pruned_or_skipped_with_the_reason(
    admin: httpx.AsyncClient, db_dsn: str
) -> None:
    await load(db_dsn, runs=2, prefix="n")
    await shapes_of_the_keepers(db_dsn)
    named = [
        "run-n000000000",
        "run-kopen000000000",
        "run-kwindow000000000",
        "run-karch000000000",
        "run-kchild000000000",
        "run-nobody",
        "run-n000000000",  # twice: handled once
    ]
    body = ok(await admin.post("/api/system/retention/pass", json={"run_ids": named}))
    assert body["processed"] == 6 and body["pruned"] == 1 and body["skipped"] == 5
    by_id = {r["run_id"]: r for r in body["results"]}
    assert by_id["run-n000000000"]["outcome"] == "pruned"
    assert {k: by_id[k]["reason"] for k in named[1:6]} == {
        "run-kopen000000000": "run_open",
        "run-kwindow000000000": "within_retention",
        "run-karch000000000": "archived",
        "run-kchild000000000": "parent_open",
        "run-nobody": "run_not_found",
    }
    assert (await counts(db_dsn, "n000000001"))["workflow_runs"] == 1  # not named: kept
    # Another namespace's run is not found from this one.
    ok(await admin.post("/api/namespaces", json={"name": "other-ns", "retention_days": 1}), 201)
    await load(db_dsn, runs=1, prefix="o", namespace="other-ns")
    body = ok(await admin.post("/api/system/retention/pass", json={"run_ids": ["run-o000000000"]}))
    assert body["results"] == [
        {"run_id": "run-o000000000", "outcome": "skipped", "reason": "run_not_found"}
    ]
    other = ok(
        await admin.post(
            "/api/system/retention/pass",
            json={"run_ids": ["run-o000000000"]},
            headers={"X-Namespace": "other-ns"},
        )
    )
    assert other["namespace"] == "other-ns" and other["pruned"] == 1


async def test_a_run_that_cannot_be_deleted_is_an_error_and_the_answer_is_207(
    admin: httpx.AsyncClient, db_dsn: str
) -> None:
    await load(db_dsn, runs=6, prefix="f")
    await execute(
        db_dsn,
        "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused by test trigger'; END $$",
        "CREATE TRIGGER refuse BEFORE DELETE ON history_events FOR EACH ROW "
        "WHEN (OLD.run_id = 'run-f000000002') EXECUTE FUNCTION refuse_delete()",
    )
    body = ok(await admin.post("/api/system/retention/pass", json={}), 207)
    assert body["processed"] == 6 and body["pruned"] == 5 and body["failed"] == 1
    [bad] = [r for r in body["results"] if r["outcome"] == "error"]
    assert bad["run_id"] == "run-f000000002" and bad["reason"] == "prune_failed"
    assert "refused by test trigger" in bad["message"]
    assert (await counts(db_dsn, "f000000002"))["history_events"] == 20
    named = ok(
        await admin.post("/api/system/retention/pass", json={"run_ids": ["run-f000000002"]}),
        207,
    )
    assert named["failed"] == 1
    await execute(db_dsn, "DROP TRIGGER refuse ON history_events")
    assert ok(await admin.post("/api/system/retention/pass", json={}))["pruned"] == 1
    assert all(v == 0 for v in (await counts(db_dsn, "f")).values())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"run_ids": "run-1"}, "run_ids"),
        ({"run_ids": [1]}, "run_ids.0"),
        ({"run_ids": [""]}, "run_ids.0"),
        ({"run_ids": ["x" * 129]}, "run_ids.0"),
        ({"run_ids": [f"r{i}" for i in range(101)]}, "run_ids"),
    ],
)
async def test_bad_pass_bodies_are_422(
    admin: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    r = await admin.post("/api/system/retention/pass", json=body)
    err = ok(r, 422)
    assert err["reason"] == "validation_failed" and field in err["errors"], err


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "²", "1.5", "9" * 30])
async def test_bad_status_limits_are_422(admin: httpx.AsyncClient, limit: str) -> None:
    err = ok(await admin.get("/api/system/retention", params={"limit": limit}), 422)
    assert list(err["errors"]) == ["limit"]
    err = ok(await admin.get("/api/system/activity-timeouts", params={"limit": limit}), 422)
    assert list(err["errors"]) == ["limit"]


async def test_large_limits_are_capped(admin: httpx.AsyncClient) -> None:
    assert ok(await admin.get("/api/system/retention?limit=5000"))["scan_limit"] == 1000
    got = ok(await admin.get("/api/system/activity-timeouts?limit=5000"))
    assert got["scan_limit"] == 100


async def test_the_loop_prunes_in_batches_and_two_nodes_never_double_count(
    start_server: StartServer, db_dsn: str
) -> None:
    await load(db_dsn, runs=1200, prefix="c", events_per_run=5)
    await shapes_of_the_keepers(db_dsn)
    # Two nodes, each sending passes as fast as it can, batches of 50.
    nodes = [await start_server(**NO_LOOP, retention_batch_size=50) for _ in range(2)]
    seen: list[list[dict[str, Any]]] = [[], []]

    async def drain(i: int) -> None:
        async with nodes[i].client(**CP) as c:
            for _ in range(100):
                body = ok(await c.post("/api/system/retention/pass", json={"limit": 200}))
                assert body["failed"] == 0, body
                seen[i] += body["results"]
                if body["processed"] == 0:
                    return

    async with trio.open_nursery() as n:
        n.start_soon(drain, 0)
        n.start_soon(drain, 1)
    ids = [r["run_id"] for results in seen for r in results]
    assert all(r["outcome"] == "pruned" for results in seen for r in results)
    assert len(ids) == len(set(ids)) == 1200  # each run pruned by exactly one node
    assert seen[0] and seen[1], "both nodes took part"
    assert all(v == 0 for v in (await counts(db_dsn, "c")).values())
    for keeper in KEEPERS:
        assert (await counts(db_dsn, keeper))["workflow_runs"] == 1


async def test_background_loops_on_two_nodes_prune_everything_once(
    start_server: StartServer, db_dsn: str
) -> None:
    await load(db_dsn, runs=600, prefix="l", events_per_run=3)
    await shapes_of_the_keepers(db_dsn)
    for _ in range(2):
        await start_server(retention_batch_size=40, retention_interval_s=0.2)
    with trio.fail_after(60):
        while (await counts(db_dsn, "l"))["workflow_runs"]:
            await trio.sleep(0.2)
    assert all(v == 0 for v in (await counts(db_dsn, "l")).values())
    for keeper in KEEPERS:
        assert (await counts(db_dsn, keeper))["workflow_runs"] == 1


async def test_only_admins_may_run_passes(start_server: StartServer) -> None:
    server = await start_server(worker_token="w", operator_token="o", **NO_LOOP)
    for token, status in (("o", 403), ("w", 403), (None, 401)):
        async with server.client(token, **CP) as c:
            for method, path in ROUTES:
                r = await c.request(method, path, json={} if method == "POST" else None)
                assert r.status_code == status, (token, path, r.text)


ROUTES = [
    ("GET", "/api/system/repair"),
    ("POST", "/api/system/repair/pass"),
    ("GET", "/api/system/activity-timeouts"),
    ("POST", "/api/system/activity-timeouts/pass"),
    ("GET", "/api/system/retention"),
    ("POST", "/api/system/retention/pass"),
]
