"""Lists workflows with the official SDK's filters against a dwtrio URL.

    python visibility_driver.py <scenario> <base_url> <token>

Prints one JSON line: what each ``Client.list_workflows`` call returned (ids,
statuses, search attributes, whether a next page token came) or which SDK
exception it raised. No worker runs: the started workflows stay open.
"""

from __future__ import annotations

import uuid
from typing import Any

from durable_workflow import Client
from durable_workflow.errors import DurableWorkflowError, InvalidArgument

from driver_support import print_result


async def listed(client: Client, **kwargs: Any) -> dict[str, Any]:
    try:
        page = await client.list_workflows(**kwargs)
    except InvalidArgument as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    except DurableWorkflowError as exc:  # pragma: no cover - reported for the test to show
        return {"error": type(exc).__name__, "message": str(exc)}
    return {
        "ids": [e.workflow_id for e in page.executions],
        "statuses": [e.status for e in page.executions],
        "search_attributes": [e.search_attributes for e in page.executions],
        "next_page_token": page.next_page_token,
    }


async def filters(client: Client) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    await client.create_search_attribute("Region", "keyword")
    await client.create_search_attribute("Amount", "double")
    ids = []
    for i, (region, amount) in enumerate([("eu", 10.0), ("us", 250.0), ("eu", 990.5)]):
        workflow_id = f"sdk-vis-{tag}-{i}"
        await client.start_workflow(
            workflow_type="sdk-vis" if i < 2 else "sdk-vis-other",
            task_queue="sdk-vis-q",
            workflow_id=workflow_id,
            search_attributes={"Region": region, "Amount": amount},
        )
        ids.append(workflow_id)
    out: dict[str, Any] = {"ids": ids}
    out["by_type"] = await listed(client, workflow_type="sdk-vis")
    out["by_status"] = await listed(client, status="running", query=f"sdk-vis-{tag}")
    out["query"] = await listed(client, query='Region = "eu" AND Amount > 100')
    out["query_ordered"] = await listed(
        client, query='Region = "eu" ORDER BY StartTime DESC', workflow_type="sdk-vis"
    )
    first = await listed(client, query=f'WorkflowId STARTS_WITH "sdk-vis-{tag}"', page_size=2)
    out["page1"] = first
    out["page2"] = await listed(
        client,
        query=f'WorkflowId STARTS_WITH "sdk-vis-{tag}"',
        page_size=2,
        next_page_token=first["next_page_token"],
    )
    out["unknown"] = await listed(client, query='Nope = "x"')
    out["mismatch"] = await listed(client, query='Amount > "lots"')
    out["malformed"] = await listed(client, query='Region = "eu" AND')
    out["injection"] = await listed(client, query="x'; DROP TABLE workflow_runs; --")
    out["after"] = await listed(client, query=f"sdk-vis-{tag}")
    return out


SCENARIOS = {"filters": filters}


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        return await SCENARIOS[scenario](client)


if __name__ == "__main__":
    print_result(main, timeout_s=90)
