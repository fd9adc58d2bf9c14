"""Schedules and their history (``schema/queries/schedules.sql``).

A schedule is read and written whole: the engine locks the row
(:func:`lock_schedule`, or a scheduler claim), changes an attrs copy and
writes it back with :func:`save_schedule`. Every row read carries the
transaction's clock (``db_now``), which the engine evaluates specs against, so
due times are compared on the database clock only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class ScheduleRow:
    id: str
    namespace: str
    schedule_id: str
    spec: dict[str, Any]
    action: dict[str, Any]
    status: str
    overlap_policy: str
    note: str | None
    memo: dict[str, Any] | None
    search_attributes: dict[str, Any] | None
    jitter_seconds: int
    max_runs: int | None
    remaining_actions: int | None
    fires_count: int
    failures_count: int
    skipped_trigger_count: int
    missed_fires_count: int
    recent_actions: list[dict[str, Any]]
    buffered_actions: list[dict[str, Any]]
    last_fired_at: datetime | None
    next_fire_at: datetime | None
    next_occurrence_at: datetime | None
    latest_workflow_id: str | None
    latest_run_id: str | None
    last_skip_reason: str | None
    last_skipped_at: datetime | None
    paused_at: datetime | None
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    #: The transaction's clock when the row was read.
    db_now: datetime


@attrs.frozen(kw_only=True)
class NewSchedule:
    id: str
    namespace: str
    schedule_id: str
    spec: dict[str, Any]
    action: dict[str, Any]
    status: str
    overlap_policy: str
    note: str | None
    memo: dict[str, Any] | None
    search_attributes: dict[str, Any] | None
    jitter_seconds: int
    max_runs: int | None
    remaining_actions: int | None
    next_fire_at: datetime | None
    next_occurrence_at: datetime | None


@attrs.frozen
class ScheduleEventRow:
    id: str
    sequence: int
    event_type: str
    payload: dict[str, Any]
    workflow_id: str | None
    run_id: str | None
    recorded_at: datetime


@attrs.frozen
class SchedulerOutlook:
    #: Seconds until the earliest active schedule is due (negative when overdue), or None.
    next_due_seconds: float | None
    has_buffered: bool


_INSERT_SCHEDULE = query("insert_schedule")
_LOCK_SCHEDULE = query("lock_schedule", ScheduleRow)
_GET_SCHEDULE = query("get_schedule", ScheduleRow)
_NEWEST_SCHEDULE_KEY = query("newest_schedule_key")
_LIST_SCHEDULES = query("list_schedules", ScheduleRow)
_SAVE_SCHEDULE = query("save_schedule")
_APPEND_SCHEDULE_EVENT = query("append_schedule_event")
_LIST_SCHEDULE_EVENTS = query("list_schedule_events", ScheduleEventRow)
_CLAIM_DUE_SCHEDULES = query("claim_due_schedules", ScheduleRow)
_CLAIM_BUFFERED_SCHEDULES = query("claim_buffered_schedules", ScheduleRow)
_SCHEDULER_OUTLOOK = query("scheduler_outlook", SchedulerOutlook)
_INSTANCE_IS_RUNNING = query("instance_is_running")
_LOCK_SCHEDULE_BY_KEY = query("lock_schedule_by_key", ScheduleRow)
_SCHEDULE_CLOCK = query("schedule_clock")


async def db_now(conn: Conn) -> datetime:
    """The transaction's clock (``now()``)."""
    now: datetime = await _SCHEDULE_CLOCK.fetchval(conn)
    return now


async def lock_schedule_by_key(conn: Conn, schedule_pk: str) -> ScheduleRow | None:
    return await _LOCK_SCHEDULE_BY_KEY.one(conn, id=schedule_pk)


async def insert_schedule(conn: Conn, new: NewSchedule) -> ScheduleRow | None:
    """Create a schedule and return it, locked; None when a live schedule already has its id."""
    key = await _INSERT_SCHEDULE.fetchval(
        conn,
        id=new.id,
        namespace=new.namespace,
        schedule_id=new.schedule_id,
        spec=new.spec,
        action=new.action,
        status=new.status,
        overlap_policy=new.overlap_policy,
        note=new.note,
        memo=new.memo,
        search_attributes=new.search_attributes,
        jitter_seconds=new.jitter_seconds,
        max_runs=new.max_runs,
        remaining_actions=new.remaining_actions,
        next_fire_at=new.next_fire_at,
        next_occurrence_at=new.next_occurrence_at,
    )
    return None if key is None else await lock_schedule_by_key(conn, key)


async def lock_schedule(conn: Conn, namespace: str, schedule_id: str) -> ScheduleRow | None:
    return await _LOCK_SCHEDULE.one(conn, namespace=namespace, schedule_id=schedule_id)


async def get_schedule(conn: Conn, namespace: str, schedule_id: str) -> ScheduleRow | None:
    return await _GET_SCHEDULE.one(conn, namespace=namespace, schedule_id=schedule_id)


async def newest_schedule_key(conn: Conn, namespace: str, schedule_id: str) -> str | None:
    """The internal id of the newest row with ``schedule_id``, deleted or not."""
    key: str | None = await _NEWEST_SCHEDULE_KEY.fetchval(
        conn, namespace=namespace, schedule_id=schedule_id
    )
    return key


async def list_schedules(
    conn: Conn,
    namespace: str,
    *,
    status: str | None,
    workflow_type: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[ScheduleRow]:
    return await _LIST_SCHEDULES.all(
        conn,
        namespace=namespace,
        status=status,
        workflow_type=workflow_type,
        after_created_at=None if after is None else after[0],
        after_id=None if after is None else after[1],
        limit=limit,
    )


async def save_schedule(conn: Conn, row: ScheduleRow) -> None:
    await _SAVE_SCHEDULE.execute(
        conn,
        id=row.id,
        spec=row.spec,
        action=row.action,
        status=row.status,
        overlap_policy=row.overlap_policy,
        note=row.note,
        memo=row.memo,
        search_attributes=row.search_attributes,
        jitter_seconds=row.jitter_seconds,
        max_runs=row.max_runs,
        remaining_actions=row.remaining_actions,
        fires_count=row.fires_count,
        failures_count=row.failures_count,
        skipped_trigger_count=row.skipped_trigger_count,
        missed_fires_count=row.missed_fires_count,
        recent_actions=row.recent_actions,
        buffered_actions=row.buffered_actions,
        last_fired_at=row.last_fired_at,
        next_fire_at=row.next_fire_at,
        next_occurrence_at=row.next_occurrence_at,
        latest_workflow_id=row.latest_workflow_id,
        latest_run_id=row.latest_run_id,
        last_skip_reason=row.last_skip_reason,
        last_skipped_at=row.last_skipped_at,
        paused_at=row.paused_at,
        deleted_at=row.deleted_at,
    )


async def append_schedule_event(
    conn: Conn,
    *,
    id: str,
    schedule_pk: str,
    event_type: str,
    payload: dict[str, Any],
    workflow_id: str | None = None,
    run_id: str | None = None,
) -> int:
    """Append one history event; returns its sequence."""
    sequence: int = await _APPEND_SCHEDULE_EVENT.fetchval(
        conn,
        id=id,
        schedule_pk=schedule_pk,
        event_type=event_type,
        payload=payload,
        workflow_id=workflow_id,
        run_id=run_id,
    )
    return sequence


async def list_schedule_events(
    conn: Conn, schedule_pk: str, *, after_sequence: int, limit: int
) -> list[ScheduleEventRow]:
    return await _LIST_SCHEDULE_EVENTS.all(
        conn, schedule_pk=schedule_pk, after_sequence=after_sequence, limit=limit
    )


async def claim_due_schedules(conn: Conn, *, limit: int) -> list[ScheduleRow]:
    return await _CLAIM_DUE_SCHEDULES.all(conn, limit=limit)


async def claim_buffered_schedules(conn: Conn, *, limit: int) -> list[ScheduleRow]:
    return await _CLAIM_BUFFERED_SCHEDULES.all(conn, limit=limit)


async def scheduler_outlook(conn: Conn) -> SchedulerOutlook:
    outlook = await _SCHEDULER_OUTLOOK.one(conn)
    assert outlook is not None  # an aggregate always returns one row
    return outlook


async def instance_is_running(conn: Conn, workflow_id: str) -> bool:
    """Whether the instance's current run is still open (False when there is none)."""
    return bool(await _INSTANCE_IS_RUNNING.fetchval(conn, workflow_id=workflow_id))
