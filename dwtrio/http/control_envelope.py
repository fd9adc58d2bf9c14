"""The ``control_plane`` envelope on workflow-operation responses (control-plane.md §2.4).

Added in exactly one place, :func:`dwtrio.http.envelope.json_response`, just
before the body is serialized, so success bodies, handler errors and errors
raised by the request gates (401/403/404/415/422 ...) all get it the same way. Which responses get it is decided from the method and the raw
path alone (:func:`operation_for`): the workflow operation routes, whether or
not a handler exists yet, and never ``.../history/export``.

Building it (:func:`add_envelope`): copy the path's workflow id / run id into
the payload when absent, drop legacy keys (``query``, ``signal``, ``update``,
``wait_policy``), then add ``control_plane`` with the contract from
:mod:`dwtrio.manifest` and every :data:`~dwtrio.manifest.PROJECTED_FIELDS` key
the payload has (null values included).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import attrs
from quart import has_request_context, request

from dwtrio.manifest import (
    LEGACY_FIELDS,
    OPERATIONS,
    PROJECTED_FIELDS,
    RESPONSE_SCHEMA,
    RESPONSE_VERSION,
    response_contract,
)

PREFIX = ("api", "workflows")
NAMED_COMMANDS = ("signal", "query", "update")
RUN_COMMANDS = ("cancel", "terminate", "repair", "archive")


@attrs.frozen
class Target:
    """The workflow operation a request addresses, with its path parameters."""

    operation: str
    workflow_id: str | None = None
    run_id: str | None = None
    operation_name: str | None = None


def split_path(raw_path: str) -> list[str]:
    """Segments of a raw path, each percent-decoded after splitting (so %2F stays inside)."""
    return [unquote(p) for p in raw_path.split("?", 1)[0].split("/") if p]


def operation_for(method: str, segments: list[str]) -> Target | None:
    """The workflow operation of ``method`` + path segments, or None (no envelope)."""
    if tuple(segments[:2]) != PREFIX:
        return None
    rest = segments[2:]
    if not rest:
        return (
            Target({"GET": "list", "POST": "start"}[method]) if method in ("GET", "POST") else None
        )
    wf, tail = rest[0], rest[1:]
    run: str | None = None
    if method == "GET":
        if tail == []:
            return Target("describe", wf)
        if tail == ["debug"]:
            return Target("debug_workflow", wf)
        if tail == ["runs"]:
            return Target("list_runs", wf)
        if len(tail) >= 2 and tail[0] == "runs":
            run, extra = tail[1], tail[2:]
            operation = {(): "describe_run", ("debug",): "debug_workflow", ("history",): "history"}
            name = operation.get(tuple(extra))
            return Target(name, wf, run) if name else None
        return None
    if method != "POST":
        return None
    if len(tail) >= 2 and tail[0] == "runs":
        run, tail = tail[1], tail[2:]
    if len(tail) == 2 and tail[0] in NAMED_COMMANDS:
        return Target(tail[0], wf, run, tail[1] or None)
    if len(tail) == 1 and (tail[0] in RUN_COMMANDS or (run is not None and tail[0] == "redrive")):
        return Target(tail[0], wf, run)
    return None


def add_envelope(payload: dict[str, Any], target: Target) -> dict[str, Any]:
    """Complete ``payload`` in place with path ids and ``control_plane``; returns it."""
    if target.workflow_id is not None:
        payload.setdefault("workflow_id", target.workflow_id)
    if target.run_id is not None:
        payload.setdefault("run_id", target.run_id)
    for legacy in LEGACY_FIELDS:
        payload.pop(legacy, None)
    spec = OPERATIONS[target.operation]
    envelope: dict[str, Any] = {
        "schema": RESPONSE_SCHEMA,
        "version": RESPONSE_VERSION,
        "operation": target.operation,
        "workflow_id": payload.get("workflow_id"),
    }
    if spec.operation_name_field is not None and target.operation_name:
        envelope["operation_name"] = target.operation_name
        envelope["operation_name_field"] = spec.operation_name_field
    envelope["contract"] = response_contract(target.operation)
    for key in PROJECTED_FIELDS:
        if key in payload:
            envelope[key] = payload[key]
    payload.pop("control_plane", None)
    payload["control_plane"] = envelope
    return payload


def _raw_path() -> str:
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if isinstance(raw, bytes) else request.path


def current_target() -> Target | None:
    """The workflow operation the current Quart request addresses, or None.

    None outside a request (the worker plane is served below Quart).
    """
    if not has_request_context():
        return None
    return operation_for(request.method, split_path(_raw_path()))
