"""Server-owned timeouts: activity deadlines, expired activity leases, run deadlines.

Each operation handles the one earliest due item in its own short transaction
and returns ``None`` when nothing is due, so background loops on several nodes
can drain the work side by side (due rows are claimed ``FOR UPDATE SKIP LOCKED``).
Locks are taken in the order the worker-plane paths use (task, run, execution),
so a timeout racing a late completion waits for it instead of deadlocking.

An attempt that runs out of time (``start_to_close``, ``heartbeat``, or an
expired lease, which bounds an attempt without ``start_to_close_timeout``) is
retried while the retry policy allows and otherwise ends the activity;
``schedule_to_start`` and ``schedule_to_close`` always end it. The final
timeout records ``ActivityTimedOut`` and wakes the workflow under the
parallel-group rule, and any later complete/fail from the timed-out attempt is
answered ``stale_attempt`` by the fence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from dwtrio import wire
from dwtrio.engine.activity_tasks import (
    close_host_run,
    retry_decision,
    schedule_retry,
    step_fields,
    wake_after_settling,
)
from dwtrio.engine.closing import close_run
from dwtrio.engine.outcome import Outcome
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.responses import (
    ActivityTimeoutPassReport,
    ActivityTimeoutResult,
    ActivityTimeoutStatus,
)
from dwtrio.store import activities, runs, tasks, timeouts
from dwtrio.store.activities import ActivityExecution, LockedActivityTask
from dwtrio.store.history import NewEvent, append_events
from dwtrio.store.pool import Conn, Store
from dwtrio.store.runs import LockedRun

#: Timeouts that end one attempt; the retry policy decides whether another follows.
ATTEMPT_TIMEOUTS = ("heartbeat", "start_to_close")
#: Timeouts that end the activity whatever its retry policy says.
ACTIVITY_TIMEOUTS = ("schedule_to_close", "schedule_to_start")
TIMEOUT_EXCEPTION_TYPE = "ActivityTimeout"

log = logging.getLogger(__name__)


# --- activities ----------------------------------------------------------------------
async def fire_next_activity_timeout(
    conn: Conn,
    *,
    namespace: str | None = None,
    execution_ids: list[str] | None = None,
    exclude_ids: Sequence[str] = (),
    claimed: list[str] | None = None,
) -> tuple[Outcome, ActivityTimeoutResult] | None:
    """Apply the earliest passed activity deadline (within the filters); None when none is
    due. The execution's id is put in ``claimed`` once its task is locked, so a caller
    whose transaction failed knows which execution it was."""
    if claimed is not None:
        claimed.clear()  # the store may run this again on a fresh connection
    task = await timeouts.claim_due_activity(
        conn, namespace=namespace, execution_ids=execution_ids, exclude_ids=list(exclude_ids)
    )
    if task is None:
        return None
    execution_id = task.activity_execution_id
    assert execution_id is not None  # an activity task
    if claimed is not None:
        claimed.append(execution_id)
    outcome = Outcome()
    run = await runs.lock_run(conn, task.run_id)
    execution = await activities.lock_activity_execution(conn, execution_id)
    if run is None or not run.is_open:
        # Closing a run cancels its activities; retire a leftover the same way.
        await activities.cancel_run_activities(conn, task.run_id)
        return outcome, _skipped(execution_id, "run_closed")
    assert execution is not None  # its task is locked
    if execution.status not in ("pending", "running"):
        # Settled while this node was waiting for the task lock.
        return outcome, _skipped(execution_id, "already_settled")
    due = await timeouts.due_activity_deadlines(conn, execution.id)
    leased = task.state == "leased" and task.activity_attempt_id is not None
    kind = next((k for k in ACTIVITY_TIMEOUTS if due.passed(k)), None)
    if kind is None and leased:
        kind = next((k for k in ATTEMPT_TIMEOUTS if due.passed(k)), None)
    if kind is None:
        # What is due does not apply (an attempt handed back by a lost poll): drop it.
        await timeouts.clear_stale_activity_deadlines(conn, execution.id)
        return outcome, _skipped(execution_id, "deadline_no_longer_applies")
    if kind in ATTEMPT_TIMEOUTS:
        has_retry = await time_out_attempt(conn, task, run, execution, kind, outcome)
    else:
        await _time_out_activity(conn, task, run, execution, kind, outcome)
        has_retry = False
    return outcome, ActivityTimeoutResult(
        execution_id=execution_id, outcome="enforced", has_retry=has_retry, timeout_kind=kind
    )


def _skipped(execution_id: str, reason: str) -> ActivityTimeoutResult:
    return ActivityTimeoutResult(execution_id=execution_id, outcome="skipped", reason=reason)


async def activity_timeout_pass(
    store: Store,
    publish: Callable[[set[tuple[str, str, str]]], None],
    *,
    namespace: str | None,
    limit: int,
    execution_ids: list[str] | None = None,
) -> ActivityTimeoutPassReport:
    """Enforce up to ``limit`` passed activity deadlines, earliest first, one transaction
    each (the timeout loop and ``POST /api/system/activity-timeouts/pass`` both run this).

    ``publish`` gets each transaction's wakes after it commits. An execution whose
    transaction failed is reported ``error`` and passed over for the rest of the pass;
    a failure before any execution was locked (the store is unavailable) raises.
    """
    results: list[ActivityTimeoutResult] = []
    failed: list[str] = []
    while len(results) < limit:
        claimed: list[str] = []
        try:
            step = await store.transaction(
                fire_next_activity_timeout,
                namespace=namespace,
                execution_ids=execution_ids,
                exclude_ids=failed,
                claimed=claimed,
            )
        except Exception as exc:
            if not claimed:
                raise
            log.warning(
                "activity timeouts: execution %s could not be handled: %s",
                claimed[0],
                exc,
                extra={"action": "timeouts_error"},
            )
            failed.append(claimed[0])
            results.append(
                ActivityTimeoutResult(
                    execution_id=claimed[0],
                    outcome="error",
                    reason="enforcement_failed",
                    message=str(exc)[:500],
                )
            )
            continue
        if step is None:
            break
        outcome, result = step
        publish(outcome.wakes)
        results.append(result)
    count = {"enforced": 0, "skipped": 0, "error": 0}
    for r in results:
        count[r.outcome] += 1
    return ActivityTimeoutPassReport(
        namespace=namespace,
        processed=len(results),
        enforced=count["enforced"],
        skipped=count["skipped"],
        failed=count["error"],
        results=results,
    )


async def activity_timeout_status(conn: Conn, namespace: str, limit: int) -> ActivityTimeoutStatus:
    """The executions of ``namespace`` past a deadline (up to ``limit``; one more is read to
    tell whether more are waiting than one pass of ``limit`` takes)."""
    ids = await timeouts.due_activity_executions(conn, namespace=namespace, limit=limit + 1)
    return ActivityTimeoutStatus(
        namespace=namespace,
        expired_count=min(len(ids), limit),
        expired_execution_ids=ids[:limit],
        scan_limit=limit,
        scan_pressure=len(ids) > limit,
    )


async def time_out_attempt(
    conn: Conn,
    task: LockedActivityTask,
    run: LockedRun,
    execution: ActivityExecution,
    kind: str,
    outcome: Outcome,
    *,
    message: str | None = None,
    redeliver: bool = False,
) -> bool:
    """The current attempt ran out of time: retry it if the policy allows, else time out.
    True when another attempt was scheduled.

    ``redeliver``: the attempt was lost with its worker, not timed out by a business
    deadline; the next attempt is scheduled at once whatever the retry policy says
    (at-least-once delivery after a lost lease)."""
    attempt_id = task.activity_attempt_id
    assert attempt_id is not None  # the task is leased
    attempt_number = int(execution.attempt_count)
    message = message or f"activity {kind} timeout"
    failure = _failure(kind, message)
    await activities.close_activity_attempt(conn, attempt_id, status="timed_out", failure=failure)
    backoff_s = 0 if redeliver else retry_decision(execution, attempt_number, failure)
    common = {
        **step_fields(execution),
        "activity_attempt_id": attempt_id,
        "attempt_number": attempt_number,
        "message": message,
        "timeout_kind": kind,
        "exception_type": TIMEOUT_EXCEPTION_TYPE,
        "exception_class": TIMEOUT_EXCEPTION_TYPE,
    }
    if backoff_s is None:
        await _record_timed_out(conn, task, run, execution, common, kind, outcome)
        return False
    await schedule_retry(
        conn,
        run,
        execution,
        task.task_id,
        attempt_number,
        backoff_s,
        {**common, "exception": failure},
        outcome,
    )
    return True


async def _time_out_activity(
    conn: Conn,
    task: LockedActivityTask,
    run: LockedRun,
    execution: ActivityExecution,
    kind: str,
    outcome: Outcome,
) -> None:
    """A whole-activity deadline passed: the running attempt (if any) ends with it."""
    message = f"activity {kind} timeout"
    common: dict[str, Any] = {
        **step_fields(execution),
        "message": message,
        "timeout_kind": kind,
        "exception_type": TIMEOUT_EXCEPTION_TYPE,
        "exception_class": TIMEOUT_EXCEPTION_TYPE,
    }
    if task.state == "leased" and task.activity_attempt_id is not None:
        await activities.close_activity_attempt(
            conn, task.activity_attempt_id, status="timed_out", failure=_failure(kind, message)
        )
        common["activity_attempt_id"] = task.activity_attempt_id
        common["attempt_number"] = int(execution.attempt_count)
    await _record_timed_out(conn, task, run, execution, common, kind, outcome)


async def _record_timed_out(
    conn: Conn,
    task: LockedActivityTask,
    run: LockedRun,
    execution: ActivityExecution,
    common: dict[str, Any],
    kind: str,
    outcome: Outcome,
) -> None:
    """Close the execution as timed out, record ``ActivityTimedOut`` and wake the workflow
    (or close a standalone activity's host run, failed for ``timed_out``)."""
    failure = _failure(kind, common["message"])
    deadline = execution.deadline_at(kind)
    payload = {
        **common,
        "non_retryable": kind in ACTIVITY_TIMEOUTS,
        "failure_id": new_id(),
        "failure_category": "timeout",
        "exception": failure,
        "deadlines": {kind: wire.iso_z(deadline)} if deadline is not None else {},
    }
    await activities.close_activity_execution(
        conn, execution.id, status="timed_out", result=None, failure=failure
    )
    await append_events(conn, run.id, [NewEvent(event_type="ActivityTimedOut", payload=payload)])
    await tasks.complete_task(conn, task.task_id, receipt=None)
    if run.hosts_standalone_activity:
        await close_host_run(conn, run, outcome, failure=payload, reason="timed_out")
    else:
        await wake_after_settling(conn, run, execution.parallel, outcome)


def _failure(kind: str, message: str) -> dict[str, Any]:
    return {
        "type": TIMEOUT_EXCEPTION_TYPE,
        "class": TIMEOUT_EXCEPTION_TYPE,
        "message": message,
        "timeout_kind": kind,
    }


# --- runs ----------------------------------------------------------------------------
async def fire_next_run_timeout(conn: Conn) -> Outcome | None:
    """Close the open run whose execution or run deadline passed first; None if none is due."""
    due = await timeouts.claim_due_run(conn)
    if due is None:
        return None
    outcome = Outcome()
    run = await runs.lock_run(conn, due.id)
    if run is None or not run.is_open:
        return outcome
    execution_at, run_at = due.execution_deadline_at, due.run_deadline_at
    kind = (
        "run"
        if run_at is not None and (execution_at is None or run_at < execution_at)
        else ("execution")
    )
    payload = {
        "timeout_kind": kind,
        "message": f"workflow {kind} timeout",
        "execution_deadline_at": wire.iso_z(execution_at),
        "run_deadline_at": wire.iso_z(run_at),
    }
    await append_events(conn, run.id, [NewEvent(event_type="WorkflowTimedOut", payload=payload)])
    await close_run(conn, run, outcome, status="failed", reason="timed_out")
    return outcome
