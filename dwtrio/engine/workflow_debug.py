"""The debug snapshot of one run (control-plane.md §5.5; docs/workflow-maintenance.md).

A bounded, read-only view: the run and what it waits on, its open workflow
tasks (at most 25) and pending activities (at most 25), its task queue as
``GET /api/task-queues/{tq}`` describes it (``engine/task_queues.py``), its
latest failures (at most 10), the newest history event, and findings.

Findings (``{severity, code, message}``):

* ``missing_workflow_task`` (error): the run is open, has no ready or leased
  workflow task, and needs one (``missing_workflow_task_reason`` in
  ``repair.sql``, the rule ``POST .../repair`` acts on).
* ``expired_leases`` (error): a task of the run is leased past its expiry.
* ``no_active_pollers`` (error): a task of the run on the run's task queue is
  due and nobody polls that queue.
* ``workflow_task_failing`` (warning): the open workflow task failed before.
* ``dispatch_overdue`` (warning): a due task of the run has waited a task-repair
  interval or longer although the queue has pollers.
* ``activity_retrying`` (info): a pending activity is past its first attempt.
* ``archived`` (info): the run is archived.

``diagnostic_status`` is the first that holds: ``terminal`` (the run is
closed), ``needs_attention`` (an error finding), ``running`` (a task of the run
is leased to a worker), ``queue_backlog`` (a task of the run is due and the
queue's oldest due task belongs to another run), ``pending_work`` (a task of the
run is ready, due or scheduled for later), ``waiting`` (open with nothing ready
or leased: it waits for a timer, an activity, a child, a signal or an update).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import attrs

from dwtrio import wire
from dwtrio.engine.task_queues import QueueView, describe_task_queue
from dwtrio.protocol.responses import (
    OMIT,
    DebugActivity,
    DebugEvent,
    DebugExecution,
    DebugFailure,
    DebugFinding,
    DebugWait,
    DebugWorkflowTask,
    TaskQueueDescription,
    WorkflowDebug,
)
from dwtrio.store import diagnostics, repair
from dwtrio.store import workflows as store
from dwtrio.store.diagnostics import OpenWorkflowTask, PendingActivity, RecentFailure, RunDebugState
from dwtrio.store.pool import Conn
from dwtrio.store.runs import OPEN_STATUSES
from dwtrio.store.workflows import RunView

MAX_WORKFLOW_TASKS: Final = 25
MAX_ACTIVITIES: Final = 25
MAX_FAILURES: Final = 10
LIMITS: Final = {
    "pending_workflow_tasks": MAX_WORKFLOW_TASKS,
    "pending_activities": MAX_ACTIVITIES,
    "recent_failures": MAX_FAILURES,
}


@attrs.frozen(kw_only=True)
class DebugRequest:
    namespace: str
    workflow_id: str
    #: None: the current run.
    run_id: str | None = None
    include_last_event_payload: bool = False


async def debug_run(conn: Conn, req: DebugRequest, view: QueueView) -> WorkflowDebug | None:
    """The snapshot of the run ``req`` names; None when there is no such run here."""
    run = await store.get_run_view(conn, req.namespace, req.workflow_id, req.run_id)
    if run is None:
        return None
    state = await diagnostics.run_debug_state(conn, run_id=run.run_id)
    assert state is not None  # the run was just read
    tasks = await diagnostics.list_run_open_workflow_tasks(
        conn, run_id=run.run_id, limit=MAX_WORKFLOW_TASKS
    )
    activities = await diagnostics.list_run_pending_activities(
        conn, run_id=run.run_id, limit=MAX_ACTIVITIES
    )
    failures = await diagnostics.list_run_recent_failures(
        conn, run_id=run.run_id, limit=MAX_FAILURES
    )
    last = await diagnostics.get_last_history_event(conn, run_id=run.run_id)
    missing = await repair.missing_workflow_task_reason(conn, run_id=run.run_id)
    queue = await describe_task_queue(conn, req.namespace, run.task_queue, view)
    findings = _findings(run, state, tasks, activities, queue, missing, view)
    return WorkflowDebug(
        generated_at=wire.iso_z(datetime.now(UTC)),
        workflow_id=run.workflow_id,
        run_id=run.run_id,
        namespace=run.namespace,
        diagnostic_status=_status(run, state, queue, findings),
        execution=_execution(run, state, tasks),
        pending_workflow_tasks=[_task(t) for t in tasks],
        pending_activities=[_activity(a) for a in activities],
        task_queue=queue,
        recent_failures=[_failure(f) for f in failures],
        compatibility=run.compatibility,
        findings=findings,
        last_event=None
        if last is None
        else DebugEvent(
            sequence=last.sequence,
            event_type=last.event_type,
            timestamp=wire.iso_z(last.recorded_at),
            payload=last.payload if req.include_last_event_payload else OMIT,
        ),
        limits=dict(LIMITS),
    )


def _status(
    run: RunView, state: RunDebugState, queue: TaskQueueDescription, findings: list[DebugFinding]
) -> str:
    if run.status not in OPEN_STATUSES:
        return "terminal"
    if any(f.severity == "error" for f in findings):
        return "needs_attention"
    if state.leased_tasks:
        return "running"
    oldest = queue.stats.oldest_ready_task
    if state.due_tasks and oldest is not None and oldest.run_id != run.run_id:
        return "queue_backlog"
    if state.ready_tasks:
        return "pending_work"
    return "waiting"


def _findings(
    run: RunView,
    state: RunDebugState,
    tasks: list[OpenWorkflowTask],
    activities: list[PendingActivity],
    queue: TaskQueueDescription,
    missing: str | None,
    view: QueueView,
) -> list[DebugFinding]:
    out: list[DebugFinding] = []

    def add(severity: str, code: str, message: str) -> None:
        out.append(DebugFinding(severity=severity, code=code, message=message))

    if missing is not None:
        add(
            "error",
            "missing_workflow_task",
            f"The run is open and has no workflow task although it needs one ({missing}); "
            "POST .../repair creates it.",
        )
    if state.expired_leases:
        add(
            "error",
            "expired_leases",
            f"{state.expired_leases} task lease(s) of this run expired without the worker "
            "finishing; task repair hands them out again, or POST .../repair does it now.",
        )
    on_queue_due = any(t.state == "ready" and not t.lease_expired for t in tasks) or any(
        a.task_state == "ready" and a.task_queue == run.task_queue for a in activities
    )
    if state.due_tasks and on_queue_due and queue.stats.pollers.active_count == 0:
        add(
            "error",
            "no_active_pollers",
            f"Work of this run is ready on task queue {run.task_queue!r} and no worker polls it.",
        )
    failing = [t for t in tasks if t.failure_count]
    if failing:
        add(
            "warning",
            "workflow_task_failing",
            f"The workflow task failed {failing[0].failure_count} time(s); see recent_failures.",
        )
    if (
        state.oldest_due_at is not None
        and queue.stats.pollers.active_count
        and (datetime.now(UTC) - state.oldest_due_at).total_seconds() >= view.repair_interval_s
    ):
        add(
            "warning",
            "dispatch_overdue",
            "A due task of this run has waited a task-repair interval or longer "
            "although the queue has pollers (busy workers, or none able to take it).",
        )
    retrying = [a for a in activities if a.attempt_count > 1]
    if retrying:
        add(
            "info",
            "activity_retrying",
            f"{len(retrying)} pending activit{'y is' if len(retrying) == 1 else 'ies are'} "
            "past their first attempt.",
        )
    if run.archived_at is not None:
        add("info", "archived", "The run is archived: hidden from the default list.")
    return out


def _execution(run: RunView, state: RunDebugState, tasks: list[OpenWorkflowTask]) -> DebugExecution:
    return DebugExecution(
        status=run.status,
        status_bucket=run.status_bucket,
        closed_reason=run.closed_reason,
        is_terminal=run.status not in OPEN_STATUSES,
        is_current_run=run.is_current_run,
        workflow_type=run.workflow_type,
        task_queue=run.task_queue,
        run_number=run.run_number,
        business_key=run.business_key,
        started_at=wire.iso_z(run.started_at),
        closed_at=wire.iso_z(run.closed_at),
        last_progress_at=wire.iso_z(run.last_progress_at),
        archived_at=wire.iso_z(run.archived_at),
        archive_reason=state.archive_reason,
        wait=DebugWait(
            wait_kind=run.wait_kind,
            wait_reason=run.wait_reason,
            wait_started_at=wire.iso_z(state.wait_started_at),
            wait_deadline_at=wire.iso_z(state.wait_deadline_at),
            open_condition_wait=state.open_wait_id is not None,
            wake_pending=state.wake_pending,
            workflow_task=tasks[0].state if tasks else None,
            pending_timers=state.pending_timers,
            next_timer_at=wire.iso_z(state.next_timer_at),
            pending_activities=state.pending_activities,
            open_children=state.open_children,
            open_updates=state.open_updates,
        ),
    )


def _task(t: OpenWorkflowTask) -> DebugWorkflowTask:
    return DebugWorkflowTask(
        task_id=t.task_id,
        task_type="workflow",
        status=t.state,
        workflow_update_id=t.workflow_update_id,
        workflow_task_attempt=t.attempt,
        available_at=wire.iso_z(t.available_at),
        lease_owner=t.lease_owner,
        leased_at=wire.iso_z(t.leased_at),
        lease_expires_at=wire.iso_z(t.lease_expires_at),
        lease_expired=t.lease_expired,
        failure_count=t.failure_count,
        repair_count=t.repair_count,
        last_failure=t.failure,
        created_at=wire.iso_z(t.created_at),
    )


def _activity(a: PendingActivity) -> DebugActivity:
    return DebugActivity(
        activity_execution_id=a.activity_execution_id,
        sequence=a.sequence,
        activity_type=a.activity_type,
        task_queue=a.task_queue,
        status=a.status,
        attempt_count=a.attempt_count,
        activity_attempt_id=a.current_attempt_id,
        scheduled_at=wire.iso_z(a.scheduled_at),
        started_at=wire.iso_z(a.started_at),
        last_heartbeat_at=wire.iso_z(a.last_heartbeat_at),
        next_deadline_at=wire.iso_z(a.next_deadline_at),
        task_id=a.task_id,
        task_status=a.task_state,
        available_at=wire.iso_z(a.available_at),
        lease_owner=a.lease_owner,
        lease_expires_at=wire.iso_z(a.lease_expires_at),
        lease_expired=a.lease_expired,
    )


def _failure(f: RecentFailure) -> DebugFailure:
    failure: dict[str, Any] | None = f.failure if isinstance(f.failure, dict) else None
    message = failure.get("message") if failure else None
    return DebugFailure(
        source=f.source,
        source_id=f.source_id,
        message=message if isinstance(message, str) else None,
        failed_at=wire.iso_z(f.failed_at),
        failure=failure,
    )
