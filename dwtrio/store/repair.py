"""Task repair (``schema/queries/repair.sql``): leases whose worker is gone."""

from __future__ import annotations

from datetime import datetime

import attrs

from dwtrio.store.activities import LockedActivityTask
from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class QueueRow:
    namespace: str
    task_queue: str


_EXPIRE_WORKFLOW_TASK_LEASES = query("expire_workflow_task_leases", QueueRow)
_CLAIM_EXPIRED_ACTIVITY_LEASE = query("claim_expired_activity_lease", LockedActivityTask)
_COUNT_TASK_REPAIR = query("count_task_repair")
_RELEASE_LOST_WORKER_WORKFLOW_TASKS = query("release_lost_worker_workflow_tasks", QueueRow)
_CLAIM_LOST_WORKER_ACTIVITY_LEASE = query("claim_lost_worker_activity_lease", LockedActivityTask)
_LIST_WORKER_ACTIVITY_LEASES = query("list_worker_activity_leases")
_CLAIM_WORKER_ACTIVITY_LEASE = query("claim_worker_activity_lease", LockedActivityTask)
_EXPIRE_RUN_WORKFLOW_TASK_LEASES = query("expire_run_workflow_task_leases", QueueRow)
_CLAIM_EXPIRED_RUN_ACTIVITY_LEASE = query("claim_expired_run_activity_lease", LockedActivityTask)
_MISSING_WORKFLOW_TASK_REASON = query("missing_workflow_task_reason")


async def expire_workflow_task_leases(conn: Conn, *, limit: int) -> list[QueueRow]:
    """Workflow tasks whose lease expired are ready again; one row (its queue) each."""
    return await _EXPIRE_WORKFLOW_TASK_LEASES.all(conn, limit=limit)


async def claim_expired_activity_lease(conn: Conn) -> LockedActivityTask | None:
    """Lock the activity task whose lease expired first."""
    return await _CLAIM_EXPIRED_ACTIVITY_LEASE.one(conn)


async def count_task_repair(conn: Conn, task_id: str) -> None:
    await _COUNT_TASK_REPAIR.execute(conn, id=task_id)


async def release_lost_worker_workflow_tasks(
    conn: Conn, *, stale_after_s: int, limit: int
) -> list[QueueRow]:
    """Workflow tasks leased to lost workers are ready again; one row (its queue) each."""
    return await _RELEASE_LOST_WORKER_WORKFLOW_TASKS.all(
        conn, stale_after_s=stale_after_s, limit=limit
    )


async def claim_lost_worker_activity_lease(
    conn: Conn, *, stale_after_s: int
) -> LockedActivityTask | None:
    """Lock an activity task leased to a lost worker (the lease ending first)."""
    return await _CLAIM_LOST_WORKER_ACTIVITY_LEASE.one(conn, stale_after_s=stale_after_s)


async def list_worker_activity_leases(conn: Conn, *, namespace: str, worker_id: str) -> list[str]:
    """The ids of the activity tasks leased to a worker now (not locked)."""
    rows = await _LIST_WORKER_ACTIVITY_LEASES.fetch(conn, namespace=namespace, worker_id=worker_id)
    return [r[0] for r in rows]


async def claim_worker_activity_lease(
    conn: Conn, *, task_id: str, namespace: str, worker_id: str
) -> LockedActivityTask | None:
    """Lock activity task ``task_id`` if it is still leased to this worker."""
    return await _CLAIM_WORKER_ACTIVITY_LEASE.one(
        conn, task_id=task_id, namespace=namespace, worker_id=worker_id
    )


async def expire_run_workflow_task_leases(conn: Conn, *, run_id: str) -> list[QueueRow]:
    """The run's workflow task is ready again if its lease expired; its queue, if so."""
    return await _EXPIRE_RUN_WORKFLOW_TASK_LEASES.all(conn, run_id=run_id)


async def claim_expired_run_activity_lease(conn: Conn, *, run_id: str) -> LockedActivityTask | None:
    """Lock the run's activity task whose lease expired first (skipped when held elsewhere)."""
    return await _CLAIM_EXPIRED_RUN_ACTIVITY_LEASE.one(conn, run_id=run_id)


async def missing_workflow_task_reason(conn: Conn, *, run_id: str) -> str | None:
    """Why the open run needs a workflow task it lacks, or None (``repair.sql``)."""
    reason: str | None = await _MISSING_WORKFLOW_TASK_REASON.fetchval(conn, run_id=run_id)
    return reason


@attrs.frozen
class RepairCandidates:
    expired_lease_count: int
    lost_worker_lease_count: int
    oldest_created_at: datetime | None
    observed_at: datetime


_REPAIR_CANDIDATES = query("repair_candidates", RepairCandidates)


async def repair_candidates(conn: Conn, *, stale_after_s: int) -> RepairCandidates:
    """What task repair would act on now, across namespaces (not locked)."""
    row = await _REPAIR_CANDIDATES.one(conn, stale_after_s=stale_after_s)
    assert row is not None  # an aggregate always has a row
    return row
