"""SDK 2.12.0 against dwtrio: side effects and version markers replay, search attributes,
continue-as-new chains and child workflows (worker and client in a subprocess)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from conftest import CP, RunningServer, StartServer
from sdk_helpers import TOKEN, history, run_driver, start_sdk_server

DRIVER = "lineage_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


async def get(server: RunningServer, path: str) -> Any:
    async with server.client(TOKEN) as c:
        r = await c.get(path, headers=CP)
    assert r.status_code == 200, r.text
    return r.json()


async def test_side_effect_and_version_markers_are_replayed(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "markers")
    result = out["result"]
    # The side effect ran once; later tasks replayed the recorded value into the workflow.
    assert out["effect_calls"] == [result["token"]]
    assert result["echoed"] == result["token"]
    assert result["version"] == 2 and result["patched"] is True
    types = [e["event_type"] for e in await history(sdk_server, out["workflow_id"], out["run_id"])]
    assert types[2:5] == ["SideEffectRecorded", "VersionMarkerRecorded", "VersionMarkerRecorded"]
    assert types.count("ActivityScheduled") == 2 and types[-1] == "WorkflowCompleted"


async def test_search_attributes_and_memo_are_visible_on_describe(
    sdk_server: RunningServer,
) -> None:
    out = await run_driver(sdk_server, DRIVER, "search-attributes")
    assert out["result"] == "red"
    assert out["search_attributes"] == {"Color": "red", "Done": True}
    assert out["memo"] == {"owner": "ana"}
    described = await get(sdk_server, f"/api/workflows/{out['workflow_id']}")
    assert described["search_attributes"] == {"Color": "red", "Done": True}
    assert described["memo"] == {"owner": "ana"}
    events = await history(sdk_server, out["workflow_id"], out["run_id"])
    assert [e["event_type"] for e in events].count("MemoUpserted") == 2


async def test_a_three_run_continue_as_new_chain(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "continue-as-new")
    assert out["result"] == [3, 2, 1]
    runs = (await get(sdk_server, f"/api/workflows/{out['workflow_id']}/runs"))["runs"]
    assert len(runs) == 3
    assert runs[0]["run_id"] == out["first_run_id"] and runs[2]["run_id"] == out["run_id"]
    assert [r["closed_reason"] for r in runs] == ["continued", "continued", "completed"]
    for previous, current in itertools.pairwise(runs):
        started = (await history(sdk_server, out["workflow_id"], current["run_id"]))[0]
        assert started["payload"]["continued_from_run_id"] == previous["run_id"]


async def test_child_results_and_failures_reach_the_parent(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "children")
    result = out["result"]
    assert result["doubled"] == 42
    caught = result["caught"]
    assert caught["type"] == "ChildWorkflowFailed"
    assert "child refused: no" in caught["message"]
    assert caught["exception_class"] and "ValueError" in caught["exception_class"]
    assert caught["child_workflow_type"] == "child-fails"
    types = [e["event_type"] for e in await history(sdk_server, out["workflow_id"], out["run_id"])]
    assert types[2:] == [
        "ChildWorkflowScheduled",
        "ChildRunStarted",
        "ChildRunCompleted",
        "ChildWorkflowScheduled",
        "ChildRunStarted",
        "ChildRunFailed",
        "WorkflowCompleted",
    ]
