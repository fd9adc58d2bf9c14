"""Task queues as the control plane reads them (``schema/queries/task_queues.sql``).

A task queue is not stored: it is the task rows, worker registrations and
query tasks that name it. The reads here are all index scans of the partial
indexes the claims use, so a queue with a deep backlog costs one index-only
count, not a walk of its rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class QueueStatsRow:
    """Counts of one queue (``task_queue_stats``); the oldest_* fields are None without a
    due ready task."""

    task_queue: str
    #: Ready tasks that are due (available_at <= now()).
    workflow_ready_count: int
    activity_ready_count: int
    #: Due ready tasks of either kind waiting at least the overdue window.
    overdue_count: int
    oldest_task_id: str | None
    oldest_task_kind: str | None
    oldest_workflow_id: str | None
    oldest_run_id: str | None
    oldest_available_at: datetime | None
    oldest_age_s: int | None
    workflow_leased_count: int
    workflow_expired_count: int
    activity_leased_count: int
    activity_expired_count: int
    oldest_lease_expired_at: datetime | None
    #: Unexpired leases of workers task repair counts as lost.
    lost_worker_lease_count: int
    #: Registrations (not deregistered) with a fresh heartbeat, and without one.
    poller_active_count: int
    poller_stale_count: int
    #: Fresh registrations with status active, and their slots per kind.
    active_worker_count: int
    workflow_slot_count: int
    activity_slot_count: int
    query_pending_count: int


@attrs.frozen
class PollerRow:
    worker_id: str
    runtime: str
    sdk_version: str | None
    #: '' is the unversioned cohort.
    build_id: str
    last_heartbeat_at: datetime | None
    heartbeat_expires_at: datetime | None
    #: The stored status: active or draining.
    status: str
    is_stale: bool
    supported_workflow_types: list[str]
    supported_activity_types: list[str]
    max_concurrent_workflow_tasks: int
    max_concurrent_activity_tasks: int


@attrs.frozen
class LeaseRow:
    task_id: str
    kind: str
    workflow_id: str
    run_id: str
    lease_owner: str
    lease_expires_at: datetime
    is_expired: bool
    #: workflow_task_attempt of a workflow task, attempt_number of an activity task.
    attempt: int
    activity_attempt_id: str | None


@attrs.frozen
class QueueMembers:
    """A queue's pollers and its earliest-expiring leases (``task_queue_members``)."""

    COLUMNS = ("pollers", "current_leases")

    pollers: list[PollerRow]
    current_leases: list[LeaseRow]

    @classmethod
    def from_record(cls, record: Any) -> QueueMembers:
        pollers, leases = record
        return cls(
            [PollerRow(*p) for p in pollers or ()],
            [LeaseRow(*lease) for lease in leases or ()],
        )


_LIST_TASK_QUEUE_NAMES = query("list_task_queue_names")
_TASK_QUEUE_STATS = query("task_queue_stats", QueueStatsRow)
_TASK_QUEUE_MEMBERS = query("task_queue_members", QueueMembers)


async def list_names(conn: Conn, namespace: str) -> list[str]:
    """The namespace's task queues by name: with ready or leased tasks, or polled."""
    return [r[0] for r in await _LIST_TASK_QUEUE_NAMES.fetch(conn, namespace=namespace)]


async def stats(
    conn: Conn,
    namespace: str,
    task_queues: list[str],
    *,
    stale_after_s: int,
    overdue_after_s: float,
) -> list[QueueStatsRow]:
    """One row per queue of ``task_queues``, in that order."""
    return await _TASK_QUEUE_STATS.all(
        conn,
        namespace=namespace,
        task_queues=task_queues,
        stale_after_s=stale_after_s,
        overdue_after_s=overdue_after_s,
    )


async def members(
    conn: Conn, namespace: str, task_queue: str, *, stale_after_s: int, lease_limit: int
) -> QueueMembers:
    row = await _TASK_QUEUE_MEMBERS.one(
        conn,
        namespace=namespace,
        task_queue=task_queue,
        stale_after_s=stale_after_s,
        lease_limit=lease_limit,
    )
    assert row is not None  # a SELECT without FROM: always one row
    return row
