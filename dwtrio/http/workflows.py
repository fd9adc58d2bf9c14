"""/api/workflows: start, list, describe, runs, history (control-plane.md §5.1-§5.4, §6.1).

The ``control_plane`` envelope is added to every response of these routes by
the after-request hook (``control_envelope.py``), not here.

History paging: ``next_page_token`` is base64 of the last sequence on the
page, ``null`` when no further event exists now; an unreadable token is
``422 validation_failed`` on ``next_page_token``. With ``wait_new_event`` the
request long-polls: while the run is open and no event follows the token, it
waits (up to ``DW_WORKER_POLL_TIMEOUT``) for the run's next commit of events,
on any node (a history wake, ``WaiterSet.watch_history``; without the wake bus
it reads again every two poll intervals), and answers an empty page at the
deadline or when the server drains. The list's token is a keyset, base64 of
the last row's ``started_at|run_id``; an unreadable one restarts at the first
page, as the reference does. The list's filters and query language:
``engine/visibility.py`` and docs/visibility.md.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

import trio
from quart import Blueprint, Response, g, request

from dwtrio import payloads, wire
from dwtrio.engine import search_attributes, visibility
from dwtrio.engine import workflows as engine
from dwtrio.errors import (
    InstanceNotFoundError,
    InvalidPayloadError,
    InvalidTimeRangeError,
    RunNotFoundError,
    ValidationFailedError,
    merge_field_errors,
)
from dwtrio.http.envelope import json_response
from dwtrio.http.worker_plane import Answer, ControlCall, ControlRoute, outcome_answer, quart_view
from dwtrio.matching.dispatch import create_with_handoff
from dwtrio.protocol import workflows as protocol
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.workflows import HistoryPageQuery, ListWorkflows, StartWorkflow
from dwtrio.runtime import Runtime
from dwtrio.settings import Settings
from dwtrio.store import workflows as store
from dwtrio.store.history import EventRow
from dwtrio.store.runs import OPEN_STATUSES
from dwtrio.store.workflows import ListedRun, RunSummary, RunView
from dwtrio.task_kinds import WORKFLOW_TASKS

T = TypeVar("T")
_INTEGER = re.compile(r"-?[0-9]+")
_STORABLE_WORKFLOW_ID = re.compile(r"[A-Za-z0-9._:-]{1,191}")


# --- request parsing -----------------------------------------------------------------


def parse_start(body: Any, namespace: str, settings: Settings) -> engine.StartCommand:
    """Validate a start body into a command; every field problem in one 422.

    Raises:
        ValidationFailedError: field errors (``InvalidPayloadError`` /
            ``ExternalPayloadUnsupportedError`` as such when ``input`` is the only problem).
    """
    errors = protocol.rejected_field_errors(body) if isinstance(body, dict) else {}
    try:
        req: StartWorkflow | None = wire.structure(body, StartWorkflow)
    except ValidationFailedError as exc:
        req = None
        merge_field_errors(errors, exc.errors)
    if req is None:
        raise ValidationFailedError(errors)
    memo_size = len(wire.dumps(req.memo)) if isinstance(req.memo, dict) else 0
    if problems := protocol.memo_errors(req.memo, memo_size, settings.max_memo_bytes):
        errors["memo"] = problems
    if problems := protocol.search_attribute_errors(
        req.search_attributes, settings.max_search_attributes
    ):
        errors["search_attributes"] = problems
    try:
        blob = payloads.start_input(req.input, field="input")
    except InvalidPayloadError as exc:
        if not errors:
            raise
        merge_field_errors(errors, exc.errors)
    if errors:
        raise ValidationFailedError(errors)
    return engine.StartCommand(
        namespace=namespace,
        workflow_id=req.workflow_id or new_id(),
        workflow_type=req.workflow_type,
        task_queue=req.task_queue or protocol.DEFAULT_TASK_QUEUE,
        input_blob=blob,
        business_key=req.business_key,
        memo=req.memo or {},
        search_attributes=req.search_attributes or {},
        duplicate_policy=req.duplicate_policy or "fail",
        execution_timeout_seconds=req.execution_timeout_seconds,
        run_timeout_seconds=req.run_timeout_seconds,
    )


def parse_query(cls: type[T], query: Mapping[str, str] | None = None) -> T:
    """Query-string parameters (the first value of each; by default the current Quart
    request's) into ``cls``; integer-looking values become ints, "" is absent."""
    if query is None:
        query = request.args
    args: dict[str, Any] = {}
    for key in query:
        value = query.get(key, "")
        if value != "":
            args[key] = int(value) if _INTEGER.fullmatch(value) and key == "page_size" else value
    return wire.structure(args, cls)


def encode_token(number: int) -> str:
    return base64.b64encode(str(number).encode()).decode()


def decode_token(token: str | None) -> int | None:
    """The non-negative integer in a page token, or None when it is unreadable."""
    if token is None:
        return 0
    try:
        text = base64.b64decode(token, validate=True).decode()
    except (binascii.Error, ValueError):
        return None
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None


def encode_list_token(run: ListedRun) -> str:
    """The list's keyset token: the last row's (started_at, run_id)."""
    return base64.b64encode(f"{run.started_at.isoformat()}|{run.run_id}".encode()).decode()


def decode_list_token(token: str | None) -> tuple[datetime, str] | None:
    """The keyset in a list token; None (the first page) when absent or unreadable."""
    if token is None:
        return None
    try:
        started, _, run_id = base64.b64decode(token, validate=True).decode().partition("|")
        after = datetime.fromisoformat(started)
    except (binascii.Error, ValueError):
        return None
    if not run_id or after.tzinfo is None:
        return None
    return after, run_id


_LIST_TIMES = ("started_after", "started_before", "closed_after", "closed_before")


def parse_list(namespace: str) -> visibility.ListRequest:
    """The current Quart request's list parameters (control-plane.md §5.2, docs/visibility.md).

    Raises:
        ValidationFailedError: a parameter out of its rules (times not ISO-8601).
        InvalidTimeRangeError: an ``*_after`` not before its ``*_before``.
    """
    q = parse_query(ListWorkflows)
    times: dict[str, datetime | None] = {}
    errors: dict[str, list[str]] = {}
    for name in _LIST_TIMES:
        text = getattr(q, name)
        times[name] = None if text is None else visibility.parse_datetime(text)
        if text is not None and times[name] is None:
            errors[name] = ["must be an ISO-8601 date-time"]
    if errors:
        raise ValidationFailedError(errors)
    for kind in ("started", "closed"):
        low, high = times[f"{kind}_after"], times[f"{kind}_before"]
        if low is not None and high is not None and low >= high:
            raise InvalidTimeRangeError(
                f"{kind}_after must be before {kind}_before.", field=f"{kind}_after"
            )
    return visibility.ListRequest(
        namespace=namespace,
        status=q.status,
        workflow_type=q.workflow_type,
        task_queue=q.task_queue,
        workflow_id_prefix=q.workflow_id_prefix,
        started_after=times["started_after"],
        started_before=times["started_before"],
        closed_after=times["closed_after"],
        closed_before=times["closed_before"],
        query=q.query,
        archived={"false": False, "true": True}.get(q.archived),
        after=decode_list_token(q.next_page_token),
        limit=q.page_size + 1,
    )


def could_exist(workflow_id: str, run_id: str = "x") -> bool:
    """False for ids the database cannot hold: answer 404 without a query."""
    return bool(_STORABLE_WORKFLOW_ID.fullmatch(workflow_id)) and "\x00" not in run_id


# --- response bodies -------------------------------------------------------------------


def run_summary_body(run: RunSummary) -> dict[str, Any]:
    return {
        "workflow_id": run.workflow_id,
        "run_id": run.run_id,
        "run_number": run.run_number,
        "workflow_type": run.workflow_type,
        "business_key": run.business_key,
        "status": run.status,
        "status_bucket": run.status_bucket,
        "is_current_run": run.is_current_run,
        "closed_reason": run.closed_reason,
        "task_queue": run.task_queue,
        "compatibility": run.compatibility,
        "payload_codec": run.payload_codec or payloads.CODEC,
        "started_at": wire.iso_z(run.started_at),
        "closed_at": wire.iso_z(run.closed_at),
    }


def describe_body(run: RunView) -> dict[str, Any]:
    terminal = run.status not in OPEN_STATUSES
    live = run.is_current_run and not terminal
    return {
        "workflow_id": run.workflow_id,
        "run_id": run.run_id,
        "namespace": run.namespace,
        "workflow_type": run.workflow_type,
        "business_key": run.business_key,
        "status": run.status,
        "status_bucket": run.status_bucket,
        "is_terminal": terminal,
        "closed_reason": run.closed_reason,
        "task_queue": run.task_queue,
        "run_number": run.run_number,
        "run_count": run.run_count,
        "is_current_run": run.is_current_run,
        "compatibility": run.compatibility,
        "payload_codec": run.payload_codec or payloads.CODEC,
        "execution_timeout_seconds": run.execution_timeout_seconds,
        "run_timeout_seconds": run.run_timeout_seconds,
        "execution_deadline_at": wire.iso_z(run.execution_deadline_at),
        "run_deadline_at": wire.iso_z(run.run_deadline_at),
        "input": payloads.decode_for_view(run.arguments),
        "output": payloads.decode_for_view(run.output),
        "input_envelope": payloads.envelope(run.arguments),
        "output_envelope": payloads.envelope(run.output),
        "started_at": wire.iso_z(run.started_at),
        "closed_at": wire.iso_z(run.closed_at),
        "last_progress_at": wire.iso_z(run.last_progress_at),
        "wait_kind": run.wait_kind,
        "wait_reason": run.wait_reason,
        "memo": run.memo or {},
        "search_attributes": run.search_attributes or {},
        "actions": {
            "can_signal": live,
            "can_query": not terminal or run.status == "completed",
            "can_update": live,
            "can_cancel": live,
            "can_terminate": live,
            "can_repair": live,
            "can_archive": terminal and run.archived_at is None,
        },
    }


def listed_body(run: ListedRun) -> dict[str, Any]:
    return {
        "workflow_id": run.workflow_id,
        "run_id": run.run_id,
        "namespace": run.namespace,
        "workflow_type": run.workflow_type,
        "business_key": run.business_key,
        "status": run.status,
        "status_bucket": run.status_bucket,
        "task_queue": run.task_queue,
        "is_terminal": run.status not in OPEN_STATUSES,
        "payload_codec": run.payload_codec or payloads.CODEC,
        "started_at": wire.iso_z(run.started_at),
        "closed_at": wire.iso_z(run.closed_at),
        "memo": run.memo or {},
        "search_attributes": run.search_attributes or {},
    }


def event_body(event: EventRow) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "event_type": event.event_type,
        "timestamp": wire.iso_z(event.recorded_at),
        "payload": event.payload or {},
    }


# --- routes ----------------------------------------------------------------------------


async def start_workflow(rt: Runtime, call: ControlCall) -> Answer:
    """``POST /api/workflows``."""
    cmd = parse_start(call.json, call.namespace, rt.settings)
    if cmd.search_attributes:  # registered types: one read, only when there are values
        await rt.store.read(
            search_attributes.check_values,
            cmd.namespace,
            cmd.search_attributes,
            "search_attributes",
        )
    # The usual start is one statement; a taken id needs the transactional path.
    # A poller parked here for the queue gets the first task as the start writes it.
    outcome = await create_with_handoff(
        rt,
        WORKFLOW_TASKS,
        functools.partial(rt.store.autocommit, engine.start_fresh, cmd),
        namespace=cmd.namespace,
        task_queue=cmd.task_queue,
        task_type=cmd.workflow_type,
    )
    if outcome is None:
        outcome = await rt.store.transaction(engine.start_workflow, cmd)
    rt.publish_wakes(outcome.wakes)
    return outcome_answer(outcome)


async def describe_workflow(rt: Runtime, call: ControlCall, wf: str) -> Answer:
    """``GET /api/workflows/{wf}``: the current run."""
    run = await rt.store.read(store.get_run_view, call.namespace, wf) if could_exist(wf) else None
    if run is None:
        raise InstanceNotFoundError(f"Workflow {wf!r} was not found.", workflow_id=wf)
    return Answer(describe_body(run))


async def history(rt: Runtime, call: ControlCall, wf: str, run_id: str) -> Answer:
    """``GET /api/workflows/{wf}/runs/{run_id}/history``: a page, perhaps long-polled."""
    q = parse_query(HistoryPageQuery, call.args)
    after = decode_token(q.next_page_token)
    if after is None:
        raise ValidationFailedError({"next_page_token": ["The next page token is invalid."]})
    if not could_exist(wf, run_id):
        raise RunNotFoundError(
            f"Run {run_id!r} of workflow {wf!r} was not found.", workflow_id=wf, run_id=run_id
        )
    deadline = trio.current_time() + rt.settings.worker_poll_timeout_s
    # Without the wake bus (Redis down) a watcher still looks now and then.
    recheck_s = 2 * rt.settings.worker_poll_interval_ms / 1000
    while True:
        # Watch before reading: events committed after the read still wake us.
        with rt.waiters.watch_history(run_id) as new_events:
            found = await rt.store.read(
                store.history_page, call.namespace, wf, run_id, after, q.page_size + 1
            )
            if found is None:
                raise RunNotFoundError(
                    f"Run {run_id!r} of workflow {wf!r} was not found.",
                    workflow_id=wf,
                    run_id=run_id,
                )
            if (
                found.events
                or not q.waits
                or not found.run_open
                or rt.draining.is_set()
                or trio.current_time() >= deadline
            ):
                break
            await new_events.wait(until=min(deadline, trio.current_time() + recheck_s))
    events = found.events
    page = events[: q.page_size]
    more = len(events) > q.page_size
    return Answer(
        {
            "workflow_id": wf,
            "run_id": run_id,
            "events": [event_body(e) for e in page],
            "next_page_token": encode_token(page[-1].sequence) if more else None,
        }
    )


#: Served below Quart (``worker_plane.WorkerPlane``): the busiest control-plane routes.
#: Their Quart routes remain for what the plane passes on (HEAD, a trailing slash).
BELOW_QUART = [
    ControlRoute("POST", "/api/workflows", start_workflow),
    ControlRoute("GET", "/api/workflows/<wf>", describe_workflow),
    ControlRoute("GET", "/api/workflows/<wf>/runs/<run_id>/history", history, long_polls=True),
]


def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("workflows", __name__)
    for route in BELOW_QUART:
        bp.add_url_rule(
            route.rule,
            route.handler.__name__,
            functools.partial(quart_view, rt, route.handler),
            methods=[route.method],
        )

    @bp.get("/api/workflows")
    async def list_workflows() -> Response:
        req = parse_list(g.namespace)
        rows = await rt.store.transaction(visibility.list_workflows, req)
        page = rows[: req.limit - 1]
        token = encode_list_token(page[-1]) if len(rows) == req.limit else None
        return json_response(
            {
                "workflows": [listed_body(r) for r in page],
                "workflow_count": len(page),
                "next_page_token": token,
            }
        )

    @bp.get("/api/workflows/<wf>/runs/<run_id>")
    async def describe_run(wf: str, run_id: str) -> Response:
        run = None
        if could_exist(wf, run_id):
            run = await rt.store.read(store.get_run_view, g.namespace, wf, run_id)
        if run is None:
            raise RunNotFoundError(
                f"Run {run_id!r} of workflow {wf!r} was not found.", workflow_id=wf, run_id=run_id
            )
        return json_response(describe_body(run))

    @bp.get("/api/workflows/<wf>/runs")
    async def list_runs(wf: str) -> Response:
        found = await rt.store.read(store.list_runs, g.namespace, wf) if could_exist(wf) else []
        if not found:
            raise InstanceNotFoundError(f"Workflow {wf!r} was not found.", workflow_id=wf)
        return json_response(
            {
                "workflow_id": wf,
                "run_count": found[-1].run_count,
                "runs": [run_summary_body(r) for r in found],
            }
        )

    return bp
