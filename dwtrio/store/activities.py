"""Activities (``schema/queries/activities.sql``): executions, attempts and their tasks.

An activity execution is one row across all its attempts, with one task row
(``workflow_tasks``, kind ``activity``) that each claim leases again. Every
function takes the connection of the caller's store operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from dwtrio.store.pool import Conn, note_new_events
from dwtrio.store.queries import query
from dwtrio.store.runs import LockedRun, joined_run_columns


@attrs.frozen
class ClaimedActivity:
    """A leased activity task with its new attempt and what the worker gets of its execution."""

    task_id: str
    run_id: str
    activity_attempt_id: str
    lease_owner: str
    lease_expires_at: datetime
    attempt_number: int
    execution_id: str
    workflow_id: str
    activity_type: str
    arguments: str | None
    retry_policy: dict[str, Any] | None
    schedule_to_close_deadline_at: datetime | None
    start_to_close_deadline_at: datetime | None
    heartbeat_deadline_at: datetime | None
    #: False: the run closed meanwhile; nothing was recorded and the claim must be retired.
    run_open: bool
    #: The lease this poll already held (a retried poll), returned again: nothing new.
    replayed: bool


@attrs.frozen
class BatchClaim:
    """One poll's part of ``claim_activity_tasks``: its task, if it got one, and whether
    its worker's build-id cohort drains."""

    draining: bool
    claimed: ClaimedActivity | None

    COLUMNS = ("draining", *(f.name for f in attrs.fields(ClaimedActivity)))

    @classmethod
    def from_record(cls, r: Any) -> BatchClaim:
        return cls(r[0], None if r[1] is None else ClaimedActivity(*r[1:]))


@attrs.frozen
class ActivityExecution:
    """An activity execution, locked, with what attempts and events need."""

    id: str
    sequence: int
    activity_type: str
    task_queue: str
    status: str
    retry_policy: dict[str, Any] | None
    options: dict[str, Any] | None
    parallel: dict[str, Any] | None
    attempt_count: int
    schedule_to_start_deadline_at: datetime | None
    start_to_close_deadline_at: datetime | None
    schedule_to_close_deadline_at: datetime | None
    heartbeat_deadline_at: datetime | None

    def deadline_at(self, kind: str) -> datetime | None:
        """The ``kind`` (``start_to_close``, ``heartbeat``, ...) deadline."""
        deadline: datetime | None = getattr(self, f"{kind}_deadline_at")
        return deadline


@attrs.frozen
class LockedActivityCall:
    """An activity task locked for a worker's call, with the attempt the call names
    (``attempt_*`` None when there is none), its run and its execution (locked too)."""

    id: str
    state: str
    #: The task's current attempt.
    activity_attempt_id: str | None
    attempt_id: str | None
    attempt_task_id: str | None
    attempt_number: int | None
    attempt_status: str | None
    attempt_lease_owner: str | None
    run: LockedRun
    execution: ActivityExecution

    _WIDTH = 8
    _RUN_END = _WIDTH + len(attrs.fields(LockedRun))
    COLUMNS = (
        *("id", "state", "activity_attempt_id", "attempt_id", "attempt_task_id"),
        *("attempt_number", "attempt_status", "attempt_lease_owner"),
        *joined_run_columns(),
        *(f"exec_{f.name}" for f in attrs.fields(ActivityExecution)),
    )

    @classmethod
    def from_record(cls, r: Any) -> LockedActivityCall:
        run, execution = (
            LockedRun(*r[cls._WIDTH : cls._RUN_END]),
            ActivityExecution(*r[cls._RUN_END :]),
        )
        return cls(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], run, execution)

    @property
    def run_status(self) -> str:
        return self.run.status


@attrs.frozen
class ActivityCompletion:
    """What ``complete_activity_call`` found (the fence's columns, as in
    :class:`LockedActivityCall`) and did: ``completed`` (with ``woken_task_id``, the
    workflow task its wake created), or nothing, the fence having refused the call or
    the step being in a parallel group or a standalone activity's host run (``grouped``:
    the transaction path settles it)."""

    id: str
    state: str
    activity_attempt_id: str | None
    attempt_id: str | None
    attempt_task_id: str | None
    attempt_number: int | None
    attempt_status: str | None
    attempt_lease_owner: str | None
    run_id: str
    run_namespace: str
    run_task_queue: str
    run_status: str
    grouped: bool
    completed: bool
    woken_task_id: str | None


@attrs.frozen
class LockedActivityTask:
    """An activity task locked by a timeout or a repair (its lease may be gone)."""

    task_id: str
    run_id: str
    state: str
    activity_attempt_id: str | None
    activity_execution_id: str
    lease_owner: str | None


@attrs.frozen
class Heartbeat:
    cancel_requested: bool
    last_heartbeat_at: datetime


_SCHEDULE_ACTIVITY = query("schedule_activity")
_CLAIM_ACTIVITY_TASK = query("claim_activity_task", ClaimedActivity)
_CLAIM_ACTIVITY_TASKS = query("claim_activity_tasks", BatchClaim)
_FIND_POLLED_ACTIVITY_TASK = query("find_polled_activity_task", ClaimedActivity)
_LOCK_ACTIVITY_EXECUTION = query("lock_activity_execution", ActivityExecution)
_SET_TASK_ATTEMPT = query("set_task_attempt")
_CLOSE_ACTIVITY_ATTEMPT = query("close_activity_attempt")
_CLOSE_ACTIVITY_EXECUTION = query("close_activity_execution")
_CANCEL_CLAIMED_ACTIVITY = query("cancel_claimed_activity")
_SCHEDULE_ACTIVITY_RETRY = query("schedule_activity_retry")
_RECORD_ACTIVITY_HEARTBEAT = query("record_activity_heartbeat", Heartbeat)
_CANCEL_RUN_ACTIVITIES = query("cancel_run_activities")
_EXPIRE_ACTIVITY_ATTEMPT = query("expire_activity_attempt")
_LOCK_ACTIVITY_CALL = query("lock_activity_call", LockedActivityCall)
_COMPLETE_ACTIVITY = query("complete_activity")
_COMPLETE_ACTIVITY_CALL = query("complete_activity_call", ActivityCompletion)


async def schedule_activity(
    conn: Conn,
    *,
    execution_id: str,
    task_id: str,
    run: LockedRun,
    sequence: int,
    activity_type: str,
    task_queue: str,
    arguments: str,
    retry_policy: dict[str, Any] | None,
    options: dict[str, Any],
    parallel: dict[str, Any] | None,
    schedule_to_start_s: int | None,
    schedule_to_close_s: int | None,
) -> None:
    """The execution of a step of ``run`` and its ready task."""
    await _SCHEDULE_ACTIVITY.execute(
        conn,
        execution_id=execution_id,
        run_id=run.id,
        workflow_id=run.workflow_id,
        namespace=run.namespace,
        sequence=sequence,
        activity_type=activity_type,
        task_queue=task_queue,
        arguments=arguments,
        retry_policy=retry_policy,
        options=options,
        parallel=parallel,
        schedule_to_start_s=schedule_to_start_s,
        schedule_to_close_s=schedule_to_close_s,
        task_id=task_id,
        workflow_type=run.workflow_type,
    )


async def claim_activity_task(
    conn: Conn,
    *,
    namespace: str,
    task_queue: str,
    worker_id: str,
    poll_request_id: str | None,
    activity_types: Sequence[str],
    default_lease_s: int,
    attempt_id: str,
    event_id: str,
    replay: bool = False,
) -> ClaimedActivity | None:
    """Lease the oldest ready activity task of the queue, open attempt ``attempt_id`` and
    record ActivityStarted (``event_id``), in one statement. With ``replay``, the task
    this ``poll_request_id`` already holds, if any, comes back instead (``replayed``)."""
    claimed = await _CLAIM_ACTIVITY_TASK.one(
        conn,
        replay=replay,
        namespace=namespace,
        task_queue=task_queue,
        worker_id=worker_id,
        poll_request_id=poll_request_id,
        activity_types=list(activity_types),
        default_lease_s=default_lease_s,
        attempt_id=attempt_id,
        event_id=event_id,
    )
    if claimed is not None and claimed.run_open and not claimed.replayed:
        note_new_events(claimed.run_id)
    return claimed


async def claim_activity_tasks(
    conn: Conn,
    *,
    namespace: str,
    task_queue: str,
    worker_ids: Sequence[str],
    poll_request_ids: Sequence[str | None],
    activity_types: Sequence[str],
    default_lease_s: int,
    attempt_ids: Sequence[str],
    event_ids: Sequence[str],
) -> list[BatchClaim]:
    """:func:`claim_activity_task` for several polls in one statement (the ``i``-th of
    each sequence is one poll's): up to one task each, in the polls' order."""
    claims = await _CLAIM_ACTIVITY_TASKS.all(
        conn,
        namespace=namespace,
        task_queue=task_queue,
        worker_ids=list(worker_ids),
        poll_request_ids=list(poll_request_ids),
        activity_types=list(activity_types),
        default_lease_s=default_lease_s,
        attempt_ids=list(attempt_ids),
        event_ids=list(event_ids),
    )
    for c in claims:
        if c.claimed is not None and c.claimed.run_open:
            note_new_events(c.claimed.run_id)
    return claims


async def find_polled_activity_task(
    conn: Conn, *, worker_id: str, poll_request_id: str, namespace: str, task_queue: str
) -> ClaimedActivity | None:
    """The activity task this poll already leased, on an open run, with its attempt."""
    return await _FIND_POLLED_ACTIVITY_TASK.one(
        conn,
        worker_id=worker_id,
        poll_request_id=poll_request_id,
        namespace=namespace,
        task_queue=task_queue,
    )


async def lock_activity_call(
    conn: Conn, *, task_id: str, attempt_id: str, namespace: str
) -> LockedActivityCall | None:
    """Lock the activity task ``task_id`` of ``namespace``, its run and its execution."""
    return await _LOCK_ACTIVITY_CALL.one(
        conn, task_id=task_id, attempt_id=attempt_id, namespace=namespace
    )


async def lock_activity_execution(conn: Conn, execution_id: str) -> ActivityExecution | None:
    return await _LOCK_ACTIVITY_EXECUTION.one(conn, id=execution_id)


async def set_task_attempt(
    conn: Conn, task_id: str, *, activity_attempt_id: str | None, attempt: int
) -> None:
    await _SET_TASK_ATTEMPT.execute(
        conn, id=task_id, activity_attempt_id=activity_attempt_id, attempt=attempt
    )


async def close_activity_attempt(
    conn: Conn, attempt_id: str, *, status: str, failure: dict[str, Any] | None
) -> None:
    await _CLOSE_ACTIVITY_ATTEMPT.execute(conn, id=attempt_id, status=status, failure=failure)


async def close_activity_execution(
    conn: Conn,
    execution_id: str,
    *,
    status: str,
    result: str | None,
    failure: dict[str, Any] | None,
) -> None:
    await _CLOSE_ACTIVITY_EXECUTION.execute(
        conn, id=execution_id, status=status, result=result, failure=failure
    )


async def cancel_claimed_activity(
    conn: Conn, *, attempt_id: str | None, execution_id: str, task_id: str
) -> None:
    """Retire an attempt, its execution and its task leased on a run that has closed."""
    await _CANCEL_CLAIMED_ACTIVITY.execute(
        conn, attempt_id=attempt_id, execution_id=execution_id, task_id=task_id
    )


async def schedule_activity_retry(
    conn: Conn, *, task_id: str, execution_id: str, backoff_s: int
) -> datetime:
    """The task is ready again after ``backoff_s``; returns when."""
    available_at: datetime = await _SCHEDULE_ACTIVITY_RETRY.fetchval(
        conn, task_id=task_id, execution_id=execution_id, backoff_s=backoff_s
    )
    return available_at


async def record_activity_heartbeat(
    conn: Conn, *, execution_id: str, attempt_id: str, details: dict[str, Any] | None
) -> Heartbeat:
    heartbeat = await _RECORD_ACTIVITY_HEARTBEAT.one(
        conn, execution_id=execution_id, attempt_id=attempt_id, details=details
    )
    assert heartbeat is not None  # the caller holds the execution locked
    return heartbeat


async def cancel_run_activities(conn: Conn, run_id: str) -> None:
    await _CANCEL_RUN_ACTIVITIES.execute(conn, run_id=run_id)


async def expire_activity_attempt(conn: Conn, attempt_id: str) -> None:
    await _EXPIRE_ACTIVITY_ATTEMPT.execute(conn, id=attempt_id)


async def complete_activity(
    conn: Conn,
    *,
    attempt_id: str,
    execution_id: str,
    result: str,
    task_id: str,
    run_id: str,
    event_id: str,
    payload: dict[str, Any],
) -> None:
    """Close the attempt, execution and task as completed and record ActivityCompleted
    (``event_id``, ``payload``) on the locked run."""
    note_new_events(run_id)
    await _COMPLETE_ACTIVITY.execute(
        conn,
        attempt_id=attempt_id,
        execution_id=execution_id,
        result=result,
        task_id=task_id,
        run_id=run_id,
        event_id=event_id,
        payload=payload,
    )


async def complete_activity_call(
    conn: Conn,
    *,
    task_id: str,
    attempt_id: str,
    namespace: str,
    lease_owner: str,
    result: str,
    event_id: str,
    wake_task_id: str,
) -> ActivityCompletion | None:
    """Fence, complete and wake in one statement (``dwtrio_complete_activity_call``,
    migrations 0010 and 0012): the attempt, execution and task close, ActivityCompleted
    (``event_id``) is recorded and the run woken (``wake_task_id`` if that creates its
    workflow task), unless the fence refuses or the step is grouped. None: no activity
    task ``task_id`` in ``namespace``."""
    done = await _COMPLETE_ACTIVITY_CALL.one(
        conn,
        task_id=task_id,
        attempt_id=attempt_id,
        namespace=namespace,
        lease_owner=lease_owner,
        result=result,
        event_id=event_id,
        wake_task_id=wake_task_id,
    )
    if done is not None and done.completed:
        note_new_events(done.run_id)
    return done
