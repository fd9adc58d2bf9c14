"""SDK 2.12.0's search-attribute calls against dwtrio (driver in a subprocess, see
``search_attributes_driver.py``): list, create and delete, parsed into the SDK's
objects, the SDK exceptions each refusal raises, registered types enforced at
start, and a worker's mistyped upsert refused, failed by the SDK and never stored.
"""

from __future__ import annotations

from typing import Any

import pytest

from dwtrio.store.pool import Conn, connect_once

from conftest import StartServer
from sdk_helpers import history_types, run_driver, start_sdk_server

DRIVER = "search_attributes_driver.py"
SYSTEM = {
    "WorkflowType": "keyword",
    "WorkflowId": "keyword",
    "RunId": "keyword",
    "Status": "keyword",
    "StartTime": "datetime",
    "CloseTime": "datetime",
    "TaskQueue": "keyword",
    "BuildId": "keyword",
}

pytestmark = pytest.mark.sdk


def listing(custom: dict[str, str]) -> dict[str, Any]:
    """A parsed ``SearchAttributeList`` as the driver reports it."""
    return {
        "ok": {
            "class": "SearchAttributeList",
            "fields": {"system_attributes": SYSTEM, "custom_attributes": custom},
        }
    }


def raised(out: dict[str, Any], cls: str, status: int | None = None) -> dict[str, Any]:
    assert "raised" in out, out
    refusal: dict[str, Any] = out["raised"]
    assert refusal["class"] == cls, refusal
    if status is not None:
        assert refusal["status"] == status, refusal
    return refusal


async def test_list_create_delete_and_the_refusals(start_server: StartServer) -> None:
    server = await start_sdk_server(start_server)
    out = await run_driver(server, DRIVER, "registry")
    assert out["initial"] == listing({})
    assert [c["ok"] for c in out["created"]] == [
        {"class": "dict", "fields": {"name": n, "type": t, "outcome": "created"}}
        for n, t in [("Region", "keyword"), ("Count", "int"), ("Tags", "keyword_list")]
    ]
    assert out["listed"] == listing({"Count": "int", "Region": "keyword", "Tags": "keyword_list"})
    assert list(out["listed"]["ok"]["fields"]["custom_attributes"]) == ["Count", "Region", "Tags"]

    refused = out["refused"]
    assert raised(refused["reserved"], "ServerError", 409)["reason"] == "name_reserved"
    exists = raised(refused["exists"], "ServerError", 409)
    assert exists["reason"] == "attribute_already_exists"
    assert exists["body"]["name"] == "Region" and exists["body"]["type"] == "keyword"
    assert "name" in raised(refused["bad_name"], "InvalidArgument")["errors"]
    assert "type" in raised(refused["bad_type"], "InvalidArgument")["errors"]
    assert raised(refused["delete_system"], "ServerError", 409)["reason"] == "system_attribute"
    assert raised(refused["delete_unknown"], "ServerError", 404)["reason"] == "attribute_not_found"

    assert out["deleted"] == {
        "ok": {"class": "dict", "fields": {"name": "Tags", "outcome": "deleted"}}
    }
    assert out["after_delete"] == listing({"Count": "int", "Region": "keyword"})

    bad = raised(out["bad_start"], "InvalidArgument")
    assert list(bad["errors"]) == ["search_attributes.Count"]
    assert "registered as int" in bad["errors"]["search_attributes.Count"][0]
    assert out["good_start"] == {"Count": 3, "Region": "eu", "Free": {"any": "shape"}}


async def test_the_limit_is_an_invalid_argument(start_server: StartServer) -> None:
    server = await start_sdk_server(start_server, max_search_attributes=2)
    out = await run_driver(server, DRIVER, "limit")
    assert [c["ok"]["fields"]["outcome"] for c in out["created"]] == ["created", "created"]
    third = raised(out["third"], "InvalidArgument")
    assert third["errors"] is None and "limit is 2" in third["message"]


async def test_a_mistyped_upsert_is_failed_by_the_worker_and_never_stored(
    start_server: StartServer, db_dsn: str
) -> None:
    server = await start_sdk_server(start_server)
    out = await run_driver(server, DRIVER, "bad-upsert")
    # The worker saw the server's reason and failed the task; the run recorded nothing.
    assert any(
        "Search attribute 'Count' is registered as int" in m for m in out["worker_warnings"]
    ), out["worker_warnings"]
    assert out["refused"]["search_attributes"] == {}
    assert out["refused"]["status"] in ("waiting", "running")  # open, the task retried
    assert out["refused_history"] == ["StartAccepted", "WorkflowStarted"]

    async def failures(conn: Conn) -> list[Any]:
        rows = await conn.fetch(
            "SELECT failure, failure_count FROM workflow_tasks WHERE run_id = $1", out["run_id"]
        )
        return [dict(r) for r in rows]

    [task] = await connect_once(db_dsn, failures)
    assert task["failure_count"] >= 1
    assert "registered as int" in task["failure"]["message"], task
    # With the definition gone, the retried task records the upsert and the run completes.
    assert out["result"] == "three"
    assert out["healed"] == {"Count": "three", "Stage": "counted"}
    types = await history_types(server, out["workflow_id"], out["run_id"])
    assert types[-2:] == ["SearchAttributesUpserted", "WorkflowCompleted"]
