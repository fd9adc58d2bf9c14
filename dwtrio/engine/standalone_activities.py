"""Standalone activities (docs/standalone-activities.md): start, describe, list.

A standalone activity is an activity a client starts directly. It is recorded as a
workflow instance whose id is the activity id, with one run of workflow type
``dw.standalone_activity`` (the *host run*) whose only step is the activity. The run
starts ``running`` and never gets a workflow task: the activity is scheduled by the
start itself, through the same path a workflow's ``schedule_activity`` takes
(``activity_tasks.schedule``), so workers poll, run, retry and heartbeat it unchanged,
and the timeouts and repair loops enforce its deadlines. Its terminal outcome closes
the host run (``activity_tasks.close_host_run``): completed with the result as the
run's output, or failed (``timed_out`` for a deadline). Cancel and terminate are the
workflow routes' (``POST /api/workflows/{activity_id}/cancel``), which close the run and
with it the activity; the activity's worker learns it at its next heartbeat.

Ids are single-use, as workflow ids are here: a second start with a taken id is
refused (422 on ``activity_id``; 409 ``activity_id_reserved_in_namespace`` when the id
belongs to another namespace), whatever the first one's state.
"""

from __future__ import annotations

import base64

import attrs

from dwtrio import wire
from dwtrio.engine.activity_tasks import schedule
from dwtrio.engine.outcome import Outcome, Verdict
from dwtrio.errors import ActivityIdReservedError, ActivityNotFoundError, ValidationFailedError
from dwtrio.protocol.activities import HOST_WORKFLOW_TYPE
from dwtrio.protocol.commands import ScheduleActivity
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.responses import (
    ActivityList,
    ActivityStarted,
    ActivityView,
    ListedActivity,
)
from dwtrio.store import runs, workflows
from dwtrio.store import standalone_activities as store
from dwtrio.store.history import NewEvent, append_events
from dwtrio.store.pool import Conn
from dwtrio.store.runs import LockedRun

COMMAND_SOURCE = "control_plane"
#: The activity's step sequence in its host run (its only step).
STEP_SEQUENCE = 1


@attrs.frozen(kw_only=True)
class StartActivityCommand:
    """A validated start: the input is already the argument blob to store."""

    namespace: str
    activity_id: str
    activity_type: str
    activity_class: str | None
    task_queue: str
    input_blob: str
    business_key: str | None
    #: The schedule command a workflow would send (retry policy, timeouts).
    schedule: ScheduleActivity


async def start_activity(conn: Conn, cmd: StartActivityCommand) -> Outcome:
    """Create the host run, its start command and events, and the activity's ready task
    (handed to a parked activity poll if one takes it); one transaction.

    Returns:
        201 with :class:`ActivityStarted`; the activity queue is woken after commit.

    Raises:
        ActivityIdReservedError: the id belongs to another namespace.
        ValidationFailedError: the id is taken in this namespace (by a workflow or by
            another standalone activity).
    """
    run_id = new_id()
    times = await workflows.insert_instance_with_first_run(
        conn,
        workflows.NewRun(
            id=run_id,
            workflow_id=cmd.activity_id,
            namespace=cmd.namespace,
            workflow_type=HOST_WORKFLOW_TYPE,
            business_key=cmd.business_key,
            task_queue=cmd.task_queue,
            arguments=cmd.input_blob,
            memo={},
            search_attributes={},
            run_timeout_seconds=None,
        ),
        None,
    )
    if times is None:
        await _refuse_taken_id(conn, cmd)
    assert times is not None
    await runs.set_status(conn, run_id, "running")
    run = attrs.evolve(
        LockedRun.inserted(
            id=run_id,
            workflow_id=cmd.activity_id,
            namespace=cmd.namespace,
            workflow_type=HOST_WORKFLOW_TYPE,
            task_queue=cmd.task_queue,
            arguments=cmd.input_blob,
            compatibility=times.compatibility,
        ),
        status="running",
    )
    command_id = new_id()
    await workflows.insert_command(
        conn,
        workflows.NewCommand(
            id=command_id,
            namespace=cmd.namespace,
            workflow_id=cmd.activity_id,
            run_id=run_id,
            command_type="start",
            status="accepted",
            outcome="started_new",
            workflow_type=HOST_WORKFLOW_TYPE,
            payload=cmd.input_blob,
            command_sequence=1,  # set by insert_instance_with_first_run
            context={
                "command_name": "standalone_activity_start",
                "activity_type": cmd.activity_type,
                "task_queue": cmd.task_queue,
            },
        ),
    )
    ids = {
        "workflow_command_id": command_id,
        "workflow_instance_id": cmd.activity_id,
        "workflow_run_id": run_id,
    }
    common = {"workflow_type": HOST_WORKFLOW_TYPE, "business_key": cmd.business_key}
    outcome = Outcome(verdict=Verdict.CREATED)
    scheduled, _ = await schedule(
        conn,
        run,
        cmd.schedule,
        cmd.input_blob,
        STEP_SEQUENCE,
        outcome,
        activity_class=cmd.activity_class,
    )
    await append_events(
        conn,
        run_id,
        [
            NewEvent(
                event_type="StartAccepted",
                payload={**ids, **common, "outcome": "started_new", "rejection_reason": None},
                workflow_command_id=command_id,
            ),
            NewEvent(
                event_type="WorkflowStarted",
                payload={**ids, **common, "task_queue": cmd.task_queue},
                workflow_command_id=command_id,
            ),
            scheduled,
        ],
    )
    view = await store.get_standalone_activity(conn, cmd.namespace, cmd.activity_id)
    assert view is not None and view.execution_id is not None  # written just above
    outcome.body = ActivityStarted(
        activity_id=cmd.activity_id,
        activity_execution_id=view.execution_id,
        workflow_id=cmd.activity_id,
        workflow_run_id=run_id,
        workflow_type=HOST_WORKFLOW_TYPE,
        activity_type=cmd.activity_type,
        activity_class=cmd.activity_class or cmd.activity_type,
        task_queue=cmd.task_queue,
        namespace=cmd.namespace,
        status="running",
        payload_codec="avro",
        started_at=wire.iso_z(times.started_at),
        schedule_to_start_deadline_at=wire.iso_z(view.schedule_to_start_deadline_at),
        schedule_to_close_deadline_at=wire.iso_z(view.schedule_to_close_deadline_at),
        command_status="accepted",
        command_source=COMMAND_SOURCE,
    )
    return outcome


async def _refuse_taken_id(conn: Conn, cmd: StartActivityCommand) -> None:
    """The id is taken: raise the refusal that fits whoever holds it."""
    holder = await workflows.get_instance_for_start(conn, cmd.activity_id)
    if holder is not None and holder.namespace != cmd.namespace:
        raise ActivityIdReservedError(
            f"Identifier {cmd.activity_id!r} is already reserved in another namespace.",
            activity_id=cmd.activity_id,
            command_status="rejected",
            rejection_reason=ActivityIdReservedError.reason,
        )
    if holder is not None and holder.workflow_type != HOST_WORKFLOW_TYPE:
        message = (
            f"Identifier {cmd.activity_id!r} is already used by a workflow of type "
            f"{holder.workflow_type!r}."
        )
    else:
        message = f"Standalone activity {cmd.activity_id!r} has already been started."
    raise ValidationFailedError({"activity_id": [message]})


async def describe_activity(conn: Conn, namespace: str, activity_id: str) -> ActivityView:
    """The host run and its activity, in one view.

    Raises:
        ActivityNotFoundError: no standalone activity of this id in ``namespace`` (a
            workflow of that id is not one).
    """
    row = await store.get_standalone_activity(conn, namespace, activity_id)
    if row is None:
        raise ActivityNotFoundError("Standalone activity not found.", activity_id=activity_id)
    result = None
    if row.activity_status == "completed" and row.result is not None:
        result = {"codec": "avro", "blob": row.result}
    return ActivityView(
        activity_id=row.activity_id,
        workflow_id=row.activity_id,
        workflow_run_id=row.run_id,
        workflow_type=row.workflow_type,
        namespace=row.namespace,
        activity_type=row.activity_type,
        activity_class=row.activity_class,
        activity_execution_id=row.execution_id,
        activity_status=row.activity_status,
        attempt_count=row.attempt_count,
        task_queue=row.task_queue,
        business_key=row.business_key,
        status=row.status,
        status_bucket=row.status_bucket,
        closed_reason=row.closed_reason,
        started_at=wire.iso_z(row.started_at),
        closed_at=wire.iso_z(row.closed_at),
        last_progress_at=wire.iso_z(row.last_progress_at),
        compatibility=row.compatibility,
        payload_codec=row.payload_codec,
        schedule_to_start_deadline_at=wire.iso_z(row.schedule_to_start_deadline_at),
        schedule_to_close_deadline_at=wire.iso_z(row.schedule_to_close_deadline_at),
        last_heartbeat_at=wire.iso_z(row.last_heartbeat_at),
        result=result,
    )


def encode_page_token(skip: int) -> str:
    return base64.b64encode(str(skip).encode()).decode()


def decode_page_token(token: str | None) -> int:
    """Rows to skip; an absent or unreadable token starts at the first page (as the
    reference does)."""
    if not token:
        return 0
    try:
        text = base64.b64decode(token, validate=True).decode()
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        return 0
    # A count of rows; more digits than any table holds is as unreadable as letters.
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else 0


async def list_activities(
    conn: Conn, namespace: str, *, status: str | None, page_size: int, page_token: str | None
) -> ActivityList:
    """A page of the namespace's standalone activities, newest first."""
    skip = decode_page_token(page_token)
    rows = await store.list_standalone_activities(
        conn, namespace, status=status, skip=skip, limit=page_size + 1
    )
    page = rows[:page_size]
    items: list[ListedActivity] = [
        ListedActivity(
            activity_id=r.activity_id,
            workflow_run_id=r.run_id,
            activity_type=r.activity_type,
            activity_class=r.activity_class,
            task_queue=r.task_queue,
            status=r.status,
            status_bucket=r.status_bucket,
            business_key=r.business_key,
            started_at=wire.iso_z(r.started_at),
            closed_at=wire.iso_z(r.closed_at),
        )
        for r in page
    ]
    more = len(rows) > page_size
    return ActivityList(
        activities=items,
        activity_count=len(items),
        next_page_token=encode_page_token(skip + page_size) if more else None,
    )
