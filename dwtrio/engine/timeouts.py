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

from typing import Any

from dwtrio import wire
from dwtrio.engine.activity_tasks import (
    retry_decision,
    schedule_retry,
    step_fields,
    wake_after_settling,
)
from dwtrio.engine.closing import close_run
from dwtrio.engine.outcome import Outcome
from dwtrio.protocol.ids import new_id
from dwtrio.store import activities, runs, tasks, timeouts
from dwtrio.store.activities import ActivityExecution, LockedActivityTask
from dwtrio.store.history import NewEvent, append_events
from dwtrio.store.pool import Conn
from dwtrio.store.runs import LockedRun

#: Timeouts that end one attempt; the retry policy decides whether another follows.
ATTEMPT_TIMEOUTS = ("heartbeat", "start_to_close")
#: Timeouts that end the activity whatever its retry policy says.
ACTIVITY_TIMEOUTS = ("schedule_to_close", "schedule_to_start")
TIMEOUT_EXCEPTION_TYPE = "ActivityTimeout"


# --- activities ----------------------------------------------------------------------
async def fire_next_activity_timeout(conn: Conn) -> Outcome | None:
    """Apply the earliest passed activity deadline; None when none is due."""
    task = await timeouts.claim_due_activity(conn)
    if task is None:
        return None
    outcome = Outcome()
    run = await runs.lock_run(conn, task.run_id)
    execution = await activities.lock_activity_execution(conn, task.activity_execution_id)
    if run is None or not run.is_open:
        # Closing a run cancels its activities; retire a leftover the same way.
        await activities.cancel_run_activities(conn, task.run_id)
        return outcome
    assert execution is not None  # its task is locked
    if execution.status not in ("pending", "running"):
        return outcome  # settled while this node was waiting for the task lock
    due = await timeouts.due_activity_deadlines(conn, execution.id)
    leased = task.state == "leased" and task.activity_attempt_id is not None
    kind = next((k for k in ACTIVITY_TIMEOUTS if due.passed(k)), None)
    if kind is None and leased:
        kind = next((k for k in ATTEMPT_TIMEOUTS if due.passed(k)), None)
    if kind is None:
        # What is due does not apply (an attempt handed back by a lost poll): drop it.
        await timeouts.clear_stale_activity_deadlines(conn, execution.id)
        return outcome
    if kind in ATTEMPT_TIMEOUTS:
        await time_out_attempt(conn, task, run, execution, kind, outcome)
    else:
        await _time_out_activity(conn, task, run, execution, kind, outcome)
    return outcome


async def time_out_attempt(
    conn: Conn,
    task: LockedActivityTask,
    run: LockedRun,
    execution: ActivityExecution,
    kind: str,
    outcome: Outcome,
    *,
    message: str | None = None,
) -> None:
    """The current attempt ran out of time: retry it if the policy allows, else time out."""
    attempt_id = task.activity_attempt_id
    assert attempt_id is not None  # the task is leased
    attempt_number = int(execution.attempt_count)
    message = message or f"activity {kind} timeout"
    failure = _failure(kind, message)
    await activities.close_activity_attempt(conn, attempt_id, status="timed_out", failure=failure)
    backoff_s = retry_decision(execution, attempt_number, failure)
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
        return
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
    """Close the execution as timed out, record ``ActivityTimedOut`` and wake the workflow."""
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
