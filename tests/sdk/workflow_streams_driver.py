"""Durable workflow streams through the official SDK against a dwtrio URL; prints JSON.

    python workflow_streams_driver.py <scenario> <base_url> <token>

Scenarios: ``streams`` (append, iterate from another task with a long-poll, dedupe,
list, describe, close, errors) and ``latency`` (how long an append takes to reach a
parked subscriber, beside a signal's round trip, in the same run). The run streamed
to needs no worker. Runs in its own process (the SDK is asyncio; the test process
runs Trio). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
import uuid
from typing import Any

from durable_workflow import Client
from durable_workflow.client import WorkflowStreamAppendItem
from durable_workflow.errors import DurableWorkflowError

from driver_support import print_result


def _stream(d: Any) -> dict[str, Any]:
    fields = dataclasses.asdict(d)
    fields.pop("raw")
    fields["terminal"] = d.terminal
    return fields


def _error(exc: DurableWorkflowError) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    return {
        "type": type(exc).__name__,
        "status": getattr(exc, "status", None),
        "reason": body.get("reason") if isinstance(body, dict) else None,
        "body": body,
    }


async def _start(client: Client) -> tuple[str, str]:
    workflow_id = f"streams-{uuid.uuid4().hex}"
    handle = await client.start_workflow(
        workflow_type="streams-host",
        workflow_id=workflow_id,
        task_queue=f"q-{uuid.uuid4().hex[:8]}",
        input=[],
    )
    assert handle.run_id is not None
    return workflow_id, handle.run_id


async def streams(url: str, token: str) -> dict[str, Any]:
    async with Client(url, token=token, namespace="default") as client:
        wf, run = await _start(client)
        out: dict[str, Any] = {"workflow_id": wf, "run_id": run}
        try:
            await client.describe_workflow_stream(wf, run, "tokens")
        except DurableWorkflowError as exc:
            out["missing"] = _error(exc)
        first = await client.append_workflow_stream(
            wf, run, "tokens", [WorkflowStreamAppendItem(payload="hello", item_type="token")]
        )
        out["first"] = {
            "offsets": first.accepted_offsets,
            "accepted": first.accepted_count,
            "deduped": first.deduplicated_count,
            "stream": _stream(first.stream),
        }
        received: list[dict[str, Any]] = []

        async def subscriber() -> None:
            # Long-polls of 10 s: each later item must arrive through a wake.
            async for item in client.iter_workflow_stream(
                wf, run, "tokens", wait_seconds=10, max_items=2
            ):
                received.append(
                    {
                        "offset": item.offset,
                        "payload": item.payload,
                        "item_type": item.item_type,
                        "idempotency_key": item.idempotency_key,
                        "payload_reference": item.payload_reference,
                        "payload_codec": item.payload_codec,
                        "origin": item.origin,
                        "emitted_at": item.emitted_at,
                    }
                )

        reader = asyncio.create_task(subscriber())
        await asyncio.sleep(0.3)
        second = await client.append_workflow_stream(
            wf,
            run,
            "tokens",
            [
                WorkflowStreamAppendItem(payload={"n": 1, "tags": ["a", "b"]}),
                WorkflowStreamAppendItem(payload=[1, 2.5, None], idempotency_key="k1"),
                WorkflowStreamAppendItem(payload_reference="s3://bucket/obj"),
            ],
        )
        await asyncio.sleep(0.3)
        retry = await client.append_workflow_stream(
            wf,
            run,
            "tokens",
            [
                WorkflowStreamAppendItem(payload=[1, 2.5, None], idempotency_key="k1"),
                WorkflowStreamAppendItem(payload="last", content_type="text/plain"),
            ],
        )
        out["second"] = {"offsets": second.accepted_offsets, "accepted": second.accepted_count}
        out["retry"] = {
            "offsets": retry.accepted_offsets,
            "accepted": retry.accepted_count,
            "deduped": retry.deduplicated_count,
        }
        await asyncio.sleep(0.3)
        out["before_close"] = len(received)
        out["listed"] = [_stream(s) for s in await client.list_workflow_streams(wf, run)]
        out["described"] = _stream(await client.describe_workflow_stream(wf, run, "tokens"))
        closed = await client.close_workflow_stream(wf, run, "tokens", retention_seconds=120)
        out["closed"] = _stream(closed)
        await asyncio.wait_for(reader, timeout=10)
        out["received"] = received
        try:
            await client.append_workflow_stream(
                wf, run, "tokens", [WorkflowStreamAppendItem(payload="late")]
            )
        except DurableWorkflowError as exc:
            out["after_close"] = _error(exc)
        page = await client.subscribe_workflow_stream(wf, run, "tokens", from_offset=5)
        out["final_page"] = {
            "items": len(page.items),
            "next_offset": page.next_offset,
            "terminal": page.terminal,
        }
        await client.append_workflow_stream(
            wf, run, "errors", [WorkflowStreamAppendItem(payload=1)]
        )
        errored = await client.close_workflow_stream(wf, run, "errors", error_reason="boom")
        out["errored"] = _stream(errored)
        tail = await client.subscribe_workflow_stream(
            wf, run, "errors", from_offset=1, wait_seconds=5
        )
        out["errored_page"] = {"items": len(tail.items), "terminal": tail.terminal}
        try:
            await client.append_workflow_stream(
                wf,
                run,
                "full",
                [WorkflowStreamAppendItem(payload=i) for i in range(3)],
                max_pending_items=2,
            )
        except DurableWorkflowError as exc:
            out["full"] = _error(exc)
        try:
            await client.append_workflow_stream(
                wf, run, "bad name", [WorkflowStreamAppendItem(payload=1)]
            )
        except DurableWorkflowError as exc:
            out["bad_name"] = _error(exc)
        try:
            await client.list_workflow_streams(wf, "no-such-run")
        except DurableWorkflowError as exc:
            out["no_run"] = _error(exc)
        return out


async def latency(url: str, token: str) -> dict[str, Any]:
    """Append -> parked subscriber, and a signal's round trip, alternating, in one run."""
    async with Client(url, token=token, namespace="default") as client:
        wf, run = await _start(client)
        await client.append_workflow_stream(wf, run, "lat", [WorkflowStreamAppendItem(payload=0)])
        wakes: list[float] = []
        appends: list[float] = []
        signals: list[float] = []

        async def wait_one(offset: int) -> float:
            page = await client.subscribe_workflow_stream(
                wf, run, "lat", from_offset=offset, wait_seconds=10
            )
            arrived = time.perf_counter()
            assert [i.offset for i in page.items] == [offset]
            return arrived

        for n in range(1, 41):
            task = asyncio.create_task(wait_one(n))
            await asyncio.sleep(0.05)  # parked
            sent = time.perf_counter()
            await client.append_workflow_stream(
                wf, run, "lat", [WorkflowStreamAppendItem(payload=n)]
            )
            appends.append(time.perf_counter() - sent)
            arrived = await asyncio.wait_for(task, 10)
            wakes.append(arrived - sent)
            began = time.perf_counter()
            await client.signal_workflow(wf, "poke", args=[n])
            signals.append(time.perf_counter() - began)

        def summary(values: list[float]) -> dict[str, float]:
            ms = sorted(v * 1000 for v in values)
            return {
                "median_ms": round(statistics.median(ms), 2),
                "p90_ms": round(ms[int(len(ms) * 0.9) - 1], 2),
                "max_ms": round(ms[-1], 2),
            }

        return {
            "samples": len(wakes),
            "append_to_subscriber": summary(wakes),
            "append_round_trip": summary(appends),
            "signal_round_trip": summary(signals),
        }


async def main(scenario: str, url: str, token: str) -> dict[str, Any]:
    if scenario == "streams":
        return await streams(url, token)
    if scenario == "latency":
        return await latency(url, token)
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    print_result(main)
