"""Sync match (``schema/queries/handoffs.sql``): a task created by the caller's
transaction, leased in that transaction to the worker of a parked poll.

Each statement leases one task by id under the conditions of its kind's claim
statement and returns what that claim returns, so the engine builds the same
wire body (see ``store/offers.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from dwtrio.store.activities import ClaimedActivity
from dwtrio.store.pool import Conn, note_new_events
from dwtrio.store.queries import query
from dwtrio.store.tasks import ClaimedWorkflowTask

_LEASE_CREATED_WORKFLOW_TASK = query("lease_created_workflow_task", ClaimedWorkflowTask)
_LEASE_CREATED_ACTIVITY_TASK = query("lease_created_activity_task", ClaimedActivity)


async def lease_created_workflow_task(
    conn: Conn,
    task_id: str,
    *,
    namespace: str,
    task_queue: str,
    worker_id: str,
    poll_request_id: str | None,
    workflow_types: Sequence[str],
    lease_s: int,
) -> ClaimedWorkflowTask | None:
    """Lease the ready workflow task ``task_id`` to ``worker_id`` and mark its run
    running; None when that worker's claim could not take it (not of
    ``workflow_types``, when given)."""
    return await _LEASE_CREATED_WORKFLOW_TASK.one(
        conn,
        task_id=task_id,
        namespace=namespace,
        task_queue=task_queue,
        worker_id=worker_id,
        poll_request_id=poll_request_id,
        workflow_types=list(workflow_types),
        lease_s=lease_s,
    )


async def lease_created_activity_task(
    conn: Conn,
    task_id: str,
    *,
    namespace: str,
    task_queue: str,
    worker_id: str,
    poll_request_id: str | None,
    default_lease_s: int,
    attempt_id: str,
    event_id: str,
) -> ClaimedActivity | None:
    """Lease the ready activity task ``task_id`` to ``worker_id``, open attempt
    ``attempt_id`` and record ActivityStarted (``event_id``); None when that
    worker's claim could not take it."""
    claimed = await _LEASE_CREATED_ACTIVITY_TASK.one(
        conn,
        task_id=task_id,
        namespace=namespace,
        task_queue=task_queue,
        worker_id=worker_id,
        poll_request_id=poll_request_id,
        default_lease_s=default_lease_s,
        attempt_id=attempt_id,
        event_id=event_id,
    )
    if claimed is not None and claimed.run_open:
        note_new_events(claimed.run_id)
    return claimed
