"""Operator metrics and system health of a namespace (control-plane.md §11,
cluster-info-and-readiness.md §3.8, docs/operations.md).

What the database says is read by :func:`read_facts`, in one store call of a
handful of bounded statements:

* **runs** by status from the counters the ``workflow_runs`` triggers keep
  (migration 0007): a few dozen rows, however many runs there are;
* **tasks, backlog and repair** from the task queues' own statement
  (``store.task_queues.stats``, index ranges of the claim and lease indexes per
  queue), summed over the namespace's queues, with the repair rules of
  ``engine/task_queues.py`` (:func:`~dwtrio.engine.task_queues.queue_repair`);
* **workers** from the namespace's registrations (stale past the stale window,
  as the worker roster says);
* **schedules** that are due and have not fired, from the due range of their index;
* **backend** facts (Postgres version, connections, the newest migration).

The rest is pure: :func:`operator_metrics` lays the facts out, and
:func:`health` turns them, with what the process knows of itself (its loops, its
wake bus, its pool), into checks with a status each, an overall status and the
HTTP status that goes with it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import attrs

from dwtrio import wire
from dwtrio.engine.task_queues import QueueView, queue_repair
from dwtrio.store import migrate
from dwtrio.store import system_metrics as store
from dwtrio.store import task_queues as queues_store
from dwtrio.store.pool import Conn
from dwtrio.store.system_metrics import BackendFactsRow, ScheduleLagRow, WorkerCountsRow
from dwtrio.store.task_queues import QueueStatsRow

HEALTH_SCHEMA: Final = "durable-workflow.v2.coordination-health.contract"
#: The closed statuses a run can end in, in the order the metrics list them.
CLOSED_STATUSES: Final = ("completed", "failed", "cancelled", "terminated")

OK, WARNING, ERROR, UNKNOWN = "ok", "warning", "error", "unknown"
#: Checks whose failure means the server cannot be trusted with work (503).
CORRECTNESS, ACCELERATION = "correctness", "acceleration"


@attrs.frozen(kw_only=True)
class MetricsView:
    """What the metrics and the health checks take from the settings."""

    queues: QueueView
    #: DW_HEALTH_LOOP_STALL_SECONDS.
    loop_stall_s: float
    #: DW_HEALTH_BACKLOG_AGE_SECONDS.
    backlog_age_s: float
    #: DW_HEALTH_SCHEDULE_LAG_SECONDS.
    schedule_lag_s: float


@attrs.frozen(kw_only=True)
class NamespaceFacts:
    """What the database says about a namespace (and itself), read in one store call."""

    runs: dict[str, int]
    queues: list[QueueStatsRow]
    workers: WorkerCountsRow
    schedules: ScheduleLagRow
    backend: BackendFactsRow
    pending_migrations: list[str]


@attrs.frozen(kw_only=True)
class LoopState:
    """One background loop of this process as the health checks see it."""

    name: str
    interval_s: float
    ticks: int
    failures: int
    consecutive_failures: int
    #: Seconds the pass in progress has run; None while the loop sleeps.
    running_for_s: float | None
    #: Seconds past the end of the loop's sleep (0 when not late); None during a pass.
    late_by_s: float | None
    last_ok_unix: float | None
    last_error: str | None
    #: What the loop's passes handled in this process (timers fired, runs pruned, ...).
    items: int = 0


async def read_facts(
    conn: Conn, namespace: str, view: MetricsView, *, migrations: bool = False
) -> NamespaceFacts:
    """Every database figure of the metrics and of the health checks (``migrations``:
    also the migrations not applied yet, which only the health checks need)."""
    names = await queues_store.list_names(conn, namespace)
    rows = await queues_store.stats(
        conn,
        namespace,
        names,
        stale_after_s=view.queues.stale_after_s,
        overdue_after_s=view.queues.repair_interval_s,
    )
    return NamespaceFacts(
        runs=await store.run_status_counts(conn, namespace),
        queues=rows,
        workers=await store.worker_counts(conn, namespace, stale_after_s=view.queues.stale_after_s),
        schedules=await store.schedule_lag(conn, namespace, late_after_s=view.schedule_lag_s),
        backend=await store.backend_facts(conn),
        pending_migrations=await migrate.pending_migrations(conn) if migrations else [],
    )


def unix_iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return wire.iso_z(datetime.fromtimestamp(seconds, UTC))


# --- operator metrics -----------------------------------------------------------------


def runs_metrics(counts: dict[str, int]) -> dict[str, int]:
    """Runs by status: ``running`` is every open run (pending, running or waiting)."""
    out = {"total": sum(counts.values()), "running": counts.get("open", 0)}
    for status in CLOSED_STATUSES:
        out[status] = counts.get(status, 0)
    return out


@attrs.frozen
class _Totals:
    """The namespace's queues added up."""

    workflow_ready: int
    activity_ready: int
    workflow_leased: int
    activity_leased: int
    workflow_expired: int
    activity_expired: int
    lost_worker_leases: int
    dispatch_overdue: int
    oldest: QueueStatsRow | None
    oldest_lease_expired_at: datetime | None


def _totals(rows: list[QueueStatsRow]) -> _Totals:
    with_backlog = [r for r in rows if r.oldest_available_at is not None]
    expired_at = [r.oldest_lease_expired_at for r in rows if r.oldest_lease_expired_at]
    return _Totals(
        workflow_ready=sum(r.workflow_ready_count for r in rows),
        activity_ready=sum(r.activity_ready_count for r in rows),
        workflow_leased=sum(r.workflow_leased_count for r in rows),
        activity_leased=sum(r.activity_leased_count for r in rows),
        workflow_expired=sum(r.workflow_expired_count for r in rows),
        activity_expired=sum(r.activity_expired_count for r in rows),
        lost_worker_leases=sum(r.lost_worker_lease_count for r in rows),
        dispatch_overdue=sum(r.overdue_count for r in rows),
        oldest=min(
            with_backlog, key=lambda r: r.oldest_available_at or datetime.max.replace(tzinfo=UTC)
        )
        if with_backlog
        else None,
        oldest_lease_expired_at=min(expired_at) if expired_at else None,
    )


def tasks_metrics(rows: list[QueueStatsRow]) -> dict[str, Any]:
    t = _totals(rows)
    return {
        "task_queues": len(rows),
        "ready": t.workflow_ready + t.activity_ready,
        "leased": t.workflow_leased + t.activity_leased,
        "lease_expired": t.workflow_expired + t.activity_expired,
        "dispatch_overdue": t.dispatch_overdue,
        "workflow_tasks": {
            "ready": t.workflow_ready,
            "leased": t.workflow_leased,
            "lease_expired": t.workflow_expired,
        },
        "activity_tasks": {
            "ready": t.activity_ready,
            "leased": t.activity_leased,
            "lease_expired": t.activity_expired,
        },
    }


def backlog_metrics(rows: list[QueueStatsRow]) -> dict[str, Any]:
    t = _totals(rows)
    oldest = t.oldest
    return {
        "runnable_tasks": t.workflow_ready + t.activity_ready,
        "leased_tasks": t.workflow_leased + t.activity_leased,
        "oldest_ready_task_age_seconds": oldest.oldest_age_s if oldest else None,
        "oldest_ready_task_available_at": wire.iso_z(oldest.oldest_available_at)
        if oldest
        else None,
        "oldest_ready_task_queue": oldest.task_queue if oldest else None,
        "oldest_ready_task_id": oldest.oldest_task_id if oldest else None,
    }


def repair_metrics(rows: list[QueueStatsRow], view: QueueView) -> dict[str, Any]:
    """The queues' repair blocks (``engine.task_queues.queue_repair``) added up."""
    per_queue = [queue_repair(row, view) for row in rows]
    expired_at = [r.oldest_lease_expired_at for r in per_queue if r.oldest_lease_expired_at]
    overdue_since = [
        r.oldest_dispatch_overdue_since for r in per_queue if r.oldest_dispatch_overdue_since
    ]
    candidates = sum(r.candidates for r in per_queue)
    return {
        "candidates": candidates,
        "expired_leases": sum(r.expired_leases for r in per_queue),
        "lost_worker_leases": sum(r.lost_worker_leases for r in per_queue),
        "dispatch_overdue": sum(r.dispatch_overdue for r in per_queue),
        "dispatch_failed": 0,
        "oldest_lease_expired_at": min(expired_at) if expired_at else None,
        "oldest_dispatch_overdue_since": min(overdue_since) if overdue_since else None,
        "queues_needing_attention": sum(1 for r in per_queue if r.needs_attention),
        "needs_attention": candidates > 0,
    }


def workers_metrics(row: WorkerCountsRow, stale_after_s: int) -> dict[str, Any]:
    return {
        "active": row.active_count,
        "draining": row.draining_count,
        "stale": row.stale_count,
        "stale_after_seconds": stale_after_s,
    }


def schedules_metrics(row: ScheduleLagRow, late_after_s: float) -> dict[str, Any]:
    return {
        "due": row.due_count,
        "late": row.late_count,
        "late_after_seconds": late_after_s,
        "oldest_next_fire_at": wire.iso_z(row.oldest_next_fire_at),
        "max_lag_seconds": row.max_lag_s,
    }


def database_metrics(row: BackendFactsRow) -> dict[str, Any]:
    return {
        "driver": "postgresql",
        "server_version": row.server_version,
        "server_version_num": row.server_version_num,
        "max_connections": row.max_connections,
        "database_connections": row.database_connections,
        "schema_version": row.schema_version,
    }


def operator_metrics(
    facts: NamespaceFacts, view: MetricsView, process: dict[str, Any]
) -> dict[str, Any]:
    """The ``operator_metrics`` object: the facts laid out, with ``process`` (what this
    process knows: ``backend`` additions and ``structural_limits``) merged in."""
    backend = {"database": database_metrics(facts.backend), **process["backend"]}
    return {
        "generated_at": wire.iso_z(wire.now_utc()),
        "runs": runs_metrics(facts.runs),
        "tasks": tasks_metrics(facts.queues),
        "backlog": backlog_metrics(facts.queues),
        "repair": repair_metrics(facts.queues, view.queues),
        "workers": workers_metrics(facts.workers, view.queues.stale_after_s),
        "schedules": schedules_metrics(facts.schedules, view.schedule_lag_s),
        "backend": backend,
        "structural_limits": process["structural_limits"],
    }


# --- health ---------------------------------------------------------------------------


def _check(name: str, status: str, category: str, blocking: bool, **detail: Any) -> dict[str, Any]:
    return {"name": name, "status": status, "category": category, "blocking": blocking, **detail}


def loop_check(loop: LoopState, stall_s: float) -> dict[str, Any]:
    """A background loop is healthy while its passes end and start on time and the
    last ones did not all fail."""
    detail: dict[str, Any] = {
        "interval_seconds": loop.interval_s,
        "passes": loop.ticks,
        "failed_passes": loop.failures,
        "consecutive_failures": loop.consecutive_failures,
        "last_successful_pass_at": unix_iso(loop.last_ok_unix),
        "pass_running_seconds": None
        if loop.running_for_s is None
        else round(loop.running_for_s, 3),
        "late_seconds": None if loop.late_by_s is None else round(loop.late_by_s, 3),
    }
    problems = []
    if loop.running_for_s is not None and loop.running_for_s >= stall_s:
        problems.append(f"a pass has run {loop.running_for_s:.0f} s")
    if loop.late_by_s is not None and loop.late_by_s >= stall_s:
        problems.append(f"the next pass is {loop.late_by_s:.0f} s late")
    if loop.consecutive_failures >= 3:
        problems.append(f"the last {loop.consecutive_failures} passes failed ({loop.last_error})")
    if problems:
        return _check(
            f"background_loop.{loop.name}",
            WARNING,
            CORRECTNESS,
            False,
            message="; ".join(problems),
            **detail,
        )
    return _check(f"background_loop.{loop.name}", OK, CORRECTNESS, False, **detail)


def _database_checks(facts: NamespaceFacts | None, error: str | None) -> list[dict[str, Any]]:
    if facts is None:
        return [
            _check("database", ERROR, CORRECTNESS, True, message=error or "unavailable"),
            _check(
                "migrations", ERROR, CORRECTNESS, True, message="not checked: database unavailable"
            ),
        ]
    checks = [_check("database", OK, CORRECTNESS, True)]
    if facts.pending_migrations:
        checks.append(
            _check(
                "migrations",
                ERROR,
                CORRECTNESS,
                True,
                message="migrations not applied; run `dwtrio bootstrap`",
                pending_migrations=facts.pending_migrations,
            )
        )
    else:
        checks.append(
            _check("migrations", OK, CORRECTNESS, True, schema_version=facts.backend.schema_version)
        )
    return checks


def _work_checks(facts: NamespaceFacts, view: MetricsView) -> list[dict[str, Any]]:
    t = _totals(facts.queues)
    age = t.oldest.oldest_age_s if t.oldest else None
    backlog = _check(
        "task_backlog_age",
        WARNING if age is not None and age >= view.backlog_age_s else OK,
        CORRECTNESS,
        False,
        oldest_ready_task_age_seconds=age,
        threshold_seconds=view.backlog_age_s,
        runnable_tasks=t.workflow_ready + t.activity_ready,
    )
    # Task repair takes expired leases every interval: one still there after a few
    # intervals is one repair is not getting to.
    grace_s = max(3 * view.queues.repair_interval_s, 10.0)
    expired = t.workflow_expired + t.activity_expired
    overdue_s = (
        (wire.now_utc() - t.oldest_lease_expired_at).total_seconds()
        if t.oldest_lease_expired_at
        else None
    )
    leases = _check(
        "expired_leases",
        WARNING if overdue_s is not None and overdue_s >= grace_s else OK,
        CORRECTNESS,
        False,
        expired_leases=expired,
        oldest_lease_expired_at=wire.iso_z(t.oldest_lease_expired_at),
        repair_grace_seconds=grace_s,
    )
    workers = _check(
        "stale_workers",
        WARNING if t.lost_worker_leases else OK,
        CORRECTNESS,
        False,
        stale_workers=facts.workers.stale_count,
        active_workers=facts.workers.active_count,
        leases_held_by_stale_workers=t.lost_worker_leases,
    )
    s = facts.schedules
    schedules = _check(
        "schedule_lag",
        WARNING if s.late_count else OK,
        CORRECTNESS,
        False,
        due_schedules=s.due_count,
        late_schedules=s.late_count,
        oldest_next_fire_at=wire.iso_z(s.oldest_next_fire_at),
        max_lag_seconds=s.max_lag_s,
        threshold_seconds=view.schedule_lag_s,
    )
    for check in (backlog, leases, workers, schedules):
        if check["status"] != OK:
            check["message"] = _MESSAGES[check["name"]]
    return [backlog, leases, workers, schedules]


_MESSAGES = {
    "task_backlog_age": "the oldest due task has waited past the threshold",
    "expired_leases": "expired leases are waiting longer than task repair should take",
    "stale_workers": "workers that stopped heartbeating still hold leases",
    "schedule_lag": "active schedules are due and have not fired",
}


def _not_checked(name: str) -> dict[str, Any]:
    return _check(name, UNKNOWN, CORRECTNESS, False, message="not checked: database unavailable")


def _rollup(checks: list[dict[str, Any]], category: str) -> dict[str, Any]:
    mine = [c for c in checks if c["category"] == category]
    statuses = {c["status"] for c in mine}
    status = ERROR if ERROR in statuses else WARNING if statuses - {OK} else OK
    return {"status": status, "check_count": len(mine)}


def health(
    namespace: str,
    facts: NamespaceFacts | None,
    database_error: str | None,
    loops: list[LoopState],
    wake_bus: dict[str, Any],
    view: MetricsView,
) -> dict[str, Any]:
    """The health body: every check, the rollups, and ``http_status`` (503 when a
    blocking check fails, else 200)."""
    checks = _database_checks(facts, database_error)
    checks.append(
        _check(
            "wake_bus",
            WARNING if wake_bus.get("degraded") or wake_bus.get("status") != OK else OK,
            ACCELERATION,
            False,
            store=wake_bus.get("store"),
            **({"message": wake_bus["message"]} if "message" in wake_bus else {}),
        )
    )
    checks.extend(loop_check(loop, view.loop_stall_s) for loop in loops)
    if facts is not None:
        checks.extend(_work_checks(facts, view))
    else:
        checks.extend(
            _not_checked(n)
            for n in ("task_backlog_age", "expired_leases", "stale_workers", "schedule_lag")
        )
    errors = [c["name"] for c in checks if c["status"] == ERROR]
    warnings = [c["name"] for c in checks if c["status"] in (WARNING, UNKNOWN)]
    blocking_failed = any(c["blocking"] and c["status"] == ERROR for c in checks)
    status = ERROR if errors else WARNING if warnings else OK
    w = facts.workers if facts is not None else None
    return {
        "schema": HEALTH_SCHEMA,
        "version": 1,
        "namespace_scope": namespace,
        "status": status,
        "http_status": 503 if blocking_failed else 200,
        "generated_at": wire.iso_z(wire.now_utc()),
        "categories": {
            CORRECTNESS: _rollup(checks, CORRECTNESS),
            ACCELERATION: _rollup(checks, ACCELERATION),
        },
        "warning_checks": warnings,
        "error_checks": errors,
        "checks": checks,
        "routing_drains": {
            "queues_with_drains": len(w.draining_queues) if w else None,
            "draining_build_id_count": w.draining_build_id_count if w else None,
            "active_worker_count": w.active_count if w else None,
            "draining_worker_count": w.draining_count if w else None,
            "stale_worker_count": w.stale_count if w else None,
            "queues": list(w.draining_queues) if w else [],
        },
    }
