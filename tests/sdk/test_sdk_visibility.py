"""SDK 2.12.0 ``Client.list_workflows`` with its filters (``workflow_type``, ``status``,
``query``, paging) against dwtrio's visibility list (driver in a subprocess).

The SDK sends ``query`` as given: the visibility language when it uses the
language's signs, else the reference's substring search; a refused query is
``422 invalid_visibility_query``, which the SDK raises as ``InvalidArgument``.
"""

from __future__ import annotations

import pytest

from conftest import RunningServer, StartServer
from sdk_helpers import run_driver, start_sdk_server

DRIVER = "visibility_driver.py"

pytestmark = pytest.mark.sdk


@pytest.fixture
async def sdk_server(start_server: StartServer) -> RunningServer:
    return await start_sdk_server(start_server)


async def test_list_workflows_filters(sdk_server: RunningServer) -> None:
    out = await run_driver(sdk_server, DRIVER, "filters")
    first, second, third = out["ids"]
    assert out["by_type"]["ids"] == [second, first]
    assert out["by_status"]["ids"] == [third, second, first]
    assert out["by_status"]["statuses"] == ["pending"] * 3
    assert out["query"]["ids"] == [third]
    assert out["query"]["search_attributes"] == [{"Region": "eu", "Amount": 990.5}]
    assert out["query_ordered"]["ids"] == [first]
    assert out["page1"]["ids"] == [third, second] and out["page1"]["next_page_token"]
    assert out["page2"]["ids"] == [first] and out["page2"]["next_page_token"] is None
    for name, needle in [
        ("unknown", "Unknown search attribute 'Nope'"),
        ("mismatch", "not a number"),
        ("malformed", "ends too early"),
        ("injection", "Unterminated string"),
    ]:
        assert out[name]["error"] == "InvalidArgument", out[name]
        assert needle in out[name]["message"], out[name]
    assert out["after"]["ids"] == [third, second, first]  # nothing was changed
