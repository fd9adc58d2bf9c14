"""Workflow tasks (``schema/queries/tasks.sql``): claims, leases, fencing locks, wakes.

The ``workflow_tasks`` table holds activity tasks too; what only they need is
in ``store/activities.py``. Every function takes the connection of the
caller's store operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query
from dwtrio.store.runs import LockedRun, joined_run_columns


@attrs.frozen
class ClaimedWorkflowTask:
    """A leased workflow task with what its wire body shows of its run."""

    id: str
    run_id: str
    attempt: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    workflow_update_id: str | None
    workflow_id: str
    workflow_type: str
    payload_codec: str | None
    arguments: str | None
    last_history_sequence: int


@attrs.frozen
class LockedTask:
    """A task locked for fencing, with its lease."""

    id: str
    namespace: str
    kind: str
    run_id: str
    state: str
    lease_owner: str | None
    lease_expires_at: datetime | None
    lease_expired: bool | None
    attempt: int
    receipt: dict[str, Any] | None
    failure_count: int
    workflow_update_id: str | None


_TASK_WIDTH = len(attrs.fields(LockedTask))


@attrs.frozen
class LockedTaskAndRun:
    """A workflow task and its run, locked together (task first)."""

    task: LockedTask
    run: LockedRun

    COLUMNS = tuple(f.name for f in attrs.fields(LockedTask)) + joined_run_columns()

    @classmethod
    def from_record(cls, record: Any) -> LockedTaskAndRun:
        return cls(LockedTask(*record[:_TASK_WIDTH]), LockedRun(*record[_TASK_WIDTH:]))


#: (namespace, task_queue, kind): the queue a released task goes back to.
ReleasedTo = tuple[str, str, str]

_OPEN_WORKFLOW_TASK_STATE = query("open_workflow_task_state")
_INSERT_WORKFLOW_TASK = query("insert_workflow_task")
_CLAIM_WORKFLOW_TASK = query("claim_workflow_task", ClaimedWorkflowTask)
_FIND_POLLED_WORKFLOW_TASK = query("find_polled_workflow_task", ClaimedWorkflowTask)
_LOCK_WORKFLOW_TASK_AND_RUN = query("lock_workflow_task_and_run", LockedTaskAndRun)
_LOCK_TASK = query("lock_task", LockedTask)
_COMPLETE_TASK = query("complete_task")
_REOFFER_WORKFLOW_TASK = query("reoffer_workflow_task")
_RELEASE_TASK = query("release_task")
_EXTEND_TASK_LEASE = query("extend_task_lease")
_WAKE_RUN = query("wake_run")


async def claim_workflow_task(
    conn: Conn,
    *,
    namespace: str,
    task_queue: str,
    worker_id: str,
    poll_request_id: str | None,
    workflow_types: Sequence[str],
    lease_s: int,
) -> ClaimedWorkflowTask | None:
    """Lease the oldest ready workflow task of the queue (of ``workflow_types``, if any)
    and mark its run running, in one statement."""
    return await _CLAIM_WORKFLOW_TASK.one(
        conn,
        namespace=namespace,
        task_queue=task_queue,
        worker_id=worker_id,
        poll_request_id=poll_request_id,
        workflow_types=list(workflow_types),
        lease_s=lease_s,
    )


async def find_polled_workflow_task(
    conn: Conn, *, worker_id: str, poll_request_id: str, namespace: str, task_queue: str
) -> ClaimedWorkflowTask | None:
    """The workflow task this poll already leased, on an open run."""
    return await _FIND_POLLED_WORKFLOW_TASK.one(
        conn,
        worker_id=worker_id,
        poll_request_id=poll_request_id,
        namespace=namespace,
        task_queue=task_queue,
    )


async def lock_task(conn: Conn, task_id: str) -> LockedTask | None:
    return await _LOCK_TASK.one(conn, id=task_id)


async def lock_workflow_task_and_run(conn: Conn, task_id: str) -> LockedTaskAndRun | None:
    return await _LOCK_WORKFLOW_TASK_AND_RUN.one(conn, id=task_id)


async def complete_task(conn: Conn, task_id: str, *, receipt: dict[str, Any] | None) -> None:
    await _COMPLETE_TASK.execute(conn, id=task_id, receipt=receipt)


async def reoffer_workflow_task(
    conn: Conn, task_id: str, *, backoff_s: int, failure: dict[str, Any]
) -> None:
    await _REOFFER_WORKFLOW_TASK.execute(conn, id=task_id, backoff_s=backoff_s, failure=failure)


async def release_task(
    conn: Conn, task_id: str, *, attempt: int, lease_owner: str
) -> ReleasedTo | None:
    """Undo a lease still held by ``lease_owner`` at ``attempt``; the queue to wake."""
    row = await _RELEASE_TASK.fetchrow(conn, id=task_id, attempt=attempt, lease_owner=lease_owner)
    return None if row is None else (row[0], row[1], row[2])


async def extend_task_lease(conn: Conn, task_id: str, *, lease_s: int) -> datetime:
    """The new lease expiry, ``lease_s`` from now."""
    expires: datetime = await _EXTEND_TASK_LEASE.fetchval(conn, id=task_id, lease_s=lease_s)
    return expires


async def open_workflow_task_state(conn: Conn, run_id: str) -> str | None:
    """``ready`` or ``leased`` for the run's open workflow task; None without one."""
    state: str | None = await _OPEN_WORKFLOW_TASK_STATE.fetchval(conn, run_id=run_id)
    return state


async def insert_workflow_task(conn: Conn, task_id: str, run: LockedRun) -> None:
    """A ready workflow task for ``run``."""
    await _INSERT_WORKFLOW_TASK.execute(
        conn,
        id=task_id,
        namespace=run.namespace,
        task_queue=run.task_queue,
        run_id=run.id,
        workflow_id=run.workflow_id,
        workflow_type=run.workflow_type,
        compatibility=run.compatibility,
    )


async def wake_run(conn: Conn, run: LockedRun, *, task_id: str) -> str | None:
    """Wake a locked open run (see the query); ``task_id`` when it created that task."""
    created: str | None = await _WAKE_RUN.fetchval(
        conn,
        run_id=run.id,
        task_id=task_id,
        namespace=run.namespace,
        task_queue=run.task_queue,
        workflow_id=run.workflow_id,
        workflow_type=run.workflow_type,
        compatibility=run.compatibility,
    )
    return created
