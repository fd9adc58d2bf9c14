"""/api/workflows/{wf}/runs/{run}/streams[/{name}[/items|/close]] (docs/workflow-streams.md).

The rules are ``engine/workflow_streams.py``. Reading items may long-poll
(``wait_seconds``): the request watches the stream's wake key before each read
(``WaiterSet.watch_stream``), so an append or close committed on any node
between the read and the wait still wakes it, through the wake bus; without the
bus it reads again every two poll intervals. No ``control_plane`` envelope:
these are not workflow operations of the response contract.
"""

from __future__ import annotations

import re

import trio
from quart import Blueprint, Response, g, request

from dwtrio import wire
from dwtrio.engine import workflow_streams as engine
from dwtrio.engine.workflow_streams import StreamRef
from dwtrio.errors import ValidationFailedError
from dwtrio.http.envelope import json_response, outcome_response
from dwtrio.http.pipeline import json_body
from dwtrio.http.workflows import could_exist
from dwtrio.protocol.responses import render
from dwtrio.protocol.workflow_streams import (
    DEFAULT_MAX_ITEMS,
    ITEMS_QUERY_BOUNDS,
    AppendStreamItems,
    CloseStream,
    StreamItemsQuery,
)
from dwtrio.runtime import Runtime

_INTEGER = re.compile(r"[0-9]{1,19}")


def parse_items_query() -> StreamItemsQuery:
    """``from``, ``max_items`` and ``wait_seconds``: integers in their bounds, else 422."""
    values: dict[str, int] = {}
    errors: dict[str, list[str]] = {}
    for name, (low, high) in ITEMS_QUERY_BOUNDS.items():
        raw = request.args.get(name, "")
        if raw == "":
            continue
        if not _INTEGER.fullmatch(raw):
            errors[name] = [f"The {name} must be an integer."]
        elif not low <= int(raw) <= high:
            errors[name] = [f"The {name} must be between {low} and {high}."]
        else:
            values[name] = int(raw)
    if errors:
        raise ValidationFailedError(errors)
    return StreamItemsQuery(
        from_offset=values.get("from", 0),
        max_items=values.get("max_items", DEFAULT_MAX_ITEMS),
        wait_seconds=values.get("wait_seconds", 0),
    )


def parse_append() -> AppendStreamItems:
    body = json_body()
    if isinstance(body, dict) and "items" in body and not isinstance(body["items"], list):
        # (cattrs would take a string for a list of its characters)
        raise ValidationFailedError({"items": ["The items field must be an array."]})
    return wire.structure(body, AppendStreamItems)


def stream_ref(wf: str, run_id: str, name: str = "") -> StreamRef:
    if not could_exist(wf, run_id):
        # No query: the database cannot hold such ids (the engine's own 404).
        raise engine.run_not_found(StreamRef(g.namespace, wf, run_id, name))
    return StreamRef(namespace=g.namespace, workflow_id=wf, run_id=run_id, stream_name=name)


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("workflow_streams", __name__)
    base = "/api/workflows/<wf>/runs/<run_id>/streams"

    @bp.get(base)
    async def list_streams(wf: str, run_id: str) -> Response:
        body = await rt.store.read(engine.list_streams, stream_ref(wf, run_id))
        return json_response(render(body))

    @bp.get(f"{base}/<name>")
    async def describe_stream(wf: str, run_id: str, name: str) -> Response:
        body = await rt.store.read(engine.describe_stream, stream_ref(wf, run_id, name))
        return json_response(render(body))

    @bp.get(f"{base}/<name>/items")
    async def read_items(wf: str, run_id: str, name: str) -> Response:
        q = parse_items_query()
        ref = stream_ref(wf, run_id, name)
        deadline = trio.current_time() + q.wait_seconds
        # Without the wake bus (down, or a local bus and another node) look now and then.
        recheck_s = 2 * rt.settings.worker_poll_interval_ms / 1000
        while True:
            # Watch before reading: an append committed after the read still wakes us.
            with rt.waiters.watch_stream(run_id, name) as woken:
                found = await rt.store.transaction(
                    engine.read_items, ref, q.from_offset, q.max_items
                )
                if found.ready or rt.draining.is_set() or trio.current_time() >= deadline:
                    break
                await woken.wait(until=min(deadline, trio.current_time() + recheck_s))
        return json_response(render(found.page))

    @bp.post(f"{base}/<name>/items")
    async def append_items(wf: str, run_id: str, name: str) -> Response:
        cmd = engine.append_command(stream_ref(wf, run_id, name), parse_append())
        outcome = await rt.store.transaction(engine.append_items, cmd)
        rt.publish_wakes(outcome.wakes)
        return outcome_response(outcome)

    @bp.post(f"{base}/<name>/close")
    async def close_stream(wf: str, run_id: str, name: str) -> Response:
        req = wire.structure(json_body(), CloseStream)
        cmd = engine.CloseCommand(ref=stream_ref(wf, run_id, name), req=req)
        outcome = await rt.store.transaction(engine.close_stream, cmd)
        rt.publish_wakes(outcome.wakes)
        return outcome_response(outcome)

    return bp
