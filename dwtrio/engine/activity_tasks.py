"""Activities: schedule (from a completion), claim, complete, fail, heartbeat.

Store operations like ``workflow_tasks``: one transaction per use case, wakes
returned in an ``Outcome``. An activity execution keeps one task row across its
attempts; each claim creates a new attempt (``activity_attempt_id``) and records
``ActivityStarted``. Terminal results wake the workflow, subject to the
parallel-group rule: a member of a group wakes it only once every member of
the outermost group in its path has settled. The activity of a standalone
activity's host run (``protocol/activities.py``) wakes nothing: its terminal
outcome closes that run (:func:`close_host_run`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import attrs

from dwtrio import payloads, wire
from dwtrio.engine import admission, claims
from dwtrio.engine.closing import close_run
from dwtrio.engine.outcome import Outcome
from dwtrio.engine.wakes import request_wake
from dwtrio.errors import (
    AttemptNotFoundError,
    LeaseOwnerMismatchError,
    RunClosedError,
    StaleAttemptError,
    TaskMismatchError,
    TaskNotFoundError,
)
from dwtrio.protocol.admission import BLOCKED, Blocked, Throttled
from dwtrio.protocol.commands import ScheduleActivity
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.responses import ActivityReport
from dwtrio.protocol.worker import (
    ActivityAttemptLease,
    CompleteActivityTask,
    FailActivityTask,
    HeartbeatActivityTask,
)
from dwtrio.store import activities, handoffs, runs, tasks
from dwtrio.store.activities import ActivityExecution, ClaimedActivity, LockedActivityCall
from dwtrio.store.history import NewEvent, append_events
from dwtrio.store.offers import offer_task
from dwtrio.store.pool import Conn
from dwtrio.store.runs import OPEN_STATUSES, LockedRun

TERMINAL_STATUSES = ("completed", "failed", "timed_out", "cancelled")


def step_fields(execution: ActivityExecution) -> dict[str, Any]:
    """Fields every event of an activity step repeats (sequence, type, parallel metadata)."""
    fields: dict[str, Any] = {
        "sequence": execution.sequence,
        "activity_type": execution.activity_type,
        "activity_class": execution.activity_type,
        "activity_execution_id": execution.id,
    }
    fields.update(execution.parallel or {})
    return fields


async def schedule(
    conn: Conn,
    run: LockedRun,
    command: ScheduleActivity,
    arguments: str,
    seq: int,
    outcome: Outcome,
    *,
    activity_class: str | None = None,
) -> tuple[NewEvent, str]:
    """Create the execution and its ready task (handed to a parked poll if one takes it,
    ``store/offers.py``); returns (ActivityScheduled, task id). ``activity_class`` is a
    standalone activity's label, kept with the timeouts in the execution's options."""
    execution_id = new_id()
    queue = command.queue or run.task_queue
    task_id = new_id()
    await activities.schedule_activity(
        conn,
        execution_id=execution_id,
        task_id=task_id,
        run=run,
        sequence=seq,
        activity_type=command.activity_type,
        task_queue=queue,
        arguments=arguments,
        retry_policy=command.retry_policy,
        options=command.timeouts
        if activity_class is None
        else {**command.timeouts, "activity_class": activity_class},
        parallel=command.parallel or None,
        schedule_to_start_s=command.timeouts.get("schedule_to_start_timeout"),
        schedule_to_close_s=command.timeouts.get("schedule_to_close_timeout"),
    )
    offer_task(outcome, run.namespace, queue, "activity", command.activity_type, task_id)
    payload: dict[str, Any] = {
        "sequence": seq,
        "activity_type": command.activity_type,
        "activity_class": command.activity_type,
        "activity_execution_id": execution_id,
    }
    payload.update(command.parallel)
    return NewEvent(event_type="ActivityScheduled", payload=payload), task_id


# --- claim ---------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class ClaimParams(claims.ClaimParams):
    activity_types: tuple[str, ...]
    default_lease_s: int


def _task_body(claimed: ClaimedActivity, queue: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_id": claimed.task_id,
        "workflow_id": claimed.workflow_id,
        "run_id": claimed.run_id,
        "activity_execution_id": claimed.execution_id,
        "activity_attempt_id": claimed.activity_attempt_id,
        "attempt_number": claimed.attempt_number,
        "activity_type": claimed.activity_type,
        "payload_codec": "avro",
        "arguments": None
        if claimed.arguments is None
        else {"codec": "avro", "blob": claimed.arguments},
        "task_queue": queue,
        "lease_owner": claimed.lease_owner,
        "lease_expires_at": wire.iso_z(claimed.lease_expires_at),
    }
    if claimed.retry_policy is not None:
        body["retry_policy"] = claimed.retry_policy
    deadlines = {
        kind: wire.iso_z(at)
        for kind, at in (
            ("start_to_close", claimed.start_to_close_deadline_at),
            ("schedule_to_close", claimed.schedule_to_close_deadline_at),
            ("heartbeat", claimed.heartbeat_deadline_at),
        )
        if at is not None
    }
    if deadlines:
        body["deadlines"] = deadlines
    return body


async def claim(
    conn: Conn, params: ClaimParams, *, replay_poll: bool
) -> dict[str, Any] | Throttled | Blocked | None:
    """Lease the next activity task: new attempt, ``ActivityStarted``, wire body.

    Uncapped, it runs without an explicit transaction (``Store.autocommit``):
    the claim, the attempt and the event are one statement; the rare cleanup of
    work claimed for a run that has closed meanwhile is another (a failure
    between the two leaves a lease that expires and is repaired). On a capped
    queue it runs in a transaction, admitted first (``Throttled`` when a cap is
    reached); a worker whose build-id cohort drains gets ``BLOCKED``
    (``engine/admission.py``). A poll's first claim (``replay_poll``) with a
    ``poll_request_id`` gets the task that id already holds, if any: on an uncapped
    queue the claim statement itself looks (no round trip of its own).
    """
    replay = replay_poll and bool(params.poll_request_id)
    if replay and params.caps is not None:
        again = await activities.find_polled_activity_task(conn, **params.held_by_poll())
        if again is not None:
            return _task_body(again, params.task_queue)
        replay = False
    if params.caps is not None:
        throttled = await admission.admit(conn, params.caps)
        if throttled is not None:
            return throttled
    while True:
        claimed = await activities.claim_activity_task(
            conn,
            namespace=params.namespace,
            task_queue=params.task_queue,
            worker_id=params.worker_id,
            poll_request_id=params.poll_request_id,
            activity_types=params.activity_types,
            default_lease_s=params.default_lease_s,
            attempt_id=new_id(),
            event_id=new_id(),
            replay=replay,
        )
        replay = False
        if claimed is None:
            return await admission.refused(conn, params)
        if not claimed.run_open:
            # The run closed after scheduling: this work can never be used.
            await activities.cancel_claimed_activity(
                conn,
                attempt_id=claimed.activity_attempt_id,
                execution_id=claimed.execution_id,
                task_id=claimed.task_id,
            )
            continue
        if params.caps is not None and not claimed.replayed:
            await admission.record(conn, params.caps)
        return _task_body(claimed, params.task_queue)


async def lease_created(conn: Conn, params: ClaimParams, task_id: str) -> dict[str, Any] | None:
    """Sync match (``store/offers.py``): lease the ready task ``task_id``, scheduled by
    this transaction, to the parked poll of ``params``, as :func:`claim` would (new
    attempt, ``ActivityStarted``); its wire body, or None when that poll's claim could
    not take it (the worker's cohort drains)."""
    claimed = await handoffs.lease_created_activity_task(
        conn,
        task_id,
        namespace=params.namespace,
        task_queue=params.task_queue,
        worker_id=params.worker_id,
        poll_request_id=params.poll_request_id,
        default_lease_s=params.default_lease_s,
        attempt_id=new_id(),
        event_id=new_id(),
    )
    if claimed is None:
        return None
    if not claimed.run_open:
        # The operation closed the run after scheduling: this work can never be used.
        await activities.cancel_claimed_activity(
            conn,
            attempt_id=claimed.activity_attempt_id,
            execution_id=claimed.execution_id,
            task_id=claimed.task_id,
        )
        return None
    return _task_body(claimed, params.task_queue)


async def claim_batch(
    conn: Conn, polls: list[ClaimParams]
) -> list[dict[str, Any] | Blocked | None]:
    """:func:`claim` for several first-time-or-later polls of one uncapped queue with the
    same type filter, in one statement (``matching/batches.py``): each poll's task body,
    ``BLOCKED`` (its cohort drains) or None, in order. A task leased on a run that has
    closed meanwhile is retired and that poll claims again on its own."""
    first = polls[0]
    rows = await activities.claim_activity_tasks(
        conn,
        namespace=first.namespace,
        task_queue=first.task_queue,
        worker_ids=[p.worker_id for p in polls],
        poll_request_ids=[p.poll_request_id for p in polls],
        activity_types=first.activity_types,
        default_lease_s=first.default_lease_s,
        attempt_ids=[new_id() for _ in polls],
        event_ids=[new_id() for _ in polls],
    )
    results: list[dict[str, Any] | Blocked | None] = []
    for params, row in zip(polls, rows, strict=True):
        claimed = row.claimed
        if claimed is None:
            results.append(BLOCKED if row.draining else None)
        elif claimed.run_open:
            results.append(_task_body(claimed, params.task_queue))
        else:
            await activities.cancel_claimed_activity(
                conn,
                attempt_id=claimed.activity_attempt_id,
                execution_id=claimed.execution_id,
                task_id=claimed.task_id,
            )
            again = await claim(conn, params, replay_poll=False)
            assert not isinstance(again, Throttled)  # uncapped
            results.append(again)
    return results


async def release(conn: Conn, task: dict[str, Any]) -> tuple[str, str, str] | None:
    """Undo an undeliverable lease: the attempt is expired and the task is ready again."""
    await activities.expire_activity_attempt(conn, task["activity_attempt_id"])
    queue = await tasks.release_task(
        conn, task["task_id"], attempt=task["attempt_number"], lease_owner=task["lease_owner"]
    )
    if queue is None:
        return None
    await activities.set_task_attempt(
        conn, task["task_id"], activity_attempt_id=None, attempt=task["attempt_number"]
    )
    return queue


async def release_polled(conn: Conn, params: ClaimParams) -> tuple[str, str, str] | None:
    """Undo the lease a poll may hold without knowing it: its claim reached the
    database, then the connection failed before the answer came back. Found by
    the poll's ``poll_request_id``; returns the queue to wake."""
    if not params.poll_request_id:
        return None
    held = await activities.find_polled_activity_task(conn, **params.held_by_poll())
    if held is None:
        return None
    task = {
        "task_id": held.task_id,
        "activity_attempt_id": held.activity_attempt_id,
        "attempt_number": held.attempt_number,
        "lease_owner": held.lease_owner,
    }
    return await release(conn, task)


def _report(task_id: str, req: ActivityAttemptLease, outcome: str, **fields: Any) -> ActivityReport:
    """The answer to an attempt's report that was recorded."""
    return ActivityReport(
        task_id=task_id,
        activity_attempt_id=req.activity_attempt_id,
        outcome=outcome,
        recorded=True,
        reason=None,
        **fields,
    )


# --- fencing -------------------------------------------------------------------------
class FencedCall(Protocol):
    """What the fence reads of an activity task locked for a worker's call."""

    @property
    def state(self) -> str: ...
    @property
    def activity_attempt_id(self) -> str | None: ...
    @property
    def attempt_id(self) -> str | None: ...
    @property
    def attempt_task_id(self) -> str | None: ...
    @property
    def attempt_status(self) -> str | None: ...
    @property
    def attempt_lease_owner(self) -> str | None: ...
    @property
    def run_status(self) -> str: ...


async def fence(
    conn: Conn, namespace: str, task_id: str, lease: ActivityAttemptLease
) -> LockedActivityCall:
    """Lock the task, its run and its execution (one statement) and check the caller's
    attempt is the task's current one, on an open run."""
    call = await activities.lock_activity_call(
        conn, task_id=task_id, attempt_id=lease.activity_attempt_id, namespace=namespace
    )
    check_fence(call, task_id, lease)
    assert call is not None
    return call


def check_fence(call: FencedCall | None, task_id: str, lease: ActivityAttemptLease) -> None:
    """Raise the error a call on this locked task (None: not found) gets, if any.
    ``dwtrio_complete_activity_call`` (migration 0010) writes only when this passes."""
    fields = {"task_id": task_id, "activity_attempt_id": lease.activity_attempt_id}
    if call is None:
        raise TaskNotFoundError("Activity task not found.", **fields)
    if call.attempt_id is None:
        raise AttemptNotFoundError("Activity attempt not found.", **fields)
    if call.attempt_task_id != task_id:
        raise TaskMismatchError("The activity attempt does not belong to this task.", **fields)
    if call.attempt_lease_owner != lease.lease_owner:
        raise LeaseOwnerMismatchError(
            "Activity attempt is owned by another worker.",
            lease_owner=call.attempt_lease_owner,
            **fields,
        )
    # A task cancelled under a running attempt means its run closed: answer run_closed.
    if (
        call.attempt_status != "running"
        or call.state not in ("leased", "cancelled")
        or call.activity_attempt_id != lease.activity_attempt_id
    ):
        raise StaleAttemptError("The activity attempt is no longer current.", **fields)
    if call.run_status not in OPEN_STATUSES:
        raise RunClosedError(
            "The workflow run is closed.",
            run_status=call.run_status,
            cancel_requested=True,
            can_continue=False,
            **fields,
        )
    if call.state != "leased":
        raise StaleAttemptError("The activity attempt is no longer current.", **fields)


async def wake_after_settling(
    conn: Conn, run: LockedRun, parallel: dict[str, Any] | None, outcome: Outcome
) -> str | None:
    """Wake the workflow unless the step (its ``parallel`` metadata) is in a parallel group
    that is still running."""
    parallel = parallel or {}
    path = parallel.get("parallel_group_path") or []
    outer = path[0] if path else (parallel if "parallel_group_base_sequence" in parallel else None)
    if outer is not None:
        base, size = outer["parallel_group_base_sequence"], outer["parallel_group_size"]
        settled = await runs.count_settled_steps(conn, run.id, first=base, last=base + size - 1)
        if settled < size:
            return None
    return await request_wake(conn, run, outcome)


async def close_host_run(
    conn: Conn,
    run: LockedRun,
    outcome: Outcome,
    *,
    result: str | None = None,
    failure: dict[str, Any] | None = None,
    reason: str = "failed",
) -> None:
    """The activity of a standalone activity's host run settled: the run closes with its
    outcome instead of being woken. Without ``failure`` it completed with ``result`` (the
    run's output, ``WorkflowCompleted``); with it (the terminal activity event's payload)
    the run failed, closed for ``reason`` (``failed`` or ``timed_out``), ``WorkflowFailed``
    carrying the activity's failure."""
    if failure is None:
        event = NewEvent(
            event_type="WorkflowCompleted", payload={"output": result, "payload_codec": "avro"}
        )
        status = reason = "completed"
    else:
        keys = (
            "failure_id",
            "failure_category",
            "non_retryable",
            "exception_type",
            "exception_class",
            "message",
            "exception",
        )
        event = NewEvent(
            event_type="WorkflowFailed",
            payload={
                "source_kind": "activity_execution",
                "source_id": failure.get("activity_execution_id"),
                **{k: failure[k] for k in keys if k in failure},
            },
        )
        status = "failed"
    await append_events(conn, run.id, [event])
    await close_run(conn, run, outcome, status=status, reason=reason, output=result)


# --- complete, fail, heartbeat --------------------------------------------------------
async def complete_at_once(
    conn: Conn, namespace: str, task_id: str, req: CompleteActivityTask
) -> Outcome | None:
    """:func:`complete` as one statement (``Store.autocommit``, one round trip instead
    of five): fence, ActivityCompleted and wake, all or nothing
    (``activities.complete_activity_call``). None for a step with parallel metadata,
    whose wake depends on its group, and for the activity of a standalone activity's
    host run, which closes that run: nothing was written, run :func:`complete`."""
    done = await activities.complete_activity_call(
        conn,
        task_id=task_id,
        attempt_id=req.activity_attempt_id,
        namespace=namespace,
        lease_owner=req.lease_owner,
        result=payloads.value_blob(req.result),
        event_id=new_id(),
        wake_task_id=new_id(),
    )
    check_fence(done, task_id, req)
    assert done is not None
    if done.grouped:
        return None
    assert done.completed  # the statement's fence is check_fence's
    outcome = Outcome()
    if done.woken_task_id is not None:
        # The statement does not read the run's type: the lease checks the poll's types.
        offer_task(
            outcome, done.run_namespace, done.run_task_queue, "workflow", None, done.woken_task_id
        )
    outcome.body = _report(task_id, req, "completed", next_task_id=done.woken_task_id)
    return outcome


async def complete(conn: Conn, namespace: str, task_id: str, req: CompleteActivityTask) -> Outcome:
    fenced = await fence(conn, namespace, task_id, req)
    result = payloads.value_blob(req.result)
    payload = {
        **step_fields(fenced.execution),
        "activity_attempt_id": req.activity_attempt_id,
        "attempt_number": fenced.attempt_number,
        "result": result,
        "payload_codec": "avro",
    }
    await activities.complete_activity(
        conn,
        attempt_id=req.activity_attempt_id,
        execution_id=fenced.execution.id,
        result=result,
        task_id=task_id,
        run_id=fenced.run.id,
        event_id=new_id(),
        payload=payload,
    )
    outcome = Outcome()
    next_task = None
    if fenced.run.hosts_standalone_activity:
        await close_host_run(conn, fenced.run, outcome, result=result)
    else:
        next_task = await wake_after_settling(conn, fenced.run, fenced.execution.parallel, outcome)
    outcome.body = _report(task_id, req, "completed", next_task_id=next_task)
    return outcome


async def schedule_retry(
    conn: Conn,
    run: LockedRun,
    execution: ActivityExecution,
    task_id: str,
    attempt_number: int,
    backoff_s: int,
    attempt_fields: dict[str, Any],
    outcome: Outcome,
) -> datetime:
    """Make the activity's task ready again after ``backoff_s`` and record
    ActivityRetryScheduled (the ended attempt's ``attempt_fields`` plus the policy); a
    retry due at once wakes the activity pollers. Returns when the retry is due."""
    policy = execution.retry_policy or {}
    available_at = await activities.schedule_activity_retry(
        conn, task_id=task_id, execution_id=execution.id, backoff_s=backoff_s
    )
    retry = {
        **attempt_fields,
        "retry_available_at": wire.iso_z(available_at),
        "retry_backoff_seconds": backoff_s,
        "retry_after_attempt": attempt_number,
        "max_attempts": int(policy.get("max_attempts") or 1),
        "retry_policy": policy,
    }
    await append_events(
        conn, run.id, [NewEvent(event_type="ActivityRetryScheduled", payload=retry)]
    )
    if backoff_s == 0:
        outcome.wake(run.namespace, execution.task_queue, "activity")
    return available_at


def retry_decision(
    execution: ActivityExecution, attempt_number: int, failure: dict[str, Any]
) -> int | None:
    """Seconds until the next attempt, or None when this failure is final."""
    policy = execution.retry_policy or {}
    if failure.get("non_retryable") is True:
        return None
    excluded = set(policy.get("non_retryable_error_types") or ())
    if any(isinstance(failure.get(k), str) and failure[k] in excluded for k in ("type", "class")):
        return None
    if attempt_number >= int(policy.get("max_attempts") or 1):
        return None
    backoff = list(policy.get("backoff_seconds") or [])
    return int(backoff[min(attempt_number - 1, len(backoff) - 1)]) if backoff else 0


async def fail(conn: Conn, namespace: str, task_id: str, req: FailActivityTask) -> Outcome:
    fenced = await fence(conn, namespace, task_id, req)
    failure = req.failure
    attempt_number = fenced.attempt_number
    assert attempt_number is not None  # the fence found the attempt
    message = (
        failure.get("message") if isinstance(failure.get("message"), str) else "activity failed"
    )
    common = {
        **step_fields(fenced.execution),
        "activity_attempt_id": req.activity_attempt_id,
        "attempt_number": attempt_number,
        "message": message,
        "exception_type": failure.get("type"),
        "exception_class": failure.get("class") or failure.get("type"),
    }
    if "code" in failure:
        common["code"] = failure["code"]
    await activities.close_activity_attempt(
        conn, req.activity_attempt_id, status="failed", failure=failure
    )
    outcome = Outcome()
    backoff_s = retry_decision(fenced.execution, attempt_number, failure)
    if backoff_s is not None:
        available_at = await schedule_retry(
            conn,
            fenced.run,
            fenced.execution,
            task_id,
            attempt_number,
            backoff_s,
            common,
            outcome,
        )
        outcome.body = _report(
            task_id,
            req,
            "retry_scheduled",
            retry_available_at=wire.iso_z(available_at),
            next_task_id=None,
        )
        return outcome
    final = {
        **common,
        "non_retryable": bool(failure.get("non_retryable", False)),
        "failure_id": new_id(),
        "failure_category": "application",
        "exception": {
            "type": failure.get("type"),
            "class": failure.get("class") or failure.get("type"),
            "message": message,
        },
    }
    if "details" in failure:
        final["details"] = failure["details"]
    await activities.close_activity_execution(
        conn, fenced.execution.id, status="failed", result=None, failure=failure
    )
    await append_events(conn, fenced.run.id, [NewEvent(event_type="ActivityFailed", payload=final)])
    await tasks.complete_task(conn, task_id, receipt=None)
    next_task = None
    if fenced.run.hosts_standalone_activity:
        await close_host_run(conn, fenced.run, outcome, failure=final)
    else:
        next_task = await wake_after_settling(conn, fenced.run, fenced.execution.parallel, outcome)
    outcome.body = _report(task_id, req, "failed", next_task_id=next_task)
    return outcome


async def heartbeat(
    conn: Conn, namespace: str, task_id: str, req: HeartbeatActivityTask, default_lease_s: int
) -> dict[str, Any]:
    """Extend the lease and keep the progress; a closed run answers 200 ``cancel_requested``.

    The SDK raises ``ActivityCancelled`` in the activity only for a 200 body
    with ``cancel_requested`` (an error status would surface as ``ServerError``).
    """
    try:
        fenced = await fence(conn, namespace, task_id, req)
    except RunClosedError as exc:
        return {
            "task_id": task_id,
            "activity_attempt_id": req.activity_attempt_id,
            "lease_owner": req.lease_owner,
            "cancel_requested": True,
            "can_continue": False,
            "reason": RunClosedError.reason,
            "run_status": exc.fields.get("run_status"),
            "heartbeat_recorded": False,
        }
    options = fenced.execution.options or {}
    lease_s = int(options.get("start_to_close_timeout") or default_lease_s)
    expires = await tasks.extend_task_lease(conn, task_id, lease_s=lease_s)
    details = (
        req.details
        if isinstance(req.details, dict)
        else ({"value": req.details} if req.details is not None else None)
    )
    beat = await activities.record_activity_heartbeat(
        conn, execution_id=fenced.execution.id, attempt_id=req.activity_attempt_id, details=details
    )
    return {
        "task_id": task_id,
        "activity_attempt_id": req.activity_attempt_id,
        "lease_owner": req.lease_owner,
        "cancel_requested": bool(beat.cancel_requested),
        "can_continue": True,
        "reason": None,
        "heartbeat_recorded": True,
        "lease_expires_at": wire.iso_z(expires),
        "last_heartbeat_at": wire.iso_z(beat.last_heartbeat_at),
    }
