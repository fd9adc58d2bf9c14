"""SDK 2.12.0 durable workflow streams on dwtrio (the client in a subprocess), asserted on
what the SDK parsed: append, iterate with long-polls, dedupe, list, describe, close."""

from __future__ import annotations

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import run_driver, start_sdk_server

DRIVER = "workflow_streams_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


async def test_streams_round_trip_through_the_sdk(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "streams")
    wf, run = out["workflow_id"], out["run_id"]
    assert out["missing"]["status"] == 404 and out["missing"]["reason"] == "stream_not_found"
    first = out["first"]
    assert first["offsets"] == [0] and first["accepted"] == 1 and first["deduped"] == 0
    stream = first["stream"]
    assert stream["workflow_id"] == wf and stream["run_id"] == run
    assert stream["stream_name"] == "tokens" and stream["status"] == "open"
    assert stream["last_offset"] == 0 and stream["total_items"] == 1
    assert stream["terminal"] is False and stream["opened_at"]
    assert out["second"] == {"offsets": [1, 2, 3], "accepted": 3}
    assert out["retry"] == {"offsets": [2, 4], "accepted": 1, "deduped": 1}

    # The subscriber got every item, in order, while its long-polls were parked.
    assert out["before_close"] == 5
    received = out["received"]
    assert [i["offset"] for i in received] == [0, 1, 2, 3, 4]
    assert [i["payload"] for i in received] == [
        "hello",
        {"n": 1, "tags": ["a", "b"]},
        [1, 2.5, None],
        None,
        "last",
    ]
    assert received[0]["item_type"] == "token" and received[2]["idempotency_key"] == "k1"
    assert received[3]["payload_reference"] == "s3://bucket/obj"
    assert all(i["payload_codec"] == "avro" for i in received)
    assert all(i["origin"] == "workflow_command" and i["emitted_at"] for i in received)

    listed = out["listed"]
    assert [s["stream_name"] for s in listed] == ["tokens"]
    assert listed[0]["workflow_id"] == wf and listed[0]["run_id"] == run
    described = out["described"]
    assert described["last_offset"] == 4 and described["total_items"] == 5
    assert described["pending_items"] == 0  # the subscriber caught up
    closed = out["closed"]
    assert closed["status"] == "closed" and closed["terminal"] is True
    assert closed["closed_at"] and closed["retention_seconds"] == 120
    assert out["after_close"]["status"] == 409
    assert out["after_close"]["reason"] == "stream_closed"
    assert out["final_page"] == {"items": 0, "next_offset": 5, "terminal": True}

    errored = out["errored"]
    assert errored["status"] == "errored" and errored["error_reason"] == "boom"
    assert errored["retention_seconds"] == 3600 and errored["terminal"] is True
    assert out["errored_page"] == {"items": 0, "terminal": True}
    full = out["full"]
    assert full["status"] == 429 and full["reason"] == "stream_full"
    assert full["body"]["pending_items"] == 2 and full["body"]["max_pending_items"] == 2
    assert out["bad_name"]["status"] == 400 and out["bad_name"]["reason"] == "invalid_stream_name"
    assert out["no_run"]["type"] == "WorkflowNotFound"


async def test_an_append_reaches_a_parked_subscriber_through_its_wake(
    sdk_server: RunningServer,
) -> None:
    out = await run_driver(sdk_server, DRIVER, "latency")
    assert out["samples"] == 40
    wake = out["append_to_subscriber"]
    # A wake, not the recheck (two poll intervals) nor the 10 s deadline.
    assert wake["p90_ms"] < 200, out
    print(out)  # the figure quoted in docs/workflow-streams.md
