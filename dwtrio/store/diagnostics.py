"""The debug snapshot's reads of one run (``schema/queries/diagnostics.sql``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.store.history import EventRow
from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class RunDebugState:
    """What a run waits on, and its tasks counted by state."""

    wake_pending: bool
    open_wait_id: str | None
    wait_started_at: datetime | None
    wait_deadline_at: datetime | None
    last_history_sequence: int
    archive_reason: str | None
    pending_timers: int
    next_timer_at: datetime | None
    pending_activities: int
    open_children: int
    open_updates: int
    #: Tasks of either kind: ready (due or not yet), due now, leased live, leases expired.
    ready_tasks: int
    due_tasks: int
    leased_tasks: int
    expired_leases: int
    oldest_due_at: datetime | None


@attrs.frozen
class OpenWorkflowTask:
    task_id: str
    state: str
    workflow_update_id: str | None
    attempt: int
    available_at: datetime
    lease_owner: str | None
    leased_at: datetime | None
    lease_expires_at: datetime | None
    lease_expired: bool
    failure_count: int
    repair_count: int
    failure: dict[str, Any] | None
    created_at: datetime


@attrs.frozen
class PendingActivity:
    activity_execution_id: str
    sequence: int
    activity_type: str
    task_queue: str
    status: str
    attempt_count: int
    current_attempt_id: str | None
    scheduled_at: datetime
    started_at: datetime | None
    last_heartbeat_at: datetime | None
    next_deadline_at: datetime | None
    task_id: str | None
    task_state: str | None
    available_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    lease_expired: bool


@attrs.frozen
class RecentFailure:
    source: str
    source_id: str
    failure: dict[str, Any] | None
    failed_at: datetime | None


_RUN_DEBUG_STATE = query("run_debug_state", RunDebugState)
_LIST_RUN_OPEN_WORKFLOW_TASKS = query("list_run_open_workflow_tasks", OpenWorkflowTask)
_LIST_RUN_PENDING_ACTIVITIES = query("list_run_pending_activities", PendingActivity)
_LIST_RUN_RECENT_FAILURES = query("list_run_recent_failures", RecentFailure)
_GET_LAST_HISTORY_EVENT = query("get_last_history_event", EventRow)


async def run_debug_state(conn: Conn, *, run_id: str) -> RunDebugState | None:
    return await _RUN_DEBUG_STATE.one(conn, run_id=run_id)


async def list_run_open_workflow_tasks(
    conn: Conn, *, run_id: str, limit: int
) -> list[OpenWorkflowTask]:
    return await _LIST_RUN_OPEN_WORKFLOW_TASKS.all(conn, run_id=run_id, limit=limit)


async def list_run_pending_activities(
    conn: Conn, *, run_id: str, limit: int
) -> list[PendingActivity]:
    return await _LIST_RUN_PENDING_ACTIVITIES.all(conn, run_id=run_id, limit=limit)


async def list_run_recent_failures(conn: Conn, *, run_id: str, limit: int) -> list[RecentFailure]:
    return await _LIST_RUN_RECENT_FAILURES.all(conn, run_id=run_id, limit=limit)


async def get_last_history_event(conn: Conn, *, run_id: str) -> EventRow | None:
    return await _GET_LAST_HISTORY_EVENT.one(conn, run_id=run_id)
