"""Durable workflow streams over real HTTP: shapes, offsets, dedupe, caps, close, refusals,
the long-poll and concurrent appends (docs/workflow-streams.md, control-plane.md §14)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from test_workflow_commands import TOKEN, Client

from dwtrio.store.pool import Conn, connect_once

from conftest import ADMIN_TOKEN, CP, WP, RunningServer, StartServer

#: ["hi"] as the SDK encodes it.
BLOB = "wwHioz3/VYAiNwwCCgRoaQA="
ENVELOPE = {"codec": "avro", "blob": BLOB}
STREAM_KEYS = [
    "stream_name",
    "status",
    "last_offset",
    "total_items",
    "pending_items",
    "opened_at",
    "last_appended_at",
    "closed_at",
    "error_reason",
    "retention_seconds",
]
ITEM_KEYS = [
    "offset",
    "idempotency_key",
    "origin",
    "origin_reference",
    "item_type",
    "content_type",
    "payload",
    "payload_reference",
    "payload_codec",
    "emitted_at",
]


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    return await start_server(admin_token=None, auth_token=TOKEN)


@pytest.fixture
async def c(server: RunningServer) -> AsyncIterator[Client]:
    async with server.client(TOKEN, **CP) as cc, server.client(TOKEN, **WP) as wc:
        yield Client(cc, wc)


def base(wf: str, run_id: str) -> str:
    return f"/api/workflows/{wf}/runs/{run_id}/streams"


async def append(
    c: Client, wf: str, run_id: str, name: str, items: list[dict[str, Any]], **extra: Any
) -> httpx.Response:
    return await c.cc.post(f"{base(wf, run_id)}/{name}/items", json={"items": items, **extra})


async def read(c: Client, wf: str, run_id: str, name: str, **params: Any) -> httpx.Response:
    return await c.cc.get(f"{base(wf, run_id)}/{name}/items", params=params)


def refused(r: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["reason"] == reason and isinstance(body["message"], str), body
    assert "control_plane" not in body
    return body


# --- the happy path ----------------------------------------------------------------------
async def test_append_read_describe_list_and_close(c: Client) -> None:
    run_id = await c.start("st-basic")
    r = await append(
        c,
        "st-basic",
        run_id,
        "tokens",
        [
            {"payload": ENVELOPE, "payload_codec": "avro", "item_type": "token"},
            {"payload": ["plain", 1], "content_type": "application/json", "origin": "api"},
            {"payload_reference": "s3://bucket/key", "idempotency_key": "k3"},
        ],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == [
        "workflow_id",
        "workflow_run_id",
        "stream",
        "accepted_offsets",
        "accepted",
        "deduped",
    ]
    assert body["accepted_offsets"] == [0, 1, 2] and body["accepted"] == 3
    assert body["deduped"] == 0
    stream = body["stream"]
    assert list(stream) == STREAM_KEYS
    assert stream["status"] == "open" and stream["last_offset"] == 2
    assert stream["total_items"] == 3 and stream["pending_items"] == 3
    assert stream["opened_at"].endswith("Z") and stream["closed_at"] is None

    page = (await read(c, "st-basic", run_id, "tokens", max_items=2)).json()
    assert [i["offset"] for i in page["items"]] == [0, 1] and page["next_offset"] == 2
    assert page["terminal"] is False and list(page["items"][0]) == ITEM_KEYS
    first, second = page["items"]
    assert first["payload"] == ENVELOPE and first["payload_codec"] == "avro"
    assert first["origin"] == "workflow_command" and first["item_type"] == "token"
    # Plain JSON is encoded by the server, like every other payload.
    assert second["payload"]["codec"] == "avro" and second["origin"] == "api"
    assert page["stream"]["pending_items"] == 3  # not caught up yet
    rest = (await read(c, "st-basic", run_id, "tokens", **{"from": 2})).json()
    assert [i["offset"] for i in rest["items"]] == [2]
    assert rest["items"][0]["payload"] is None
    assert rest["items"][0]["payload_reference"] == "s3://bucket/key"
    assert rest["stream"]["pending_items"] == 0  # the reader reached the head
    empty = (await read(c, "st-basic", run_id, "tokens", **{"from": 3})).json()
    assert empty["items"] == [] and empty["next_offset"] == 3 and empty["terminal"] is False

    described = (await c.cc.get(f"{base('st-basic', run_id)}/tokens")).json()
    assert list(described) == ["workflow_id", "workflow_run_id", "stream"]
    assert described["stream"]["last_offset"] == 2 and described["workflow_run_id"] == run_id

    await append(c, "st-basic", run_id, "audit", [{"payload": ENVELOPE}])
    listed = (await c.cc.get(base("st-basic", run_id))).json()
    assert listed["count"] == 2 and listed["workflow_id"] == "st-basic"
    assert [s["stream_name"] for s in listed["streams"]] == ["audit", "tokens"]

    closed = (await c.cc.post(f"{base('st-basic', run_id)}/tokens/close", json={})).json()
    assert closed["stream"]["status"] == "closed" and closed["stream"]["closed_at"]
    assert (
        closed["stream"]["retention_seconds"] == 3600 and closed["stream"]["error_reason"] is None
    )
    done = (await read(c, "st-basic", run_id, "tokens", **{"from": 3})).json()
    assert done["items"] == [] and done["terminal"] is True
    # Not terminal while items remain behind the reader.
    assert (await read(c, "st-basic", run_id, "tokens", **{"from": 1})).json()["terminal"] is True
    assert (await read(c, "st-basic", run_id, "tokens", max_items=1)).json()["terminal"] is False
    refused(await append(c, "st-basic", run_id, "tokens", [{}]), 409, "stream_closed")
    # Closing again changes nothing.
    again = (await c.cc.post(f"{base('st-basic', run_id)}/tokens/close", json={})).json()
    assert again["stream"] == closed["stream"]


async def test_idempotency_keys_dedupe_within_and_across_appends(c: Client) -> None:
    run_id = await c.start("st-idem")
    one = (
        await append(
            c,
            "st-idem",
            run_id,
            "s",
            [
                {"payload": ENVELOPE, "idempotency_key": "a"},
                {"payload": ENVELOPE, "idempotency_key": "b"},
                {"payload": ENVELOPE, "idempotency_key": "a"},
                {"payload": ENVELOPE, "idempotency_key": ""},  # "" is no key
            ],
        )
    ).json()
    assert one["accepted_offsets"] == [0, 1, 0, 2] and one["accepted"] == 3
    assert one["deduped"] == 1
    two = (
        await append(
            c,
            "st-idem",
            run_id,
            "s",
            [{"payload": ENVELOPE, "idempotency_key": "b"}, {"payload": ENVELOPE}],
        )
    ).json()
    assert two["accepted_offsets"] == [1, 3] and two["accepted"] == 1 and two["deduped"] == 1
    assert two["stream"]["total_items"] == 4
    # A retry of the whole append writes nothing.
    three = (
        await append(c, "st-idem", run_id, "s", [{"payload": ENVELOPE, "idempotency_key": "a"}])
    ).json()
    assert three["accepted_offsets"] == [0] and three["accepted"] == 0
    assert three["stream"]["last_offset"] == 3


async def test_pending_cap_refuses_the_whole_append_until_a_reader_catches_up(c: Client) -> None:
    run_id = await c.start("st-full")
    ok = await append(c, "st-full", run_id, "s", [{"payload": ENVELOPE}] * 2, max_pending_items=3)
    assert ok.json()["stream"]["pending_items"] == 2
    body = refused(
        await append(c, "st-full", run_id, "s", [{"payload": ENVELOPE}] * 2, max_pending_items=3),
        429,
        "stream_full",
    )
    # (counting the items of this append before the one refused)
    assert body["pending_items"] == 3 and body["max_pending_items"] == 3
    stream = (await c.cc.get(f"{base('st-full', run_id)}/s")).json()["stream"]
    assert stream["last_offset"] == 1 and stream["total_items"] == 2  # nothing written
    # Deduplicated items are not new: a full stream still answers a retry.
    await read(c, "st-full", run_id, "s")
    again = await append(
        c, "st-full", run_id, "s", [{"payload": ENVELOPE}] * 2, max_pending_items=3
    )
    assert again.json()["accepted_offsets"] == [2, 3]


async def test_errored_close_records_reason_and_retention(c: Client) -> None:
    run_id = await c.start("st-err")
    await append(c, "st-err", run_id, "s", [{"payload": ENVELOPE}])
    r = await c.cc.post(
        f"{base('st-err', run_id)}/s/close",
        json={"error_reason": "model crashed", "retention_seconds": 60},
    )
    stream = r.json()["stream"]
    assert stream["status"] == "errored" and stream["error_reason"] == "model crashed"
    assert stream["retention_seconds"] == 60
    body = refused(await append(c, "st-err", run_id, "s", [{}]), 409, "stream_errored")
    assert body["error_reason"] == "model crashed"
    page = (await read(c, "st-err", run_id, "s", **{"from": 1})).json()
    assert page["terminal"] is True


# --- refusals ------------------------------------------------------------------------------
async def test_unknown_runs_streams_and_bad_names(c: Client) -> None:
    run_id = await c.start("st-404")
    for path in (
        base("st-404", "nope"),
        f"{base('st-404', 'nope')}/s",
        f"{base('st-404', 'nope')}/s/items",
        f"{base('nope', run_id)}/s",
        f"{base('bad%20id', run_id)}/s/items",
    ):
        refused(await c.cc.get(path), 404, "instance_not_found")
    refused(await append(c, "st-404", "nope", "s", [{}]), 404, "instance_not_found")
    refused(await append(c, "other", run_id, "s", [{}]), 404, "instance_not_found")
    refused(
        await c.cc.post(f"{base('st-404', 'nope')}/s/close", json={}), 404, "instance_not_found"
    )
    refused(await c.cc.get(f"{base('st-404', run_id)}/s"), 404, "stream_not_found")
    refused(await read(c, "st-404", run_id, "s", wait_seconds=1), 404, "stream_not_found")
    refused(await c.cc.post(f"{base('st-404', run_id)}/s/close", json={}), 404, "stream_not_found")
    for bad in ("-lead", "a" * 192, "sp%20ace", "semi%3Bcolon", "%00"):
        refused(await c.cc.get(f"{base('st-404', run_id)}/{bad}"), 400, "invalid_stream_name")
        refused(await append(c, "st-404", run_id, bad, [{}]), 400, "invalid_stream_name")
        refused(await read(c, "st-404", run_id, bad), 400, "invalid_stream_name")
    # A bad name on an unknown run is the run's 404.
    refused(await append(c, "st-404", "nope", "-lead", [{}]), 404, "instance_not_found")
    ok = await append(c, "st-404", run_id, "a" * 191 + "", [{}])
    assert ok.status_code == 200, ok.text
    assert (await append(c, "st-404", run_id, "Ab0._:-z", [{}])).status_code == 200
    # A name with "/" is no stream route at all.
    assert (await c.cc.get(f"{base('st-404', run_id)}/a%2Fb/items")).status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"max_items": 0}, "max_items"),
        ({"max_items": 501}, "max_items"),
        ({"max_items": "x"}, "max_items"),
        ({"wait_seconds": 61}, "wait_seconds"),
        ({"wait_seconds": -1}, "wait_seconds"),
        ({"from": -1}, "from"),
        ({"from": "1.5"}, "from"),
        ({"from": "9" * 30}, "from"),
    ],
)
async def test_bad_read_parameters_are_422(c: Client, params: dict[str, Any], field: str) -> None:
    run_id = await c.start("st-422r")
    await append(c, "st-422r", run_id, "s", [{}])
    body = refused(await read(c, "st-422r", run_id, "s", **params), 422, "validation_failed")
    assert list(body["errors"]) == [field]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "items"),
        ({"items": []}, "items"),
        ({"items": "x"}, "items"),
        ({"items": [{}] * 501}, "items"),
        ({"items": [7]}, "items.0"),
        ({"items": [{"payload_codec": "json"}]}, "items.0.payload_codec"),
        ({"items": [{}, {"payload": {"codec": "avro", "blob": "!!"}}]}, "items.1.payload.blob"),
        ({"items": [{"payload": {"codec": "json", "blob": "x"}}]}, "items.0.payload.codec"),
        ({"items": [{"idempotency_key": "k" * 192}]}, "items.0.idempotency_key"),
        ({"items": [{"item_type": 5}]}, "items.0.item_type"),
        ({"items": [{}], "max_pending_items": 0}, "max_pending_items"),
        ({"items": [{}], "max_pending_items": "9"}, "max_pending_items"),
    ],
)
async def test_bad_append_bodies_are_422(c: Client, body: dict[str, Any], field: str) -> None:
    run_id = await c.start("st-422a")
    r = await c.cc.post(f"{base('st-422a', run_id)}/s/items", json=body)
    errors = refused(r, 422, "validation_failed")["errors"]
    assert field in errors, errors
    # Nothing was opened.
    refused(await c.cc.get(f"{base('st-422a', run_id)}/s"), 404, "stream_not_found")


async def test_bad_close_bodies_are_422(c: Client) -> None:
    run_id = await c.start("st-422c")
    await append(c, "st-422c", run_id, "s", [{}])
    path = f"{base('st-422c', run_id)}/s/close"
    for body, field in (
        ({"error_reason": "r" * 192}, "error_reason"),
        ({"retention_seconds": 0}, "retention_seconds"),
        ({"retention_seconds": 2**31}, "retention_seconds"),
        ({"retention_seconds": "5"}, "retention_seconds"),
    ):
        errors = refused(await c.cc.post(path, json=body), 422, "validation_failed")["errors"]
        assert field in errors
    assert (await c.cc.get(f"{base('st-422c', run_id)}/s")).json()["stream"]["status"] == "open"
    # An empty reason is no reason: a plain close.
    r = await c.cc.post(path, json={"error_reason": ""})
    assert r.json()["stream"]["status"] == "closed"


async def test_roles(start_server: StartServer) -> None:
    """Operator and admin, like the other workflow routes; a worker token is refused."""
    srv = await start_server(worker_token="w", operator_token="o")
    for token, allowed in (("w", False), ("o", True), (ADMIN_TOKEN, True)):
        async with srv.client(ADMIN_TOKEN, **CP) as admin:
            r = await admin.post(
                "/api/workflows", json={"workflow_type": "t", "workflow_id": f"st-rl-{token[:4]}"}
            )
            path = base(f"st-rl-{token[:4]}", r.json()["run_id"])
        async with srv.client(token, **CP) as client:
            for method, url, body in (
                ("POST", f"{path}/s/items", {"items": [{}]}),
                ("GET", path, None),
                ("GET", f"{path}/s", None),
                ("GET", f"{path}/s/items", None),
                ("POST", f"{path}/s/close", {}),
            ):
                r = await client.request(method, url, json=body)
                if allowed:
                    assert r.status_code == 200, (token, url, r.text)
                else:
                    refused(r, 403, "forbidden")
    async with srv.client(None, **CP) as anonymous:
        refused(await anonymous.get(path), 401, "unauthorized")


# --- long-poll and concurrency -------------------------------------------------------------
async def test_a_parked_reader_wakes_on_append_and_close(c: Client) -> None:
    run_id = await c.start("st-wait")
    await append(c, "st-wait", run_id, "s", [{"payload": ENVELOPE}])
    answers: list[tuple[float, dict[str, Any]]] = []

    async def reader(offset: int) -> None:
        r = await read(c, "st-wait", run_id, "s", wait_seconds=20, **{"from": offset})
        answers.append((time.monotonic(), r.json()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, 1)
        await trio.sleep(0.5)  # parked
        assert answers == []
        sent = time.monotonic()
        await append(c, "st-wait", run_id, "s", [{"payload": ENVELOPE, "item_type": "late"}])
    at, page = answers[0]
    assert at - sent < 1.0, at - sent  # the wake, not the timeout nor a recheck
    assert [i["offset"] for i in page["items"]] == [1] and page["items"][0]["item_type"] == "late"

    answers.clear()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, 2)
        await trio.sleep(0.5)
        sent = time.monotonic()
        await c.cc.post(f"{base('st-wait', run_id)}/s/close", json={})
    at, page = answers[0]
    assert at - sent < 1.0 and page["terminal"] is True and page["items"] == []


async def test_a_reader_with_nothing_new_answers_empty_at_its_deadline(c: Client) -> None:
    run_id = await c.start("st-idle")
    await append(c, "st-idle", run_id, "s", [{}])
    started = time.monotonic()
    page = (await read(c, "st-idle", run_id, "s", wait_seconds=1, **{"from": 1})).json()
    took = time.monotonic() - started
    assert page["items"] == [] and page["next_offset"] == 1 and page["terminal"] is False
    assert 0.9 < took < 3.0, took
    started = time.monotonic()
    (await read(c, "st-idle", run_id, "s", **{"from": 1})).json()  # wait_seconds 0: at once
    assert time.monotonic() - started < 0.5


async def test_concurrent_appends_get_distinct_consecutive_offsets(c: Client) -> None:
    run_id = await c.start("st-race")
    results: list[list[int]] = []

    async def writer(n: int) -> None:
        items = [{"payload": ENVELOPE, "origin_reference": f"w{n}-{i}"} for i in range(5)]
        r = await append(c, "st-race", run_id, "s", items)
        assert r.status_code == 200, r.text
        results.append(r.json()["accepted_offsets"])

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(writer, n)
    assert sorted(o for offsets in results for o in offsets) == list(range(100))
    for offsets in results:  # one append's items are contiguous and in order
        assert offsets == list(range(offsets[0], offsets[0] + 5))
    page = (await read(c, "st-race", run_id, "s", max_items=500)).json()
    assert [i["offset"] for i in page["items"]] == list(range(100))
    assert page["stream"]["total_items"] == 100 and page["stream"]["pending_items"] == 0
    by_offset = {i["offset"]: i["origin_reference"] for i in page["items"]}
    for offsets in results:
        writer_id = by_offset[offsets[0]].split("-")[0]
        assert [by_offset[o] for o in offsets] == [f"{writer_id}-{i}" for i in range(5)]


async def test_streams_go_with_their_namespace(c: Client, db_dsn: str) -> None:
    r = await c.cc.post("/api/namespaces", json={"name": "st-gone"})
    assert r.status_code == 201, r.text
    ns = {"X-Namespace": "st-gone"}
    r = await c.cc.post(
        "/api/workflows", json={"workflow_type": "t", "workflow_id": "st-ns"}, headers=ns
    )
    run_id = r.json()["run_id"]
    path = f"{base('st-ns', run_id)}/s"
    r = await c.cc.post(f"{path}/items", json={"items": [{}, {}]}, headers=ns)
    assert r.status_code == 200, r.text
    # Another namespace does not see the run.
    refused(await c.cc.get(path), 404, "instance_not_found")
    r = await c.cc.post("/api/workflows/st-ns/terminate", json={}, headers=ns)
    assert r.status_code == 200, r.text
    assert (await c.cc.delete("/api/namespaces/st-gone")).status_code == 200

    async def rows(conn: Conn) -> list[int]:
        return [
            await conn.fetchval(f"SELECT count(*) FROM {table} WHERE run_id = $1", run_id)
            for table in ("workflow_streams", "workflow_stream_items")
        ]

    assert await connect_once(db_dsn, rows) == [0, 0]


async def test_external_storage_payloads_are_refused(c: Client) -> None:
    run_id = await c.start("st-ext")
    item = {"payload": {"codec": "avro", "external_storage": {"uri": "s3://b/k"}}}
    body = refused(
        await append(c, "st-ext", run_id, "s", [item]), 422, "external_payload_unsupported"
    )
    assert "items.0.payload" in body["errors"]
