"""Workflow updates (control-plane.md §5.9, commands.md §5.9, history-events.md §4.5).

An accepted update is a ``workflow_commands`` row, a ``workflow_updates`` row
(status ``accepted``) and an ``UpdateAccepted`` event. Its handler runs in an
*update task*: a workflow task carrying ``workflow_update_id``. A run has at
most one open workflow task, so an update that arrives while another task is
open is queued and gets its task when that one closes
(:func:`create_next_workflow_task`, called wherever a workflow task closes);
queued updates go before the ordinary follow-up, which is kept pending. The
worker answers with ``complete_update`` / ``fail_update``
(``engine/commands/updates.py``); callers waiting with ``wait_for=completed``
park on :func:`answer_key`, published after that commit. A run that closes
fails its still-open updates (:func:`fail_open_updates`).

Store operations here run in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio import payloads, wire
from dwtrio.engine.outcome import Outcome, Verdict
from dwtrio.engine.wakes import create_workflow_task, offer_workflow_task
from dwtrio.errors import (
    HistoricalRunCommandRejectedError,
    InstanceNotFoundError,
    RequestIdConflictError,
    RetryableStoreError,
)
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.responses import UpdateRejected
from dwtrio.store import runs, tasks, updates
from dwtrio.store import workflows as store
from dwtrio.store.history import NewEvent, append_events
from dwtrio.store.pool import Conn
from dwtrio.store.runs import LockedRun
from dwtrio.store.updates import UpdateView

ANSWER_KIND = "update_answer"
COMMAND_SOURCE = "control_plane"
#: The refusal of an update to a standalone activity's host run (docs/standalone-activities.md).
STANDALONE_ACTIVITY = "standalone_activity"
RUN_CLOSED_MESSAGE = "The workflow run closed before the update completed."
#: Attempts to pin the current run of an instance while runs roll over.
CURRENT_RUN_ATTEMPTS = 3
STATUS_CODES = {"accepted": 202, "completed": 200, "failed": 422}


def answer_key(namespace: str, update_id: str) -> tuple[str, str, str]:
    """The wake key of one update's completion."""
    return (namespace, update_id, ANSWER_KIND)


@attrs.frozen(kw_only=True)
class UpdateRequest:
    namespace: str
    workflow_id: str
    #: The run named in the path (run-targeted route), else None.
    run_id: str | None
    update_name: str
    arguments_blob: str
    request_id: str | None


@attrs.frozen(kw_only=True)
class Submitted:
    """The update the request resolved to (None when rejected), and what to answer then."""

    update: UpdateView | None
    retained: bool = False
    outcome: Outcome = attrs.field(factory=Outcome)


def update_body(
    view: UpdateView,
    *,
    workflow_id: str,
    wait_for: str,
    wait_timeout_seconds: int | None,
    wait_timed_out: bool = False,
    retained: bool = False,
) -> tuple[dict[str, Any], int]:
    """The response body and HTTP status for ``view`` (control-plane.md §5.6, §5.9)."""
    failed = view.status == "failed"
    body: dict[str, Any] = {
        "outcome": view.outcome,
        "workflow_id": workflow_id,
        "run_id": view.run_id,
        "requested_run_id": view.requested_run_id,
        "resolved_run_id": view.run_id,
        "command_id": view.command_id,
        "command_sequence": view.command_sequence,
        "target_scope": view.target_scope,
        "workflow_type": view.workflow_type,
        "command_status": "accepted",
        "command_source": COMMAND_SOURCE,
        "reason": "update_failed" if failed else None,
        "rejection_reason": None,
        "validation_errors": [],
        "update_name": view.update_name,
        "update_id": view.update_id,
        "update_status": view.status,
        "workflow_sequence": view.workflow_sequence,
        "result": payloads.plain_value(view.result),
        "result_envelope": payloads.envelope(view.result),
        "failure_id": view.failure_id,
        "failure_message": view.failure_message,
        "accepted_at": wire.iso_z(view.accepted_at),
        "applied_at": wire.iso_z(view.applied_at),
        "rejected_at": wire.iso_z(view.rejected_at),
        "closed_at": wire.iso_z(view.closed_at),
        "wait_for": wait_for,
        "wait_timed_out": wait_timed_out,
        "wait_timeout_seconds": wait_timeout_seconds,
        "request_id": view.request_id,
        "retained": retained,
    }
    if failed:
        body["message"] = view.failure_message or "The update failed."
    return body, STATUS_CODES.get(view.status, 409)


async def read_update(conn: Conn, update_id: str) -> UpdateView | None:
    return await updates.read_update(conn, update_id)


async def read_closed_update(conn: Conn, update_id: str) -> UpdateView | None:
    """The update once it is completed or failed; None while it is still open."""
    view = await read_update(conn, update_id)
    return None if view is None or view.is_open else view


# --- submit -------------------------------------------------------------------------------
async def _lock_current_run(conn: Conn, req: UpdateRequest) -> LockedRun:
    for _ in range(CURRENT_RUN_ATTEMPTS):
        current = await updates.find_update_instance(
            conn, workflow_id=req.workflow_id, namespace=req.namespace
        )
        if current is None:
            raise InstanceNotFoundError(
                f"Workflow {req.workflow_id!r} was not found.", workflow_id=req.workflow_id
            )
        if req.run_id is not None and req.run_id != current:
            raise HistoricalRunCommandRejectedError(
                f"Run {req.run_id!r} is not the current run of workflow {req.workflow_id!r}.",
                workflow_id=req.workflow_id,
                run_id=req.run_id,
                target_scope="run",
            )
        run = await runs.lock_run(conn, current)
        if run is not None and await store.get_current_run_id(conn, req.workflow_id) == run.id:
            return run
    raise RetryableStoreError("The workflow instance changed during the update; retry.")


async def _retained(conn: Conn, req: UpdateRequest) -> UpdateView | None:
    """The update already accepted for ``req.request_id``; 409 if it had another intent."""
    if req.request_id is None:
        return None
    row = await updates.find_retained_update(
        conn, workflow_id=req.workflow_id, request_id=req.request_id
    )
    if row is None:
        return None
    view = await read_update(conn, row.update_id)
    assert view is not None  # same transaction, joined on the same key
    conflict = {
        key: {"retained": old, "requested": new}
        for key, old, new in (
            ("update_name", row.update_name, req.update_name),
            ("arguments", row.payload, req.arguments_blob),
            ("run_id", row.requested_run_id, req.run_id),
        )
        if old != new
    }
    if conflict:
        raise RequestIdConflictError(
            f"request_id {req.request_id!r} was already used for a different update.",
            request_id=req.request_id,
            retained_command_id=view.command_id,
            retained_command_type="update",
            retained_outcome=view.outcome,
            conflict=conflict,
            update_name=req.update_name,
        )
    return view


def _rejected(req: UpdateRequest, run: LockedRun, reason: str = "run_not_active") -> Outcome:
    if reason == STANDALONE_ACTIVITY:
        message = "The run hosts a standalone activity; it has no update handlers."
        outcome = "rejected_standalone_activity"
    else:
        message = f"The workflow run is {run.status}; it no longer accepts updates."
        outcome = "rejected_not_active"
    return Outcome(
        verdict=Verdict.REJECTED,
        body=UpdateRejected(
            message=message,
            outcome=outcome,
            workflow_id=req.workflow_id,
            run_id=run.id,
            requested_run_id=req.run_id,
            resolved_run_id=run.id,
            target_scope="instance" if req.run_id is None else "run",
            workflow_type=run.workflow_type,
            command_status="rejected",
            command_source=COMMAND_SOURCE,
            reason=reason,
            rejection_reason=reason,
            validation_errors=[],
            update_name=req.update_name,
            update_status="rejected",
            run_status=run.status,
        ),
    )


async def submit(conn: Conn, req: UpdateRequest) -> Submitted:
    """Accept an update on the current run (or return the one retained for its request_id).

    Raises:
        InstanceNotFoundError: no such instance in the namespace.
        HistoricalRunCommandRejectedError: the path's run is not the current run.
        RequestIdConflictError: the request_id was used for a different update.
    """
    run = await _lock_current_run(conn, req)
    if (retained := await _retained(conn, req)) is not None:
        return Submitted(update=retained, retained=True)
    if not run.is_open:
        return Submitted(update=None, outcome=_rejected(req, run))
    if run.hosts_standalone_activity:
        # No workflow code would run its handler: refused, nothing recorded.
        return Submitted(update=None, outcome=_rejected(req, run, STANDALONE_ACTIVITY))
    command_id, update_id = new_id(), new_id()
    await updates.insert_update_command(
        conn,
        id=command_id,
        run=run,
        requested_run_id=req.run_id,
        target_scope="instance" if req.run_id is None else "run",
        payload=req.arguments_blob,
        command_sequence=await store.allocate_command_sequence(conn, run.id),
        request_id=req.request_id,
    )
    await updates.insert_workflow_update(
        conn,
        id=update_id,
        command_id=command_id,
        workflow_id=req.workflow_id,
        run_id=run.id,
        update_name=req.update_name,
        arguments=req.arguments_blob,
    )
    await append_events(
        conn,
        run.id,
        [
            NewEvent(
                event_type="UpdateAccepted",
                payload={
                    "update_id": update_id,
                    "update_name": req.update_name,
                    "arguments": payloads.envelope(req.arguments_blob),
                    "workflow_command_id": command_id,
                    "workflow_instance_id": req.workflow_id,
                    "workflow_run_id": run.id,
                },
                workflow_command_id=command_id,
            )
        ],
    )
    outcome = Outcome()
    # With a workflow task open the update waits for it (one open task per run).
    if await tasks.open_workflow_task_state(conn, run.id) is None:
        await _create_update_task(conn, run, outcome, new_id(), update_id)
    view = await read_update(conn, update_id)
    assert view is not None  # inserted above
    return Submitted(update=view, outcome=outcome)


# --- task scheduling and run closing -------------------------------------------------------
async def _create_update_task(
    conn: Conn, run: LockedRun, outcome: Outcome, task_id: str, update_id: str
) -> None:
    await updates.insert_update_task(conn, task_id, run, update_id=update_id)
    offer_workflow_task(run, task_id, outcome)


async def create_next_workflow_task(
    conn: Conn, run: LockedRun, outcome: Outcome, task_id: str | None, update_id: str | None
) -> None:
    """After a workflow task closed on an open run: its follow-up, queued updates first.

    ``task_id`` is the ordinary follow-up task the caller wants (None: none).
    ``update_id`` is the run's oldest queued update, read by the statement that
    closed the task (``settle_and_complete_workflow_task``); it gets the run's
    one open task instead, and the ordinary follow-up stays pending
    (``wake_pending``) until that update task completes.
    """
    if update_id is None:
        if task_id is not None:
            await create_workflow_task(conn, run, outcome, task_id)
        return
    await _create_update_task(conn, run, outcome, task_id or new_id(), update_id)
    if task_id is not None:
        await runs.set_wake_pending(conn, run.id, True)


async def fail_open_updates(conn: Conn, run_id: str, namespace: str, outcome: Outcome) -> None:
    """The run closed: its open updates fail, and their waiting callers are answered."""
    for update_id in await updates.fail_open_updates_of_run(
        conn, run_id, message=RUN_CLOSED_MESSAGE
    ):
        outcome.wakes.add(answer_key(namespace, update_id))
