"""The worker roster (control-plane.md §10): what the control plane shows of registrations.

Read-only store operations (``op(conn, ...)``). A registration's reported status
is its stored one (``active``, ``draining``, ``deregistered``) unless its last
heartbeat is older than the stale window (``Settings.effective_worker_stale_after_s``,
the window task repair uses to recover a lost worker's leases): then it is
``stale``. ``stale`` is never stored. Deregistered workers have left the roster:
the list leaves them out unless asked for ``status=deregistered``; describe still
shows one (its stored status says so).
"""

from __future__ import annotations

from datetime import datetime

from dwtrio import wire
from dwtrio.errors import WorkerNotFoundError
from dwtrio.protocol.responses import OMIT, WorkerDescription, WorkerList
from dwtrio.store import workers as store
from dwtrio.store.pool import Conn
from dwtrio.store.workers import WorkerRow


def reported_status(row: WorkerRow) -> str:
    """``stale`` for a worker (not deregistered) past the stale window, else the stored status."""
    if row.is_stale and row.status != "deregistered":
        return "stale"
    return row.status


def _iso(value: datetime) -> str:
    rendered = wire.iso_z(value)
    assert rendered is not None
    return rendered


def describe_row(row: WorkerRow, *, with_updated_at: bool = False) -> WorkerDescription:
    return WorkerDescription(
        worker_id=row.worker_id,
        namespace=row.namespace,
        task_queue=row.task_queue,
        runtime=row.runtime,
        sdk_version=row.sdk_version,
        build_id=row.build_id or None,  # '' is the unversioned cohort, null on the wire
        supported_workflow_types=list(row.supported_workflow_types),
        workflow_definition_fingerprints=row.workflow_definition_fingerprints,
        supported_activity_types=list(row.supported_activity_types),
        max_concurrent_workflow_tasks=row.max_concurrent_workflow_tasks,
        max_concurrent_activity_tasks=row.max_concurrent_activity_tasks,
        status=reported_status(row),
        is_stale=row.is_stale,
        last_heartbeat_at=wire.iso_z(row.last_heartbeat_at),
        heartbeat_expires_at=wire.iso_z(row.heartbeat_expires_at),
        heartbeat_interval_seconds=row.heartbeat_interval_seconds,
        task_slots=row.task_slots,
        process_metrics=row.process_metrics,
        registered_at=_iso(row.created_at),
        updated_at=_iso(row.updated_at) if with_updated_at else OMIT,
    )


async def list_workers(
    conn: Conn, namespace: str, task_queue: str | None, status: str | None, stale_after_s: int
) -> WorkerList:
    """The namespace's workers, newest heartbeat first.

    ``status`` matches the stored status (so ``active`` includes workers reported
    ``stale``), or ``stale`` the workers past the window; None lists every worker
    that has not deregistered.
    """
    rows = await store.list_workers(conn, namespace, task_queue, status, stale_after_s)
    return WorkerList(
        namespace=namespace,
        stale_after_seconds=stale_after_s,
        workers=[describe_row(r) for r in rows],
    )


async def describe_worker(
    conn: Conn, namespace: str, worker_id: str, stale_after_s: int
) -> WorkerDescription:
    """One worker, with ``updated_at``.

    Raises:
        WorkerNotFoundError: the namespace has no registration with this id.
    """
    row = await store.get_worker(conn, namespace, worker_id, stale_after_s)
    if row is None:
        raise WorkerNotFoundError(
            f"Worker {worker_id!r} is not registered in namespace {namespace!r}.",
            worker_id=worker_id,
            namespace=namespace,
        )
    return describe_row(row, with_updated_at=True)
