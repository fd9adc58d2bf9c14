"""Workflow tasks: claim, history pages, complete, fail, heartbeat.

Every function here is a store operation (``async def op(conn, ...)``) that the
HTTP layer runs with ``rt.store.transaction`` — one transaction and one bridge
crossing per use case. They return plain bodies or an ``Outcome`` and never
publish wakes themselves.
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import Any

import attrs

from dwtrio import wire
from dwtrio.engine import admission, claims
from dwtrio.engine.closing import close_run
from dwtrio.engine.commands import HANDLERS, Completion
from dwtrio.engine.commands.conditions import close_open_wait
from dwtrio.engine.commands.context import CommandLimits
from dwtrio.engine.outcome import Outcome
from dwtrio.engine.updates import create_next_workflow_task
from dwtrio.errors import (
    InvalidCommandsError,
    InvalidPageTokenError,
    LeaseExpiredError,
    LeaseOwnerMismatchError,
    RunClosedError,
    TaskNotFoundError,
    TaskNotLeasedError,
    ValidationFailedError,
    WorkflowTaskAttemptMismatchError,
)
from dwtrio.protocol.admission import Blocked, Throttled
from dwtrio.protocol.commands import CompleteUpdate, FailUpdate, parse_commands
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.responses import WorkflowTaskCompleted, WorkflowTaskFailed, render
from dwtrio.protocol.worker import CompleteWorkflowTask, FailWorkflowTask, WorkflowTaskLease
from dwtrio.store import handoffs, runs, tasks
from dwtrio.store.history import EventRow, append_events, list_events
from dwtrio.store.pool import Conn
from dwtrio.store.runs import LockedRun
from dwtrio.store.tasks import ClaimedWorkflowTask

WAITING_FOR_HISTORY = "WorkflowTaskWaitingForHistory"
MAX_RETRY_BACKOFF_S = 60


@attrs.frozen(kw_only=True)
class ClaimParams(claims.ClaimParams):
    workflow_types: tuple[str, ...]
    lease_s: int
    page_size: int


def encode_page_token(after_sequence: int) -> str:
    return base64.b64encode(str(after_sequence).encode()).decode()


def decode_page_token(token: str) -> int:
    try:
        value = base64.b64decode(token, validate=True).decode()
        after = int(value)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidPageTokenError("The history page token is invalid.") from None
    if after < 0:
        raise InvalidPageTokenError("The history page token is invalid.")
    return after


def event_body(event: EventRow, namespace: str) -> dict[str, Any]:
    return {
        "id": event.id,
        "sequence": event.sequence,
        "event_type": event.event_type,
        "namespace": namespace,
        "payload": event.payload,
        "workflow_task_id": event.workflow_task_id,
        "workflow_command_id": event.workflow_command_id,
        "recorded_at": wire.iso_z(event.recorded_at),
    }


def envelope(blob: str | None, codec: str | None = "avro") -> dict[str, str] | None:
    return None if blob is None else {"codec": codec or "avro", "blob": blob}


def history_page_of(
    events: list[EventRow], namespace: str, page_size: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``events`` (read with one more than ``page_size``) and its next-page token."""
    more = len(events) > page_size
    events = events[:page_size]
    token = encode_page_token(events[-1].sequence) if more and events else None
    return [event_body(e, namespace) for e in events], token


async def _history_page(
    conn: Conn, run_id: str, namespace: str, after: int, page_size: int
) -> tuple[list[dict[str, Any]], str | None]:
    events = await list_events(conn, run_id, after, page_size + 1)
    return history_page_of(events, namespace, page_size)


def task_body(
    claimed: ClaimedWorkflowTask, events: list[dict[str, Any]], token: str | None, queue: str
) -> dict[str, Any]:
    body = {
        "task_id": claimed.id,
        "workflow_id": claimed.workflow_id,
        "run_id": claimed.run_id,
        "workflow_task_attempt": claimed.attempt,
        "workflow_type": claimed.workflow_type,
        "payload_codec": "avro",
        "arguments": envelope(claimed.arguments, claimed.payload_codec),
        "run_status": "running",
        "last_history_sequence": claimed.last_history_sequence,
        "total_history_events": claimed.last_history_sequence,
        "history_events": events,
        "next_history_page_token": token,
        "task_queue": queue,
        "lease_owner": claimed.lease_owner,
        "lease_expires_at": wire.iso_z(claimed.lease_expires_at),
    }
    if claimed.workflow_update_id is not None:
        # An update task: the worker runs this update's handler (commands.md §5.9).
        body["workflow_update_id"] = claimed.workflow_update_id
    return body


async def claim(
    conn: Conn, params: ClaimParams, *, replay_poll: bool
) -> dict[str, Any] | Throttled | Blocked | None:
    """Lease the next workflow task of the queue and build its wire body, or None.

    With ``replay_poll``, a task already leased to this ``poll_request_id`` is
    returned again (the SDK retries a poll whose response it lost). On a capped
    queue (``params.caps``) the claim is admitted first and may answer
    ``Throttled``; a worker whose build-id cohort drains gets ``BLOCKED``
    (``engine/admission.py``).

    Uncapped, it runs without an explicit transaction: the claim is one statement
    (lease the task, mark the run running) and the rest are reads. The history is
    read by a later statement on purpose, so it sees every event committed by a
    wake that the claim waited for on the run row lock. A capped claim runs in a
    transaction (its admission lock is held until the claim commits).
    """
    claimed = None
    if replay_poll and params.poll_request_id:
        claimed = await tasks.find_polled_workflow_task(conn, **params.held_by_poll())
    if claimed is None:
        if params.caps is not None:
            throttled = await admission.admit(conn, params.caps)
            if throttled is not None:
                return throttled
        claimed = await tasks.claim_workflow_task(
            conn,
            namespace=params.namespace,
            task_queue=params.task_queue,
            worker_id=params.worker_id,
            poll_request_id=params.poll_request_id,
            workflow_types=params.workflow_types,
            lease_s=params.lease_s,
        )
        if claimed is None:
            return await admission.refused(conn, params)
        if params.caps is not None:
            await admission.record(conn, params.caps)
    events, token = await _history_page(conn, claimed.run_id, params.namespace, 0, params.page_size)
    return task_body(claimed, events, token, params.task_queue)


async def lease_created(conn: Conn, params: ClaimParams, task_id: str) -> dict[str, Any] | None:
    """Sync match (``store/offers.py``): lease the ready task ``task_id``, written by
    this transaction, to the parked poll of ``params`` and build its wire body, as
    :func:`claim` would; None when that poll's claim could not take it (another
    type, the run pinned to another build, or the worker's cohort drains). Runs at the end of the
    creating operation, so the history page holds every event it appended."""
    claimed = await handoffs.lease_created_workflow_task(
        conn,
        task_id,
        namespace=params.namespace,
        task_queue=params.task_queue,
        worker_id=params.worker_id,
        poll_request_id=params.poll_request_id,
        workflow_types=params.workflow_types,
        lease_s=params.lease_s,
    )
    if claimed is None:
        return None
    events, token = await _history_page(conn, claimed.run_id, params.namespace, 0, params.page_size)
    return task_body(claimed, events, token, params.task_queue)


async def release(conn: Conn, task: dict[str, Any]) -> tuple[str, str, str] | None:
    """Undo a lease whose response could not be delivered; returns the queue to wake."""
    return await tasks.release_task(
        conn,
        task["task_id"],
        attempt=task["workflow_task_attempt"],
        lease_owner=task["lease_owner"],
    )


async def release_polled(conn: Conn, params: ClaimParams) -> tuple[str, str, str] | None:
    """Undo the lease a poll may hold without knowing it: its claim reached the
    database, then the connection failed before the answer came back. Found by
    the poll's ``poll_request_id``; returns the queue to wake."""
    if not params.poll_request_id:
        return None
    held = await tasks.find_polled_workflow_task(conn, **params.held_by_poll())
    if held is None or held.lease_owner is None:
        return None
    return await tasks.release_task(
        conn, held.id, attempt=held.attempt, lease_owner=held.lease_owner
    )


# --- fencing -------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class FencedTask:
    id: str
    run_id: str
    attempt: int
    receipt: dict[str, Any] | None
    failure_count: int
    #: Set on update tasks: the update the task runs.
    update_id: str | None
    #: The task's run, locked with it (``fence(..., with_run=True)``).
    run: LockedRun | None = None


async def fence(
    conn: Conn,
    namespace: str,
    task_id: str,
    lease: WorkflowTaskLease,
    *,
    allow_replay: bool = False,
    with_run: bool = False,
) -> FencedTask:
    """Check the caller still owns the task's lease (worker-plane fencing order).

    With ``allow_replay``, a task already completed by this same owner and
    attempt is returned (with its receipt) instead of refused, so a re-sent
    completion gets the original answer and is never applied twice.
    ``with_run`` locks the task's run in the same statement (task first).
    """
    run: LockedRun | None = None
    if with_run:
        both = await tasks.lock_workflow_task_and_run(conn, task_id)
        row, run = (None, None) if both is None else (both.task, both.run)
    else:
        row = await tasks.lock_task(conn, task_id)
    fields = {"task_id": task_id, "workflow_task_attempt": lease.workflow_task_attempt}
    if row is None or row.namespace != namespace or row.kind != "workflow":
        raise TaskNotFoundError("Workflow task not found.", **fields)
    task = FencedTask(
        id=row.id,
        run_id=row.run_id,
        attempt=row.attempt,
        receipt=row.receipt,
        failure_count=row.failure_count,
        update_id=row.workflow_update_id,
        run=run,
    )
    if row.state != "leased":
        receipt = row.receipt or {}
        if (
            allow_replay
            and row.state == "completed"
            and receipt.get("lease_owner") == lease.lease_owner
            and receipt.get("workflow_task_attempt") == lease.workflow_task_attempt
        ):
            return task
        if (
            row.state == "cancelled"
            and row.lease_owner == lease.lease_owner
            and row.attempt == lease.workflow_task_attempt
        ):
            # The run closed (cancel, terminate, timeout) under this worker's lease.
            closed = await runs.lock_run(conn, task.run_id)
            raise RunClosedError(
                "The workflow run is closed.",
                run_status=None if closed is None else closed.status,
                can_continue=False,
                **fields,
            )
        raise TaskNotLeasedError("Workflow task is not leased.", **fields)
    if row.lease_expired:
        raise LeaseExpiredError(
            "Workflow task lease has expired.",
            lease_owner=row.lease_owner,
            lease_expires_at=wire.iso_z(row.lease_expires_at),
            **fields,
        )
    if row.lease_owner != lease.lease_owner:
        raise LeaseOwnerMismatchError(
            "Workflow task lease is owned by another worker.",
            lease_owner=row.lease_owner,
            **fields,
        )
    if row.attempt != lease.workflow_task_attempt:
        raise WorkflowTaskAttemptMismatchError(
            "Workflow task attempt is not current.", current_attempt=row.attempt, **fields
        )
    return task


async def _lock_open_run(conn: Conn, task: FencedTask, lease: WorkflowTaskLease) -> LockedRun:
    """The task's run, locked (already, when fenced ``with_run``); it must be open."""
    run = task.run if task.run is not None else await runs.lock_run(conn, task.run_id)
    if run is None or not run.is_open:
        raise RunClosedError(
            "The workflow run is closed.",
            task_id=task.id,
            workflow_task_attempt=lease.workflow_task_attempt,
            run_status=None if run is None else run.status,
            can_continue=False,
        )
    return run


# --- completion ----------------------------------------------------------------------
async def complete(
    conn: Conn, namespace: str, task_id: str, req: CompleteWorkflowTask, limits: CommandLimits
) -> Outcome:
    try:
        return await _complete(conn, namespace, task_id, req, limits)
    except (InvalidCommandsError, ValidationFailedError) as exc:
        # Rejected commands: the body names the task like every fencing answer (§7.5).
        exc.fields.setdefault("task_id", task_id)
        exc.fields.setdefault("workflow_task_attempt", req.workflow_task_attempt)
        raise


async def _complete(
    conn: Conn, namespace: str, task_id: str, req: CompleteWorkflowTask, limits: CommandLimits
) -> Outcome:
    # Fencing first (worker-plane.md §7.5 order), then the whole command list is
    # validated before anything is mutated.
    task = await fence(conn, namespace, task_id, req, allow_replay=True, with_run=True)
    if task.receipt is not None:
        return Outcome(body=dict(task.receipt["body"]))
    run = await _lock_open_run(conn, task, req)
    parsed = parse_commands(req.commands)
    ctx = Completion(
        conn=conn,
        run=run,
        task_id=task.id,
        outcome=Outcome(),
        limits=limits,
        seq=run.last_step_sequence,
        update_id=task.update_id,
    )
    if task.update_id is None:  # an update task leaves the open condition wait open
        await close_open_wait(ctx)
    for index, command in enumerate(parsed):
        await HANDLERS[type(command)](ctx, command, index)
    if task.update_id is not None and not any(
        isinstance(c, (CompleteUpdate, FailUpdate)) for c in parsed
    ):
        # Otherwise the update stays open and gets a new task at once, forever.
        raise InvalidCommandsError(
            "An update task must answer its update with complete_update or fail_update."
        )
    events = [attrs.evolve(e, workflow_task_id=task.id) for e in ctx.events]
    await append_events(conn, run.id, events)
    outcome = ctx.outcome
    next_task: str | None = None
    if ctx.closing is not None:
        await close_run(
            conn,
            run,
            outcome,
            status=ctx.closing.status,
            reason=ctx.closing.reason,
            output=ctx.closing.output,
            last_step_sequence=ctx.seq,
            keep_task_id=task.id,
        )
        ctx.created.clear()
        run_status = ctx.closing.status
        for hook in ctx.after_close:
            await hook()
    else:
        run_status = "waiting"
        if run.wake_pending or ctx.wake_again:
            next_task = new_id()
            ctx.created.append(next_task)
    outcome.body = WorkflowTaskCompleted(
        task_id=task.id,
        workflow_task_attempt=req.workflow_task_attempt,
        outcome="completed",
        recorded=True,
        run_id=run.id,
        run_status=run_status,
        created_task_ids=ctx.created,
        reason=None,
    )
    if ctx.closing is not None:  # the closed run gets no follow-up task
        await tasks.complete_task(conn, task.id, receipt=_receipt(req, outcome))
    else:
        await _settle_and_close_task(conn, task.id, req, run, outcome, next_task, ctx.seq)
    return outcome


def _receipt(lease: WorkflowTaskLease, outcome: Outcome) -> dict[str, Any]:
    """What a re-sent completion of the same lease gets back."""
    return {
        "lease_owner": lease.lease_owner,
        "workflow_task_attempt": lease.workflow_task_attempt,
        "body": render(outcome.body),
    }


async def _settle_and_close_task(
    conn: Conn,
    task_id: str,
    lease: WorkflowTaskLease,
    run: LockedRun,
    outcome: Outcome,
    next_task: str | None,
    step_sequence: int,
) -> None:
    """On a run that stays open: settle the run (waiting), complete the task with its
    receipt, then create the follow-up task (a queued update first), in that order:
    a run has at most one open workflow task."""
    queued_update = await runs.settle_and_complete_workflow_task(
        conn,
        run_id=run.id,
        task_id=task_id,
        last_step_sequence=step_sequence,
        receipt=_receipt(lease, outcome),
    )
    await create_next_workflow_task(conn, run, outcome, next_task, queued_update)


# --- fail and heartbeat ------------------------------------------------------------
async def fail(conn: Conn, namespace: str, task_id: str, req: FailWorkflowTask) -> Outcome:
    """A worker gave up on a task. "Waiting for history" is a no-op completion."""
    task = await fence(conn, namespace, task_id, req, allow_replay=True)
    if task.receipt is not None:
        return Outcome(body=dict(task.receipt["body"]))
    run = await _lock_open_run(conn, task, req)
    outcome = Outcome()
    failed = functools.partial(
        WorkflowTaskFailed,
        task_id=task.id,
        workflow_task_attempt=req.workflow_task_attempt,
        recorded=True,
        reason=None,
    )
    if req.failure.get("type") == WAITING_FOR_HISTORY:
        next_task = new_id() if run.wake_pending else None
        outcome.body = failed(outcome="waiting_for_history", next_task_id=next_task)
        await _settle_and_close_task(
            conn, task.id, req, run, outcome, next_task, run.last_step_sequence
        )
        return outcome
    # A genuine failure: re-offer the same task after an exponential backoff so a
    # fixed deployment heals the run, without ever busy-looping.
    backoff_s = min(2**task.failure_count, MAX_RETRY_BACKOFF_S)
    failure = {
        **req.failure,
        "workflow_task_attempt": req.workflow_task_attempt,
        "lease_owner": req.lease_owner,
    }
    await tasks.reoffer_workflow_task(conn, task.id, backoff_s=backoff_s, failure=failure)
    await runs.set_status(conn, run.id, "waiting")
    outcome.body = failed(outcome="failed", next_task_id=task.id, retry_after_seconds=backoff_s)
    return outcome


async def heartbeat(
    conn: Conn, namespace: str, task_id: str, req: WorkflowTaskLease, lease_s: int
) -> dict[str, Any]:
    try:
        task = await fence(conn, namespace, task_id, req)
    except RunClosedError as exc:
        exc.fields.update(lease_owner=req.lease_owner, renewed=False)
        raise
    run = await runs.lock_run(conn, task.run_id)
    if run is None or not run.is_open:
        raise RunClosedError(
            "The workflow run is closed.",
            task_id=task_id,
            lease_owner=req.lease_owner,
            workflow_task_attempt=req.workflow_task_attempt,
            renewed=False,
            run_status=None if run is None else run.status,
        )
    expires = await tasks.extend_task_lease(conn, task_id, lease_s=lease_s)
    return {
        "task_id": task_id,
        "lease_owner": req.lease_owner,
        "workflow_task_attempt": req.workflow_task_attempt,
        "renewed": True,
        "lease_expires_at": wire.iso_z(expires),
        "run_status": run.status,
        "task_status": "leased",
        "reason": None,
    }


async def history_page(
    conn: Conn, namespace: str, task_id: str, token: str, req: WorkflowTaskLease, page_size: int
) -> dict[str, Any]:
    task = await fence(conn, namespace, task_id, req)
    after = decode_page_token(token)
    run = await runs.read_run_for_task(conn, task.run_id)
    if run is None or run.status not in runs.OPEN_STATUSES:
        raise RunClosedError(
            "The workflow run is closed.",
            task_id=task_id,
            workflow_task_attempt=req.workflow_task_attempt,
            run_status=None if run is None else run.status,
            can_continue=False,
        )
    events, next_token = await _history_page(conn, task.run_id, namespace, after, page_size)
    total = run.last_history_sequence
    return {
        "task_id": task_id,
        "workflow_task_attempt": req.workflow_task_attempt,
        "history_events": events,
        "total_history_events": total,
        "next_history_page_token": next_token,
    }
