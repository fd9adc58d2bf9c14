"""Workflow start (control-plane.md §5.1): one transaction per start.

:func:`start_workflow` is a store operation (``async def op(conn, ...)``) run
with ``rt.store.transaction``. It returns an :class:`Outcome` whose body and
status are the HTTP answer for every start outcome, including the 409
``rejected_duplicate`` (which must commit its command record, so it is not an
exception). Errors that write nothing are raised: 409
``workflow_id_reserved_in_namespace`` and 422 on a ``workflow_type`` mismatch.

Lock order: a new start holds only its own new rows. A duplicate start reads
the instance without locking it, then locks the current run and re-checks that
it is still current, so it never holds the instance row while waiting for a
run lock (continue-as-new may lock run then instance).
"""

from __future__ import annotations

import functools
from typing import Any

import attrs

from dwtrio import wire
from dwtrio.engine.outcome import Outcome, Verdict
from dwtrio.engine.wakes import create_workflow_task
from dwtrio.engine.workflow_tasks import ClaimParams, history_page_of, task_body
from dwtrio.errors import RetryableStoreError, ValidationFailedError, WorkflowIdReservedError
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.responses import OMIT, StartResponse
from dwtrio.store import runs
from dwtrio.store import workflows as store
from dwtrio.store.history import NewEvent, append_events
from dwtrio.store.pool import Conn
from dwtrio.store.runs import LockedRun
from dwtrio.store.tasks import ClaimedWorkflowTask

COMMAND_SOURCE = "control_plane"
STARTED_NEW = "started_new"
RETURNED_EXISTING_ACTIVE = "returned_existing_active"
REJECTED_DUPLICATE = "rejected_duplicate"
INSTANCE_ALREADY_STARTED = "instance_already_started"
#: Attempts to pin the current run of an existing instance while runs roll over.
CURRENT_RUN_ATTEMPTS = 3


@attrs.frozen(kw_only=True)
class StartCommand:
    """A validated start: the input is already the blob to store."""

    namespace: str
    workflow_id: str
    workflow_type: str
    task_queue: str
    input_blob: str
    business_key: str | None = None
    memo: dict[str, Any] = attrs.field(factory=dict)
    search_attributes: dict[str, Any] = attrs.field(factory=dict)
    duplicate_policy: str = "fail"
    execution_timeout_seconds: int | None = None
    run_timeout_seconds: int | None = None


def start_body(
    *,
    workflow_id: str,
    run_id: str,
    workflow_type: str,
    namespace: str,
    status: str,
    business_key: str | None,
    outcome: str,
    rejection_reason: str | None = None,
    message: str = OMIT,
) -> StartResponse:
    return StartResponse(
        workflow_id=workflow_id,
        run_id=run_id,
        workflow_type=workflow_type,
        namespace=namespace,
        status=status,
        business_key=business_key,
        payload_codec="avro",
        outcome=outcome,
        reason=rejection_reason,
        rejection_reason=rejection_reason,
        command_status="rejected" if rejection_reason else "accepted",
        command_source=COMMAND_SOURCE,
        message=message,
    )


def _start_events(
    cmd: StartCommand, run_id: str, command_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The payloads of StartAccepted and WorkflowStarted (without the run's deadlines)."""
    ids = {
        "workflow_command_id": command_id,
        "workflow_instance_id": cmd.workflow_id,
        "workflow_run_id": run_id,
    }
    common = {
        "workflow_type": cmd.workflow_type,
        "business_key": cmd.business_key,
        "memo": cmd.memo,
        "search_attributes": cmd.search_attributes,
    }
    accepted = {**ids, **common, "outcome": STARTED_NEW, "rejection_reason": None}
    started = {
        **ids,
        **common,
        "task_queue": cmd.task_queue,
        "execution_timeout_seconds": cmd.execution_timeout_seconds,
        "run_timeout_seconds": cmd.run_timeout_seconds,
        "continued_from_run_id": None,
    }
    return accepted, started


async def start_fresh(
    conn: Conn, cmd: StartCommand, lease: ClaimParams | None = None
) -> Outcome | None:
    """Start a workflow id nobody holds, as one statement outside any transaction.

    The common start costs one round trip instead of six. Returns None when the
    id is taken; the caller then runs :func:`start_workflow`, which answers for
    the existing instance (duplicate policies, reservations, type mismatch).

    With ``lease`` (a parked poll reserved for a sync match, whose types accept
    ``cmd.workflow_type``), the first workflow task is written leased to that
    poll and returned as ``outcome.handoff``, its wire body; nothing is woken.
    Unless that poll's claim could not take it (the queue's promoted build is not
    the worker's, or the worker's cohort drains): then the task is written ready
    and the queue woken, as without ``lease``.
    """
    run_id, command_id, task_id = new_id(), new_id(), new_id()
    accepted, started = _start_events(cmd, run_id, command_id)
    rows = await store.start_new_workflow(
        conn,
        _new_run(cmd, run_id),
        execution_timeout_seconds=cmd.execution_timeout_seconds,
        command_id=command_id,
        command_context={"duplicate_policy": cmd.duplicate_policy},
        accepted_payload=accepted,
        started_payload=started,
        accepted_event_id=new_id(),
        started_event_id=new_id(),
        task_id=task_id,
        lease_owner=None if lease is None else lease.worker_id,
        poll_request_id=None if lease is None else lease.poll_request_id,
        lease_s=None if lease is None else lease.lease_s,
    )
    if not rows:
        return None
    outcome = Outcome(verdict=Verdict.CREATED)
    handed = lease is not None and rows[0].lease_owner is not None
    if lease is not None and handed:
        outcome.handoff = _first_task_body(cmd, run_id, task_id, rows, lease.page_size)
    else:
        outcome.wake(cmd.namespace, cmd.task_queue, "workflow")
    outcome.body = start_body(
        workflow_id=cmd.workflow_id,
        run_id=run_id,
        workflow_type=cmd.workflow_type,
        namespace=cmd.namespace,
        status="running" if handed else "pending",
        business_key=cmd.business_key,
        outcome=STARTED_NEW,
    )
    return outcome


def _first_task_body(
    cmd: StartCommand, run_id: str, task_id: str, rows: list[store.StartedRow], page_size: int
) -> dict[str, Any]:
    """The poll answer for a first workflow task written leased by ``start_new_workflow``."""
    first = rows[0]
    events = [row.event for row in rows if row.event is not None]
    page, token = history_page_of(events, cmd.namespace, page_size)
    claimed = ClaimedWorkflowTask(
        id=task_id,
        run_id=run_id,
        attempt=first.attempt,
        lease_owner=first.lease_owner,
        lease_expires_at=first.lease_expires_at,
        workflow_update_id=None,
        workflow_id=cmd.workflow_id,
        workflow_type=cmd.workflow_type,
        payload_codec="avro",
        arguments=cmd.input_blob,
        last_history_sequence=len(rows),
    )
    return task_body(claimed, page, token, cmd.task_queue)


def _new_run(cmd: StartCommand, run_id: str) -> store.NewRun:
    return store.NewRun(
        id=run_id,
        workflow_id=cmd.workflow_id,
        namespace=cmd.namespace,
        workflow_type=cmd.workflow_type,
        business_key=cmd.business_key,
        task_queue=cmd.task_queue,
        arguments=cmd.input_blob,
        memo=cmd.memo,
        search_attributes=cmd.search_attributes,
        run_timeout_seconds=cmd.run_timeout_seconds,
    )


async def start_workflow(conn: Conn, cmd: StartCommand) -> Outcome:
    """Start ``cmd.workflow_id`` or answer for the instance that already has it.

    Returns:
        201 ``started_new`` (wakes the task queue), 200 ``returned_existing_active``
        or 409 ``rejected_duplicate`` with reason ``instance_already_started``.

    Raises:
        WorkflowIdReservedError: the id belongs to another namespace.
        ValidationFailedError: the id exists with another workflow type.
        RetryableStoreError: the instance vanished or kept rolling over mid-start.
    """
    run_id = new_id()
    times = await store.insert_instance_with_first_run(
        conn, _new_run(cmd, run_id), cmd.execution_timeout_seconds
    )
    if times is None:
        return await _start_existing(conn, cmd)
    return await _start_new(conn, cmd, run_id, times)


async def _start_new(conn: Conn, cmd: StartCommand, run_id: str, times: store.RunTimes) -> Outcome:
    run = LockedRun.inserted(
        id=run_id,
        workflow_id=cmd.workflow_id,
        namespace=cmd.namespace,
        workflow_type=cmd.workflow_type,
        task_queue=cmd.task_queue,
        arguments=cmd.input_blob,
        compatibility=times.compatibility,
    )
    command_id = new_id()
    await store.insert_command(
        conn,
        store.NewCommand(
            id=command_id,
            namespace=cmd.namespace,
            workflow_id=cmd.workflow_id,
            run_id=run_id,
            command_type="start",
            status="accepted",
            outcome=STARTED_NEW,
            workflow_type=cmd.workflow_type,
            payload=cmd.input_blob,
            command_sequence=1,  # set by insert_instance_with_first_run
            context={"duplicate_policy": cmd.duplicate_policy},
        ),
    )
    accepted, started = _start_events(cmd, run_id, command_id)
    started["execution_deadline_at"] = wire.iso_z(times.execution_deadline_at)
    started["run_deadline_at"] = wire.iso_z(times.run_deadline_at)
    await append_events(
        conn,
        run_id,
        [
            NewEvent(event_type="StartAccepted", payload=accepted, workflow_command_id=command_id),
            NewEvent(event_type="WorkflowStarted", payload=started, workflow_command_id=command_id),
        ],
    )
    outcome = Outcome(verdict=Verdict.CREATED)
    await create_workflow_task(conn, run, outcome)
    outcome.body = start_body(
        workflow_id=cmd.workflow_id,
        run_id=run_id,
        workflow_type=cmd.workflow_type,
        namespace=cmd.namespace,
        status=run.status,
        business_key=cmd.business_key,
        outcome=STARTED_NEW,
    )
    return outcome


async def _lock_current_run(
    conn: Conn, cmd: StartCommand
) -> tuple[store.InstanceForStart, LockedRun]:
    for _ in range(CURRENT_RUN_ATTEMPTS):
        instance = await store.get_instance_for_start(conn, cmd.workflow_id)
        if instance is None or instance.current_run_id is None:
            break
        if instance.namespace != cmd.namespace:
            raise WorkflowIdReservedError(
                f"Workflow id {cmd.workflow_id!r} is already in use; choose another id.",
                workflow_id=cmd.workflow_id,
            )
        if instance.workflow_type != cmd.workflow_type:
            raise ValidationFailedError(
                {
                    "workflow_type": [
                        f"Workflow {cmd.workflow_id!r} already exists with workflow type "
                        f"{instance.workflow_type!r}."
                    ]
                }
            )
        run = await runs.lock_run(conn, instance.current_run_id)
        if run is not None and await store.get_current_run_id(conn, cmd.workflow_id) == run.id:
            return instance, run
    raise RetryableStoreError("The workflow instance changed during the start; retry.")


async def _start_existing(conn: Conn, cmd: StartCommand) -> Outcome:
    instance, run = await _lock_current_run(conn, cmd)
    command = store.NewCommand(
        id=new_id(),
        namespace=cmd.namespace,
        workflow_id=cmd.workflow_id,
        run_id=run.id,
        command_type="start",
        status="accepted",
        outcome=RETURNED_EXISTING_ACTIVE,
        workflow_type=cmd.workflow_type,
        payload=cmd.input_blob,
        command_sequence=await store.allocate_command_sequence(conn, run.id),
        context={"duplicate_policy": cmd.duplicate_policy},
    )
    body = functools.partial(
        start_body,
        workflow_id=cmd.workflow_id,
        run_id=run.id,
        workflow_type=run.workflow_type,
        namespace=cmd.namespace,
        status=run.status,
        business_key=instance.business_key,
    )
    if cmd.duplicate_policy == "use-existing" and run.is_open:
        await store.insert_command(conn, command)
        return Outcome(body=body(outcome=RETURNED_EXISTING_ACTIVE))
    message = f"Workflow {cmd.workflow_id!r} has already been started."
    command = attrs.evolve(
        command,
        status="rejected",
        outcome=REJECTED_DUPLICATE,
        rejection_reason=INSTANCE_ALREADY_STARTED,
    )
    await store.insert_command(conn, command)
    await append_events(
        conn,
        run.id,
        [
            NewEvent(
                event_type="StartRejected",
                payload={
                    "workflow_command_id": command.id,
                    "workflow_instance_id": cmd.workflow_id,
                    "workflow_run_id": run.id,
                    "workflow_type": cmd.workflow_type,
                    "outcome": REJECTED_DUPLICATE,
                    "rejection_reason": INSTANCE_ALREADY_STARTED,
                },
                workflow_command_id=command.id,
            )
        ],
    )
    return Outcome(
        body=body(
            outcome=REJECTED_DUPLICATE,
            rejection_reason=INSTANCE_ALREADY_STARTED,
            message=message,
        ),
        verdict=Verdict.REJECTED,
    )
