"""/api/schedules: create, list, describe, update, delete, pause, resume, trigger,
backfill and history (control-plane.md §7; the rules are in ``engine/schedules.py``).

A change answers only after its transaction committed; then the workflows it
started are woken and this process's scheduler is nudged, so a sooner
``next_fire_at`` is honoured at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime
from typing import Any

import attrs
import orjson
from quart import Blueprint, Response, g, request

from dwtrio import payloads, wire
from dwtrio.engine import schedules as engine
from dwtrio.engine import search_attributes
from dwtrio.engine.outcome import Outcome
from dwtrio.errors import (
    InvalidAfterSequenceError,
    InvalidPayloadError,
    InvalidTimeRangeError,
    MalformedSchedulePageTokenError,
    ScheduleAlreadyExistsError,
    ScheduleNotFoundError,
    SchedulePageTokenMismatchError,
    ScheduleTriggerFailedError,
    UnsupportedScheduleListFilterError,
    ValidationFailedError,
    merge_field_errors,
)
from dwtrio.http.envelope import json_response, outcome_response
from dwtrio.http.pipeline import json_body
from dwtrio.http.workflows import parse_query
from dwtrio.protocol import schedules as protocol
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.responses import BackfillAnswer, ScheduleAnswer
from dwtrio.protocol.schedule_spec import ScheduleSpec, parse_instant, parse_spec, spec_from_json
from dwtrio.protocol.workflows import memo_errors, search_attribute_errors
from dwtrio.runtime import Runtime
from dwtrio.settings import Settings
from dwtrio.store import schedules as store
from dwtrio.store.schedules import ScheduleEventRow, ScheduleRow

iso = wire.iso_offset


# --- bodies -------------------------------------------------------------------------------
def describe_body(row: ScheduleRow) -> dict[str, Any]:
    """The nested shape the CLI reads, plus the flat fields SDK 2.12.0 reads (§7.3)."""
    paused = row.status == "paused"
    return {
        "schedule_id": row.schedule_id,
        "namespace": row.namespace,
        "spec": row.spec,
        "action": row.action,
        "overlap_policy": row.overlap_policy,
        "state": {"status": row.status, "paused": paused, "note": row.note},
        "info": {
            "next_fire": iso(row.next_fire_at),
            "last_fire": iso(row.last_fired_at),
            "fires_count": row.fires_count,
            "failures_count": row.failures_count,
            "recent_actions": row.recent_actions,
            "buffered_actions": row.buffered_actions,
            "skipped_trigger_count": row.skipped_trigger_count,
            "last_skip_reason": row.last_skip_reason,
            "last_skipped_at": iso(row.last_skipped_at),
            "missed_fires_count": row.missed_fires_count,
        },
        "memo": row.memo,
        "search_attributes": row.search_attributes,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "jitter_seconds": row.jitter_seconds,
        "max_runs": row.max_runs,
        "remaining_actions": row.remaining_actions,
        "latest_workflow_instance_id": row.latest_workflow_id,
        "status": row.status,
        "paused": paused,
        "note": row.note,
        "fires_count": row.fires_count,
        "failures_count": row.failures_count,
        "next_fire_at": iso(row.next_fire_at),
        "last_fired_at": iso(row.last_fired_at),
        "paused_at": iso(row.paused_at),
    }


def list_item(row: ScheduleRow) -> dict[str, Any]:
    """One schedule in a list page: the reference's item plus what SDK 2.12.0 reads (§7.2)."""
    item: dict[str, Any] = {
        "schedule_id": row.schedule_id,
        "workflow_type": row.action.get("workflow_type"),
        "status": row.status,
        "paused": row.status == "paused",
        "next_fire": iso(row.next_fire_at),
        "last_fire": iso(row.last_fired_at),
        "overlap_policy": row.overlap_policy,
        "note": row.note,
        "fires_count": row.fires_count,
    }
    # The reference leaves these out when zero or null.
    for key in ("jitter_seconds", "max_runs", "remaining_actions"):
        if getattr(row, key):
            item[key] = getattr(row, key)
    item.update(
        namespace=row.namespace,
        spec=row.spec,
        action=row.action,
        memo=row.memo,
        search_attributes=row.search_attributes,
        failures_count=row.failures_count,
        next_fire_at=iso(row.next_fire_at),
        last_fired_at=iso(row.last_fired_at),
        latest_workflow_instance_id=row.latest_workflow_id,
        paused_at=iso(row.paused_at),
        created_at=iso(row.created_at),
        updated_at=iso(row.updated_at),
    )
    return item


def event_body(event: ScheduleEventRow) -> dict[str, Any]:
    return {
        "id": event.id,
        "sequence": event.sequence,
        "event_type": event.event_type,
        "payload": event.payload,
        "workflow_instance_id": event.workflow_id,
        "workflow_run_id": event.run_id,
        "recorded_at": iso(event.recorded_at),
    }


# --- parsing --------------------------------------------------------------------------------
def _structure(cls: type[Any], errors: dict[str, list[str]]) -> Any:
    try:
        return wire.structure(json_body(), cls)
    except ValidationFailedError as exc:
        merge_field_errors(errors, exc.errors)
        return None


def _check_action(action: dict[str, Any], errors: dict[str, list[str]]) -> None:
    """The input must be what a start accepts (an array or a payload envelope)."""
    if "action.input" in errors or not action:
        return
    try:
        payloads.start_input(action.get("input"), field="action.input")
    except InvalidPayloadError as exc:
        merge_field_errors(errors, exc.errors)


def _check_extras(req: Any, settings: Settings, errors: dict[str, list[str]]) -> None:
    memo_size = len(wire.dumps(req.memo)) if isinstance(req.memo, dict) else 0
    if problems := memo_errors(req.memo, memo_size, settings.max_memo_bytes):
        errors["memo"] = problems
    if problems := search_attribute_errors(req.search_attributes, settings.max_search_attributes):
        errors["search_attributes"] = problems


def _spec(raw: Any, errors: dict[str, list[str]]) -> ScheduleSpec | None:
    try:
        return parse_spec(raw, path="spec")
    except ValidationFailedError as exc:
        merge_field_errors(errors, exc.errors)
        return None


def command_context(command: str, schedule_id: str) -> dict[str, Any]:
    """Who asked for a schedule change (auth-and-headers.md §4.7), kept in its history."""
    admitted = getattr(g, "admitted", None)
    principal = None if admitted is None else admitted.principal
    return {
        "caller": {"type": "server", "label": "Standalone Server"},
        "auth": {
            "status": "authorized"
            if principal and principal.method != "none"
            else "not_configured",
            "method": None if principal is None else principal.method,
            "role": None if principal is None else principal.role,
        },
        "request": {
            "method": request.method,
            "path": request.path,
            "user_agent": request.headers.get("user-agent"),
            "request_id": request.headers.get("x-request-id"),
        },
        "server": {"namespace": g.namespace, "schedule_id": schedule_id, "command": command},
    }


def parse_create(rt: Runtime) -> engine.ScheduleDefinition:
    """A create body into a definition; every field problem in one 422."""
    errors: dict[str, list[str]] = {}
    req: protocol.CreateSchedule | None = _structure(protocol.CreateSchedule, errors)
    body = json_body()
    raw = body if isinstance(body, dict) else {}
    if "spec" not in raw or raw.get("spec") is None:
        errors.setdefault("spec", []).append("The spec field is required.")
        spec = None
    else:
        spec = _spec(raw["spec"], errors)
    if "action" not in raw or raw.get("action") is None:
        errors.setdefault("action", []).append("The action field is required.")
        action: dict[str, Any] = {}
    else:
        action, problems = protocol.normalize_action(raw["action"])
        merge_field_errors(errors, problems)
        _check_action(action, errors)
    if req is not None:
        _check_extras(req, rt.settings, errors)
    if errors or req is None or spec is None:
        raise ValidationFailedError(errors)
    schedule_id = req.schedule_id or new_id()
    return engine.ScheduleDefinition(
        namespace=g.namespace,
        schedule_id=schedule_id,
        spec=spec,
        action=action,
        overlap_policy=req.overlap_policy or "skip",
        jitter_seconds=req.jitter_seconds or 0,
        max_runs=req.max_runs,
        memo=req.memo,
        search_attributes=req.search_attributes,
        paused=req.paused,
        note=req.note,
        context=command_context("create", schedule_id),
    )


def parse_update(
    rt: Runtime, schedule_id: str, stored_action: dict[str, Any]
) -> engine.ScheduleChanges:
    errors: dict[str, list[str]] = {}
    req: protocol.UpdateSchedule | None = _structure(protocol.UpdateSchedule, errors)
    spec = None if req is None or req.spec is None else _spec(req.spec, errors)
    action = None
    if req is not None and req.action is not None:
        if not isinstance(req.action, dict):
            errors.setdefault("action", []).append("The action must be an object.")
        else:
            # Checked merged over the stored action; the engine merges again under the lock.
            merged, problems = protocol.normalize_action(
                protocol.merged_action(stored_action, req.action)
            )
            merge_field_errors(errors, problems)
            _check_action(merged, errors)
            action = req.action
    if req is not None:
        _check_extras(req, rt.settings, errors)
    if errors or req is None:
        raise ValidationFailedError(errors)
    return engine.ScheduleChanges(
        namespace=g.namespace,
        schedule_id=schedule_id,
        spec=spec,
        action=action,
        overlap_policy=req.overlap_policy,
        jitter_seconds=req.jitter_seconds,
        max_runs=req.max_runs,
        memo=req.memo,
        search_attributes=req.search_attributes,
        note=req.note,
        context=command_context("update", schedule_id),
    )


def _filters_key(namespace: str, q: protocol.ListSchedules) -> str:
    text = orjson.dumps([namespace, q.status, q.workflow_type])
    return hashlib.sha256(text).hexdigest()[:16]


def encode_page_token(namespace: str, q: protocol.ListSchedules, row: ScheduleRow) -> str:
    data = {"f": _filters_key(namespace, q), "c": row.created_at.isoformat(), "i": row.id}
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def decode_page_token(
    token: str, namespace: str, q: protocol.ListSchedules
) -> tuple[datetime, str]:
    """The keyset cursor in a list token; refuses a token made for other filters."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = (datetime.fromisoformat(data["c"]), str(data["i"]))
        filters = data["f"]
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise MalformedSchedulePageTokenError(
            "The next_page_token is not a token this server issued.", field="next_page_token"
        ) from None
    if filters != _filters_key(namespace, q):
        raise SchedulePageTokenMismatchError(
            "The next_page_token was issued for another namespace or other filters; "
            "pass it back with the same ones.",
            field="next_page_token",
        )
    return cursor


#: ASCII digits only (str.isdigit also takes "²", which int() refuses), at most 9 of them.
_SIGNED_INT = re.compile(r"-?[0-9]{1,9}")
_UNSIGNED_INT = re.compile(r"[0-9]{1,9}")


def _history_paging() -> tuple[int, int]:
    """``limit`` (default 100, clamped to 1..500; junk means the default) and ``after_sequence``."""
    raw_limit = request.args.get("limit", "")
    limit = int(raw_limit) if _SIGNED_INT.fullmatch(raw_limit) else 0
    limit = protocol.HISTORY_LIMIT_DEFAULT if limit <= 0 else min(limit, protocol.HISTORY_LIMIT_MAX)
    raw_after = request.args.get("after_sequence")
    if raw_after is None or raw_after == "":
        return limit, 0
    if not _UNSIGNED_INT.fullmatch(raw_after):
        raise InvalidAfterSequenceError(
            "The after_sequence must be a non-negative integer.", after_sequence=raw_after
        )
    return limit, int(raw_after)


def _not_found(schedule_id: str) -> ScheduleNotFoundError:
    return ScheduleNotFoundError(
        f"Schedule {schedule_id!r} was not found.", schedule_id=schedule_id
    )


def _could_exist(schedule_id: str) -> bool:
    return len(schedule_id) <= 255 and "\x00" not in schedule_id


def storable(schedule_id: str) -> str:
    """The path's schedule id; 404 for ids no schedule can have (never sent to the store)."""
    if not _could_exist(schedule_id):
        raise _not_found(schedule_id)
    return schedule_id


# --- routes ----------------------------------------------------------------------------------
def blueprint(rt: Runtime) -> Blueprint:
    bp = Blueprint("schedules", __name__)

    def committed(outcome: Outcome) -> None:
        rt.publish_wakes(outcome.wakes)
        rt.schedule_nudge.set()

    async def read_row(schedule_id: str) -> ScheduleRow:
        row = await rt.store.read(store.get_schedule, g.namespace, storable(schedule_id))
        if row is None:
            raise _not_found(schedule_id)
        return row

    async def check_attribute_types(attributes: dict[str, Any] | None) -> None:
        """Values must fit their registered types, as at a start (one read, when any)."""
        if attributes:
            await rt.store.read(
                search_attributes.check_values, g.namespace, attributes, "search_attributes"
            )

    @bp.post("/api/schedules")
    async def create_schedule() -> Response:
        definition = parse_create(rt)
        await check_attribute_types(definition.search_attributes)
        outcome = await rt.store.transaction(engine.create, definition)
        if outcome is None:
            raise ScheduleAlreadyExistsError(
                f"Schedule {definition.schedule_id!r} already exists.",
                schedule_id=definition.schedule_id,
            )
        committed(outcome)
        return outcome_response(outcome)

    @bp.get("/api/schedules")
    async def list_schedules() -> Response:
        q = parse_query(protocol.ListSchedules)
        if q.query:
            raise UnsupportedScheduleListFilterError(
                "Schedule visibility queries are not supported yet; filter with status "
                "and workflow_type.",
                field="query",
            )
        namespace = g.namespace
        after = (
            None if not q.next_page_token else decode_page_token(q.next_page_token, namespace, q)
        )
        size = q.page_size or protocol.LIST_PAGE_SIZE_DEFAULT
        rows = await rt.store.read(
            store.list_schedules,
            namespace,
            status=q.status,
            workflow_type=q.workflow_type,
            after=after,
            limit=size + 1,
        )
        page, more = rows[:size], len(rows) > size
        return json_response(
            {
                "schedules": [list_item(r) for r in page],
                "schedule_count": len(page),
                "next_page_token": encode_page_token(namespace, q, page[-1]) if more else None,
            }
        )

    @bp.get("/api/schedules/<schedule_id>")
    async def describe_schedule(schedule_id: str) -> Response:
        return json_response(describe_body(await read_row(schedule_id)))

    @bp.put("/api/schedules/<schedule_id>")
    async def update_schedule(schedule_id: str) -> Response:
        stored = await read_row(schedule_id)
        changes = parse_update(rt, schedule_id, stored.action)
        await check_attribute_types(changes.search_attributes)
        outcome = await rt.store.transaction(engine.update, changes)
        committed(outcome)
        return outcome_response(outcome)

    @bp.delete("/api/schedules/<schedule_id>")
    async def delete_schedule(schedule_id: str) -> Response:
        storable(schedule_id)
        context = command_context("delete", schedule_id)
        outcome = await rt.store.transaction(engine.delete, g.namespace, schedule_id, context)
        committed(outcome)
        return outcome_response(outcome)

    async def pause_or_resume(schedule_id: str, op: Any, command: str) -> Response:
        req = wire.structure(json_body(), protocol.ScheduleNote)
        storable(schedule_id)
        context = command_context(command, schedule_id)
        outcome = await rt.store.transaction(op, g.namespace, schedule_id, req.note, context)
        committed(outcome)
        return outcome_response(outcome)

    @bp.post("/api/schedules/<schedule_id>/pause")
    async def pause_schedule(schedule_id: str) -> Response:
        return await pause_or_resume(schedule_id, engine.pause, "pause")

    @bp.post("/api/schedules/<schedule_id>/resume")
    async def resume_schedule(schedule_id: str) -> Response:
        return await pause_or_resume(schedule_id, engine.resume, "resume")

    @bp.post("/api/schedules/<schedule_id>/trigger")
    async def trigger_schedule(schedule_id: str) -> Response:
        req = wire.structure(json_body(), protocol.TriggerSchedule)
        storable(schedule_id)
        outcome, fire = await rt.store.transaction(
            engine.trigger, g.namespace, schedule_id, req.overlap_policy
        )
        committed(outcome)
        if fire.outcome == "failed":
            raise ScheduleTriggerFailedError(
                fire.reason, schedule_id=schedule_id, outcome="trigger_failed"
            )
        answer = ScheduleAnswer(schedule_id=schedule_id, outcome=fire.outcome)
        fields = {
            k: v
            for k in ("workflow_id", "run_id", "reason", "buffer_depth")
            if (v := getattr(fire, k)) is not None
        }
        return outcome_response(Outcome(body=attrs.evolve(answer, **fields)))

    @bp.post("/api/schedules/<schedule_id>/backfill")
    async def backfill_schedule(schedule_id: str) -> Response:
        req = wire.structure(json_body(), protocol.BackfillSchedule)
        errors: dict[str, list[str]] = {}
        start, end = parse_instant(req.start_time), parse_instant(req.end_time)
        if start is None:
            errors["start_time"] = ["The start time must be an ISO-8601 date and time."]
        if end is None:
            errors["end_time"] = ["The end time must be an ISO-8601 date and time."]
        if errors or start is None or end is None:
            raise ValidationFailedError(errors)
        if end <= start:
            raise InvalidTimeRangeError(
                "The end_time must be after the start_time.",
                start_time=req.start_time,
                end_time=req.end_time,
            )
        row = await read_row(schedule_id)
        occurrences = spec_from_json(row.spec).occurrences(
            start, end, limit=protocol.BACKFILL_MAX_OCCURRENCES
        )
        results: list[dict[str, Any]] = []
        for occurrence in occurrences:
            outcome, fire, more = await rt.store.transaction(
                engine.backfill_one, g.namespace, schedule_id, occurrence, req.overlap_policy
            )
            committed(outcome)
            result: dict[str, Any] = {"fire_time": iso(occurrence)}
            if fire.workflow_id is not None:
                result["workflow_id"] = fire.workflow_id
                result["run_id"] = fire.run_id
            result["outcome"] = "started" if fire.outcome == "triggered" else fire.outcome
            if fire.reason is not None:
                result["reason"] = fire.reason
            results.append(result)
            if not more:
                break
        answer = BackfillAnswer(
            schedule_id=schedule_id,
            outcome="backfill_started",
            fires_attempted=len(results),
            results=results,
        )
        return outcome_response(Outcome(body=answer))

    @bp.get("/api/schedules/<schedule_id>/history")
    async def schedule_history(schedule_id: str) -> Response:
        limit, after = _history_paging()
        namespace = g.namespace
        key = None
        if _could_exist(schedule_id):
            key = await rt.store.read(store.newest_schedule_key, namespace, schedule_id)
        if key is None:
            raise _not_found(schedule_id)
        events = await rt.store.read(
            store.list_schedule_events, key, after_sequence=after, limit=limit + 1
        )
        page, more = events[:limit], len(events) > limit
        return json_response(
            {
                "schedule_id": schedule_id,
                "namespace": namespace,
                "events": [event_body(e) for e in page],
                "next_cursor": page[-1].sequence if more else None,
                "has_more": more,
            }
        )

    return bp
