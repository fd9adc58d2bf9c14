"""Visibility filters and the query language of ``GET /api/workflows`` over real HTTP.

Contract: control-plane.md §5.2 (list parameters, status buckets, substring
``query``), §8 (system attributes); docs/visibility.md (the filters, the
language, ``422 invalid_visibility_query`` with position, keyset paging).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dwtrio.store.pool import Conn, connect_once

from conftest import CP, RunningServer

ATTRIBUTES = {
    "CustomerId": "keyword",
    "Note": "text",
    "OrderTotal": "double",
    "Priority": "int",
    "DueAt": "datetime",
    "Vip": "bool",
    "Tags": "keyword_list",
}

#: workflow id -> (type, task queue, search attributes)
RUNS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "order-1": (
        "orders",
        "q-a",
        {
            "CustomerId": "c-1",
            "OrderTotal": 50.5,
            "Priority": 1,
            "DueAt": "2026-01-01T00:00:00Z",
            "Vip": True,
            "Tags": ["eu", "vip"],
            "Note": 'say "hi" it\'s \\ here',
        },
    ),
    "order-2": (
        "orders",
        "q-b",
        {
            "CustomerId": "c-2",
            "OrderTotal": 150,
            "Priority": 5,
            "DueAt": "2026-06-01T12:00:00+02:00",
            "Vip": False,
            "Tags": ["us"],
        },
    ),
    "order-3": (
        "orders",
        "q-a",
        {
            "CustomerId": "c-1",
            "OrderTotal": 999.99,
            "Priority": 9,
            "Tags": ["eu"],
            "DueAt": "2027-01-01",
        },
    ),
    "refund-1": (
        "refunds",
        "q-b",
        {"CustomerId": "x'; DROP TABLE workflow_runs; --", "DueAt": "2026-09-01T08:30:00"},
    ),
    "plain-1": ("orders", "q-c", {}),
}


async def list_ids(c: httpx.AsyncClient, **params: str) -> list[str]:
    r = await c.get("/api/workflows", params=params, headers=CP)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["workflow_count"] == len(body["workflows"])
    return sorted(w["workflow_id"] for w in body["workflows"])


async def query_ids(c: httpx.AsyncClient, query: str, **params: str) -> list[str]:
    return await list_ids(c, query=query, **params)


async def refused(c: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    r = await c.get("/api/workflows", params=params, headers=CP)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["reason"] == "invalid_visibility_query", body
    assert body["errors"] == {"query": [body["message"]]}
    assert body["control_plane"]["operation"] == "list"
    return body  # type: ignore[no-any-return]


async def seed(c: httpx.AsyncClient) -> dict[str, str]:
    for name, type_ in ATTRIBUTES.items():
        r = await c.post("/api/search-attributes", json={"name": name, "type": type_}, headers=CP)
        assert r.status_code == 201, r.text
    started: dict[str, str] = {}
    for wf, (type_, queue, attributes) in RUNS.items():
        r = await c.post(
            "/api/workflows",
            json={
                "workflow_id": wf,
                "workflow_type": type_,
                "task_queue": queue,
                "business_key": f"bk-{wf}",
                "search_attributes": attributes,
            },
            headers=CP,
        )
        assert r.status_code == 201, r.text
        started[wf] = r.json()["run_id"]
    r = await c.post("/api/workflows/order-2/terminate", json={}, headers=CP)
    assert r.status_code == 200, r.text
    return started


async def test_filter_parameters(server: RunningServer) -> None:
    async with server.client() as c:
        await seed(c)
        everything = sorted(RUNS)
        assert await list_ids(c) == everything
        assert await list_ids(c, status="running") == sorted(set(RUNS) - {"order-2"})
        assert await list_ids(c, status="failed") == ["order-2"]
        assert await list_ids(c, status="terminated") == ["order-2"]
        assert await list_ids(c, workflow_type="refunds") == ["refund-1"]
        assert await list_ids(c, task_queue="q-a") == ["order-1", "order-3"]
        assert await list_ids(c, task_queue="q-a", workflow_type="refunds") == []
        assert await list_ids(c, workflow_id_prefix="order-") == ["order-1", "order-2", "order-3"]
        assert await list_ids(c, workflow_id_prefix="order-1") == ["order-1"]
        assert await list_ids(c, workflow_id_prefix="zzz") == []
        page = (await c.get("/api/workflows", headers=CP)).json()["workflows"]
        starts = {w["workflow_id"]: w["started_at"] for w in page}
        middle = starts["order-3"]
        newer = await list_ids(c, started_after=middle)
        older = await list_ids(c, started_before=middle)
        assert sorted(newer + older + ["order-3"]) == everything
        assert "order-3" not in newer + older
        assert await list_ids(c, started_after="2000-01-01T00:00:00Z") == everything
        assert await list_ids(c, closed_after="2000-01-01T00:00:00Z") == ["order-2"]
        assert await list_ids(c, closed_before="2000-01-01T00:00:00Z") == []
        # all filters together (AND)
        assert await list_ids(
            c, workflow_type="orders", task_queue="q-b", status="failed", workflow_id_prefix="o"
        ) == ["order-2"]

        r = await c.get("/api/workflows", params={"started_after": "yesterday"}, headers=CP)
        assert r.status_code == 422 and r.json()["reason"] == "validation_failed"
        assert "started_after" in r.json()["errors"]
        r = await c.get(
            "/api/workflows",
            params={
                "closed_after": "2026-01-02T00:00:00Z",
                "closed_before": "2026-01-01T00:00:00Z",
            },
            headers=CP,
        )
        assert r.status_code == 422 and r.json()["reason"] == "invalid_time_range", r.text


async def test_query_language(server: RunningServer) -> None:
    async with server.client() as c:
        started = await seed(c)
        # the spec's example shape, and keywords in any case
        assert await query_ids(
            c,
            'WorkflowType = "orders" AND Status = "running" AND OrderTotal > 100'
            " ORDER BY StartTime DESC",
        ) == ["order-3"]
        assert await query_ids(c, "WorkflowType = 'orders' and TaskQueue = 'q-a'") == [
            "order-1",
            "order-3",
        ]
        # system attributes
        assert await query_ids(c, f'RunId = "{started["order-3"]}"') == ["order-3"]
        assert await query_ids(c, 'WorkflowId = "refund-1"') == ["refund-1"]
        assert await query_ids(c, 'WorkflowId STARTS_WITH "order"') == [
            "order-1",
            "order-2",
            "order-3",
        ]
        assert await query_ids(c, 'Status = "terminated"') == ["order-2"]
        assert await query_ids(c, 'Status = "completed"') == []
        assert await query_ids(c, 'BuildId = "b-1"') == []
        assert await query_ids(c, 'CloseTime > "2000-01-01T00:00:00Z"') == ["order-2"]
        assert await query_ids(c, 'StartTime < "2000-01-01T00:00:00Z"') == []
        assert await query_ids(c, 'StartTime BETWEEN "2000-01-01" AND "2999-01-01"') == sorted(RUNS)
        # keyword, text and bool equality; keyword_list membership (each value must be there)
        assert await query_ids(c, 'CustomerId = "c-1"') == ["order-1", "order-3"]
        assert await query_ids(c, 'CustomerId = "c-1" AND CustomerId = "c-2"') == []
        assert await query_ids(c, "Vip = true") == ["order-1"]
        assert await query_ids(c, "Vip = FALSE") == ["order-2"]
        assert await query_ids(c, 'Tags = "eu"') == ["order-1", "order-3"]
        assert await query_ids(c, 'Tags = "eu" AND Tags = "vip"') == ["order-1"]
        assert await query_ids(c, 'Tags = "nope"') == []
        # quotes and escapes
        assert await query_ids(c, r'Note = "say \"hi\" it\'s \\ here"') == ["order-1"]
        assert await query_ids(c, r"Note = 'say \"hi\" it\'s \\ here'") == ["order-1"]
        assert await query_ids(c, 'CustomerId = "x\'; DROP TABLE workflow_runs; --"') == [
            "refund-1"
        ]
        # ranges on int, double and datetime (offsets normalised), BETWEEN, parentheses
        assert await query_ids(c, "OrderTotal > 100") == ["order-2", "order-3"]
        assert await query_ids(c, "OrderTotal >= 150 AND OrderTotal < 999.99") == ["order-2"]
        assert await query_ids(c, "OrderTotal <= 50.5") == ["order-1"]
        assert await query_ids(c, "OrderTotal = 150") == ["order-2"]
        assert await query_ids(c, "Priority BETWEEN 2 AND 9") == ["order-2", "order-3"]
        assert await query_ids(c, "(Priority > 1) AND (OrderTotal > 100 AND Priority < 9)") == [
            "order-2"
        ]
        assert await query_ids(c, 'DueAt = "2026-06-01T10:00:00Z"') == ["order-2"]
        assert await query_ids(c, 'DueAt < "2026-03-01T00:00:00+00:00"') == ["order-1"]
        # a date alone is midnight, a time without offset UTC (stored and asked alike)
        assert await query_ids(c, 'DueAt = "2027-01-01T00:00:00Z"') == ["order-3"]
        assert await query_ids(c, 'DueAt >= "2027-01-01"') == ["order-3"]
        assert await query_ids(c, 'DueAt = "2026-09-01T10:30:00+02:00"') == ["refund-1"]
        assert await query_ids(c, 'DueAt BETWEEN "2026-09-01T08:30" AND "2026-09-01"') == []
        # WorkflowId STARTS_WITH beside workflow_id_prefix: both hold
        assert await query_ids(c, 'WorkflowId STARTS_WITH "order-1"', workflow_id_prefix="ord") == [
            "order-1"
        ]
        assert await query_ids(c, 'WorkflowId STARTS_WITH "ord"', workflow_id_prefix="order-2") == [
            "order-2"
        ]
        assert await query_ids(c, 'WorkflowId STARTS_WITH "ref"', workflow_id_prefix="ord") == []
        # together with the parameters (AND)
        assert await query_ids(c, "OrderTotal > 100", task_queue="q-a") == ["order-3"]
        assert await query_ids(c, "OrderTotal > 100", status="failed") == ["order-2"]
        # no language signs: the reference's substring search on id and business key
        assert await query_ids(c, "order") == ["order-1", "order-2", "order-3"]
        assert await query_ids(c, "bk-refund") == ["refund-1"]
        assert await query_ids(c, "   ") == sorted(RUNS)


@pytest.mark.parametrize(
    ("query", "message", "column"),
    [
        ('WorkflowType = "x" AND', "ends too early", 23),
        ('WorkflowType = "x', "Unterminated string", 16),
        ("WorkflowType == 'x'", "Unexpected '='", 15),
        ('WorkflowType = "x" OR Status = "running"', "Unexpected 'OR'", 20),
        ("Nope = 'x'", "Unknown search attribute 'Nope'", 1),
        ("Status = 'x' AND Nope > 3", "Status is one of", 1),
        ("CustomerId = 3", "not a string", 1),
        ("OrderTotal > 'big'", "not a number", 1),
        ("Priority = 1.5", "not a number", 1),
        ("Vip = 'yes'", "not true or false", 1),
        ("DueAt > 'tomorrow'", "not an ISO-8601 date-time", 1),
        ("StartTime > 5", "not an ISO-8601 date-time", 1),
        ("CustomerId > 'a'", "does not take >", 1),
        ("CustomerId != 'a'", "does not take !=", 1),
        ("Tags IN ('a', 'b')", "does not take IN", 1),
        ("TaskQueue STARTS_WITH 'q'", "does not take STARTS_WITH", 1),
        ("WorkflowId STARTS_WITH 3", "STARTS_WITH takes a string", 1),
        ("OrderTotal > 1 AND Priority > 1 AND DueAt > '2026-01-01'", "at most 2", 37),
        ("ORDER BY CustomerId", "Only ORDER BY StartTime DESC", 10),
        ("ORDER BY StartTime ASC", "Only ORDER BY StartTime DESC", 10),
        ("ORDER BY Nope", "Unknown search attribute 'Nope'", 10),
        ("x'; DROP TABLE workflow_runs; --", "Unterminated string", 2),
        ('"x\'; DROP TABLE workflow_runs; --"', "Unexpected", 1),
        ("CustomerId = 'a'; DROP TABLE workflow_runs", "Unexpected character ';'", 17),
        ("CustomerId = 'a' -- comment", "Unexpected character '-'", 18),
        ("1 = 1", "Unexpected", 1),
    ],
)
async def test_refusals_point_at_the_problem_and_change_nothing(
    server: RunningServer, db_dsn: str, query: str, message: str, column: int
) -> None:
    async with server.client() as c:
        await seed(c)

        async def snapshot(conn: Conn) -> list[Any]:
            return [
                await conn.fetchval("SELECT count(*) FROM workflow_runs"),
                await conn.fetchval("SELECT count(*) FROM workflow_search_attributes"),
                await conn.fetchval("SELECT count(*) FROM search_attribute_definitions"),
            ]

        before = await connect_once(db_dsn, snapshot)
        body = await refused(c, query=query)
        assert message in body["message"], body
        assert body["column"] == column and body["line"] == 1, body
        assert body["position"] == column - 1
        assert await connect_once(db_dsn, snapshot) == before
        assert await list_ids(c) == sorted(RUNS)


async def test_a_long_query_is_refused(server: RunningServer) -> None:
    async with server.client() as c:
        body = await refused(c, query="A = 'x' AND " * 500 + "A = 'x'")
        assert "longer than" in body["message"]
        body = await refused(c, query=" AND ".join(["WorkflowType = 'x'"] * 40))
        assert "more than 32 predicates" in body["message"]


async def test_unknown_attributes_are_per_namespace(server: RunningServer) -> None:
    async with server.client() as c:
        await seed(c)
        r = await c.post("/api/namespaces", json={"name": "other"}, headers=CP)
        assert r.status_code == 201, r.text
        r = await c.get(
            "/api/workflows",
            params={"query": "CustomerId = 'c-1'"},
            headers={**CP, "X-Namespace": "other"},
        )
        assert r.status_code == 422 and r.json()["reason"] == "invalid_visibility_query", r.text
        r = await c.get(
            "/api/workflows",
            params={"query": "WorkflowId STARTS_WITH 'order'"},
            headers={**CP, "X-Namespace": "other"},
        )
        assert r.status_code == 200 and r.json()["workflows"] == [], r.text


async def test_pages_follow_the_filters(server: RunningServer) -> None:
    async with server.client() as c:
        await seed(c)
        for i in range(7):
            r = await c.post(
                "/api/workflows",
                json={
                    "workflow_id": f"page-{i}",
                    "workflow_type": "orders",
                    "search_attributes": {"OrderTotal": 200 + i},
                },
                headers=CP,
            )
            assert r.status_code == 201, r.text
        full = (
            await c.get(
                "/api/workflows",
                params={"query": "OrderTotal >= 150", "page_size": "200"},
                headers=CP,
            )
        ).json()["workflows"]
        expected = [w["workflow_id"] for w in full]
        assert len(expected) == 9
        seen: list[str] = []
        params = {"query": "OrderTotal >= 150", "page_size": "2"}
        while True:
            page = (await c.get("/api/workflows", params=params, headers=CP)).json()
            seen += [w["workflow_id"] for w in page["workflows"]]
            if page["next_page_token"] is None:
                break
            assert page["control_plane"]["next_page_token"] == page["next_page_token"]
            params = {**params, "next_page_token": page["next_page_token"]}
        assert seen == expected  # newest first, no run twice, none left out
        # an unreadable token is the first page, as the reference does
        page = (
            await c.get(
                "/api/workflows",
                params={"query": "OrderTotal >= 150", "page_size": "2", "next_page_token": "??"},
                headers=CP,
            )
        ).json()
        assert [w["workflow_id"] for w in page["workflows"]] == expected[:2]


async def test_typed_rows_follow_every_write(server: RunningServer, db_dsn: str) -> None:
    """An upsert rewrites the run's search_attributes: the typed rows follow (trigger)."""
    async with server.client() as c:
        started = await seed(c)

        async def upsert(conn: Conn) -> None:
            await conn.execute(
                "UPDATE workflow_runs SET search_attributes = search_attributes || $2::jsonb"
                " WHERE id = $1",
                started["order-1"],
                {"OrderTotal": 5000, "DueAt": "not a date", "Priority": "1"},
            )

        await connect_once(db_dsn, upsert)
        assert await query_ids(c, "OrderTotal > 1000") == ["order-1"]
        assert await query_ids(c, "DueAt < '2030-01-01'") == ["order-2", "order-3", "refund-1"]
        assert await query_ids(c, "Priority >= 1") == ["order-2", "order-3"]

        async def rows(conn: Conn) -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM workflow_search_attributes WHERE run_id = $1",
                    started["order-1"],
                )
            )

        assert await connect_once(db_dsn, rows) == 1  # OrderTotal only

        async def out_of_range(conn: Conn) -> None:  # a number no double holds: skipped
            await conn.execute(
                "UPDATE workflow_runs SET search_attributes = search_attributes"
                " || jsonb_build_object('Priority', 1e400::numeric, 'Tiny', 1e-400::numeric)"
                " WHERE id = $1",
                started["order-1"],
            )

        await connect_once(db_dsn, out_of_range)
        assert await connect_once(db_dsn, rows) == 1

        async def not_an_object(conn: Conn) -> None:  # never fails the write
            await conn.execute(
                "UPDATE workflow_runs SET search_attributes = '[1]'::jsonb WHERE id = $1",
                started["order-1"],
            )

        await connect_once(db_dsn, not_an_object)
        assert await connect_once(db_dsn, rows) == 0
