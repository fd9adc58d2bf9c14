"""Task queues as the control plane shows them (control-plane.md §9, docs/task-queues.md).

A task queue is not stored: it is what the task rows, worker registrations and
query tasks of a namespace name. Both views are read-only store operations
(``op(conn, ...)``) built from the same per-queue counts
(``store.task_queues.stats``):

* **stats**: the backlog is the ready tasks that are *due*; its age is the
  oldest one's. Leases count per kind, with those already expired; pollers are
  the registrations that have not deregistered, stale past the stale window
  (as on the worker roster, ``engine/workers.py``).
* **repair**: what dwtrio's task repair (``engine/repair.py``) will act on:
  expired leases, and unexpired leases of workers it counts as lost. dwtrio
  hands a task over in the statement that leases it, so no dispatch can fail
  (``dispatch_failed`` is always 0); ``dispatch_overdue`` counts due tasks that
  have waited one repair interval or longer, which with workers polling means
  none of them can take the task (busy, throttled, or not serving its type).
* **admission**: per kind, the workers' own slots (active, fresh pollers and
  their ``max_concurrent_*``) beside the server's caps
  (``engine.admission.server_budgets``), and a ``status`` by the first rule
  that holds (schedules-and-admission.md §2.5): ``throttled``,
  ``no_active_workers``, ``no_slots``, ``saturated``, ``accepting``. The caps'
  locks are Postgres advisory locks, always there, so ``unavailable`` never
  applies. Query tasks report their pending cap.
"""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio import wire
from dwtrio.engine.admission import server_budgets
from dwtrio.engine.repair import REPAIR_BATCH
from dwtrio.protocol.admission import AdmissionPolicy
from dwtrio.protocol.responses import (
    OldestReadyTask,
    PollerCounts,
    TaskKindCounts,
    TaskQueueDescription,
    TaskQueueLease,
    TaskQueueList,
    TaskQueuePoller,
    TaskQueueRepair,
    TaskQueueStats,
    TaskQueueSummary,
    TaskRepairPolicy,
)
from dwtrio.store import task_queues as store
from dwtrio.store.pool import Conn
from dwtrio.store.task_queues import LeaseRow, PollerRow, QueueStatsRow

#: Leases a description lists at most (the earliest to expire).
LEASE_LIMIT = 50


@attrs.frozen(kw_only=True)
class QueueView:
    """What the task-queue views take from the settings."""

    admission: AdmissionPolicy
    #: Seconds without a heartbeat before a worker is stale (and, if it registered,
    #: its leases are recovered).
    stale_after_s: int
    #: DW_TASK_REPAIR_INTERVAL_SECONDS: how often task repair runs; a due task that
    #: waited this long is dispatch_overdue.
    repair_interval_s: float
    #: DW_QUERY_TASK_MAX_PENDING_PER_QUEUE.
    query_max_pending: int


def age_label(seconds: int | None) -> str | None:
    """``42s``, ``3m07s`` or ``2h05m09s``; None without an age."""
    if seconds is None:
        return None
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def task_status(server_status: str, workers: int, slots: int, leased: int) -> str:
    """The admission status of one kind: the first rule of §2.5 that holds."""
    if server_status == "throttled":
        return "throttled"
    if workers == 0:
        return "no_active_workers"
    if slots <= 0:
        return "no_slots"
    if leased >= slots:
        return "saturated"
    return "accepting"


def _stats(row: QueueStatsRow, view: QueueView) -> TaskQueueStats:
    oldest = None
    if row.oldest_task_id is not None:
        assert row.oldest_task_kind is not None and row.oldest_workflow_id is not None
        assert row.oldest_run_id is not None and row.oldest_age_s is not None
        oldest = OldestReadyTask(
            task_id=row.oldest_task_id,
            task_type=row.oldest_task_kind,
            workflow_id=row.oldest_workflow_id,
            run_id=row.oldest_run_id,
            available_at=wire.iso_z(row.oldest_available_at),
            age_seconds=row.oldest_age_s,
        )
    return TaskQueueStats(
        approximate_backlog_count=row.workflow_ready_count + row.activity_ready_count,
        approximate_backlog_age=age_label(row.oldest_age_s),
        approximate_backlog_age_seconds=row.oldest_age_s,
        oldest_ready_task=oldest,
        workflow_tasks=TaskKindCounts(
            ready_count=row.workflow_ready_count,
            leased_count=row.workflow_leased_count,
            expired_lease_count=row.workflow_expired_count,
        ),
        activity_tasks=TaskKindCounts(
            ready_count=row.activity_ready_count,
            leased_count=row.activity_leased_count,
            expired_lease_count=row.activity_expired_count,
        ),
        pollers=PollerCounts(
            active_count=row.poller_active_count,
            stale_count=row.poller_stale_count,
            stale_after_seconds=view.stale_after_s,
        ),
    )


def queue_repair(row: QueueStatsRow, view: QueueView) -> TaskQueueRepair:
    """The ``repair`` block of one queue (also summed over a namespace's queues by the
    operator metrics, ``engine/system_metrics.py``)."""
    expired = row.workflow_expired_count + row.activity_expired_count
    candidates = expired + row.lost_worker_lease_count + row.overdue_count
    return TaskQueueRepair(
        candidates=candidates,
        dispatch_failed=0,
        expired_leases=expired,
        lost_worker_leases=row.lost_worker_lease_count,
        dispatch_overdue=row.overdue_count,
        oldest_lease_expired_at=wire.iso_z(row.oldest_lease_expired_at),
        # The oldest due task is the longest overdue one, when any is.
        oldest_dispatch_overdue_since=(
            wire.iso_z(row.oldest_available_at) if row.overdue_count else None
        ),
        needs_attention=candidates > 0,
        policy=TaskRepairPolicy(
            # 3, as the reference writes it; a fractional interval (0.5) as it is.
            redispatch_after_seconds=(
                int(view.repair_interval_s)
                if view.repair_interval_s.is_integer()
                else view.repair_interval_s
            ),
            lost_worker_after_seconds=view.stale_after_s,
            scan_limit=REPAIR_BATCH,
        ),
    )


def _task_admission(row: QueueStatsRow, kind: str, server: dict[str, Any]) -> dict[str, Any]:
    if kind == "workflow":
        slots, leased, ready = (
            row.workflow_slot_count,
            row.workflow_leased_count,
            row.workflow_ready_count,
        )
    else:
        slots, leased, ready = (
            row.activity_slot_count,
            row.activity_leased_count,
            row.activity_ready_count,
        )
    server = dict(server)
    server_status = server.pop("server_status")
    return {
        "budget_source": f"worker_registration.max_concurrent_{kind}_tasks",
        "server_budget_source": server.pop("server_budget_source"),
        "active_worker_count": row.active_worker_count,
        "configured_slot_count": slots,
        "leased_count": leased,
        "ready_count": ready,
        "available_slot_count": max(0, slots - leased),
        **server,
        "status": task_status(server_status, row.active_worker_count, slots, leased),
    }


def _query_admission(row: QueueStatsRow, view: QueueView) -> dict[str, Any]:
    cap, pending = view.query_max_pending, row.query_pending_count
    return {
        "budget_source": "server.query_tasks.max_pending_per_queue",
        "max_pending_per_queue": cap,
        "approximate_pending_count": pending,
        "remaining_pending_capacity": max(0, cap - pending),
        "lock_required": True,
        "lock_supported": True,
        "status": "full" if pending >= cap else "accepting",
    }


async def _admissions(
    conn: Conn, namespace: str, rows: list[QueueStatsRow], view: QueueView
) -> list[dict[str, Any]]:
    """The ``admission`` entry of each queue; the server caps of all of them are read
    in one statement."""
    kinds = ("workflow", "activity")
    budgets = [view.admission.budget(namespace, row.task_queue, k) for row in rows for k in kinds]
    servers = iter(await server_budgets(conn, budgets))
    return [
        {
            "workflow_tasks": _task_admission(row, "workflow", next(servers)),
            "activity_tasks": _task_admission(row, "activity", next(servers)),
            "query_tasks": _query_admission(row, view),
        }
        for row in rows
    ]


def _poller(p: PollerRow) -> TaskQueuePoller:
    return TaskQueuePoller(
        worker_id=p.worker_id,
        runtime=p.runtime,
        sdk_version=p.sdk_version,
        build_id=p.build_id or None,  # '' is the unversioned cohort, null on the wire
        last_heartbeat_at=wire.iso_z(p.last_heartbeat_at),
        heartbeat_expires_at=wire.iso_z(p.heartbeat_expires_at),
        status="stale" if p.is_stale else p.status,
        is_stale=p.is_stale,
        supported_workflow_types=list(p.supported_workflow_types),
        supported_activity_types=list(p.supported_activity_types),
        max_concurrent_workflow_tasks=p.max_concurrent_workflow_tasks,
        max_concurrent_activity_tasks=p.max_concurrent_activity_tasks,
    )


def _lease(lease: LeaseRow) -> TaskQueueLease:
    common: dict[str, Any] = {
        "task_id": lease.task_id,
        "task_type": lease.kind,
        "workflow_id": lease.workflow_id,
        "run_id": lease.run_id,
        "lease_owner": lease.lease_owner,
        "lease_expires_at": wire.iso_z(lease.lease_expires_at),
        "is_expired": lease.is_expired,
    }
    if lease.kind == "workflow":
        return TaskQueueLease(**common, workflow_task_attempt=lease.attempt)
    return TaskQueueLease(
        **common, activity_attempt_id=lease.activity_attempt_id, attempt_number=lease.attempt
    )


async def list_task_queues(conn: Conn, namespace: str, view: QueueView) -> TaskQueueList:
    """Every task queue of the namespace, by name, without pollers or leases."""
    names = await store.list_names(conn, namespace)
    rows = await store.stats(
        conn,
        namespace,
        names,
        stale_after_s=view.stale_after_s,
        overdue_after_s=view.repair_interval_s,
    )
    admissions = await _admissions(conn, namespace, rows, view)
    return TaskQueueList(
        namespace=namespace,
        task_queues=[
            TaskQueueSummary(
                name=row.task_queue,
                stats=_stats(row, view),
                repair=queue_repair(row, view),
                admission=admission,
            )
            for row, admission in zip(rows, admissions, strict=True)
        ],
    )


async def describe_task_queue(
    conn: Conn, namespace: str, task_queue: str, view: QueueView
) -> TaskQueueDescription:
    """One task queue in full; a queue nothing names is described empty, never refused."""
    (row,) = await store.stats(
        conn,
        namespace,
        [task_queue],
        stale_after_s=view.stale_after_s,
        overdue_after_s=view.repair_interval_s,
    )
    members = await store.members(
        conn, namespace, task_queue, stale_after_s=view.stale_after_s, lease_limit=LEASE_LIMIT
    )
    return TaskQueueDescription(
        name=task_queue,
        namespace=namespace,
        pollers=[_poller(p) for p in members.pollers],
        stats=_stats(row, view),
        current_leases=[_lease(lease) for lease in members.current_leases],
        repair=queue_repair(row, view),
        admission=(await _admissions(conn, namespace, [row], view))[0],
    )
