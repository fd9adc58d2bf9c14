"""Workflow instances, runs (as the control plane sees them) and control-plane commands
(``schema/queries/workflows.sql``): starts, continue-as-new, describe and lists.

Asyncio-side store operations: run them through ``Store.transaction`` /
``Store.read``, or call them from an engine use case that already holds a
connection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.store import history
from dwtrio.store.history import EVENT_FIELDS, EventRow
from dwtrio.store.pool import Conn, note_new_events
from dwtrio.store.queries import query
from dwtrio.store.runs import OPEN_STATUSES


@attrs.frozen(kw_only=True)
class NewRun:
    id: str
    workflow_id: str
    namespace: str
    workflow_type: str
    business_key: str | None
    task_queue: str
    arguments: str
    memo: dict[str, Any]
    search_attributes: dict[str, Any]
    run_timeout_seconds: int | None


@attrs.frozen
class RunTimes:
    started_at: datetime
    execution_deadline_at: datetime | None
    run_deadline_at: datetime | None
    #: The build the run is pinned to: the one promoted last on its queue, if any.
    compatibility: str | None


@attrs.frozen
class InstanceForStart:
    namespace: str
    workflow_type: str
    current_run_id: str | None
    business_key: str | None


@attrs.frozen(kw_only=True)
class NewCommand:
    id: str
    namespace: str
    workflow_id: str
    run_id: str | None
    command_type: str
    status: str
    outcome: str | None
    rejection_reason: str | None = None
    workflow_type: str | None = None
    payload: str | None = None
    command_sequence: int | None = None
    target_scope: str = "instance"
    context: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class RunSummary:
    """A run as the runs list shows it."""

    run_id: str
    workflow_id: str
    namespace: str
    workflow_type: str
    business_key: str | None
    status: str
    status_bucket: str
    closed_reason: str | None
    task_queue: str
    run_number: int
    run_count: int
    is_current_run: bool
    compatibility: str | None
    payload_codec: str | None
    started_at: datetime
    closed_at: datetime | None


@attrs.frozen
class RunView(RunSummary):
    """A run as describe shows it."""

    execution_timeout_seconds: int | None
    run_timeout_seconds: int | None
    execution_deadline_at: datetime | None
    run_deadline_at: datetime | None
    arguments: str | None
    output: str | None
    memo: dict[str, Any]
    search_attributes: dict[str, Any]
    wait_kind: str | None
    wait_reason: str | None
    last_progress_at: datetime | None
    archived_at: datetime | None


@attrs.frozen
class ListedRun:
    """A run as the visibility list shows it."""

    run_id: str
    workflow_id: str
    namespace: str
    workflow_type: str
    business_key: str | None
    status: str
    status_bucket: str
    task_queue: str
    payload_codec: str | None
    memo: dict[str, Any]
    search_attributes: dict[str, Any]
    started_at: datetime
    closed_at: datetime | None


@attrs.frozen
class StartedRow:
    """A row of ``start_new_workflow``: the first task's lease, with one of the two first
    history events when that task was written leased (sync match)."""

    started_at: datetime
    attempt: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    event: EventRow | None

    COLUMNS = ("started_at", "attempt", "lease_owner", "lease_expires_at", *EVENT_FIELDS)

    @classmethod
    def from_record(cls, record: Any) -> StartedRow:
        event = None if record[4] is None else EventRow(*record[4:])
        return cls(record[0], record[1], record[2], record[3], event)


@attrs.frozen
class InstanceToContinue:
    run_count: int
    execution_timeout_seconds: int | None


@attrs.frozen
class ContinuedRun:
    """What the next run of a continued instance carried over."""

    workflow_type: str
    business_key: str | None
    memo: dict[str, Any]
    search_attributes: dict[str, Any]
    run_timeout_seconds: int | None
    execution_deadline_at: datetime | None
    run_deadline_at: datetime | None
    compatibility: str | None


_START_NEW_WORKFLOW = query("start_new_workflow", StartedRow)
_INSERT_INSTANCE_WITH_FIRST_RUN = query("insert_instance_with_first_run", RunTimes)
_GET_INSTANCE_FOR_START = query("get_instance_for_start", InstanceForStart)
_GET_CURRENT_RUN_ID = query("get_current_run_id")
_ALLOCATE_COMMAND_SEQUENCE = query("allocate_command_sequence")
_INSERT_WORKFLOW_COMMAND = query("insert_workflow_command")
_LOCK_INSTANCE_FOR_CONTINUE = query("lock_instance_for_continue", InstanceToContinue)
_INSERT_CONTINUED_RUN = query("insert_continued_run", ContinuedRun)
_GET_WORKFLOW_RUN_VIEW = query("get_workflow_run_view", RunView)
_LIST_INSTANCE_RUNS = query("list_instance_runs", RunSummary)
_WORKFLOW_RUN_STATUS = query("workflow_run_status")


# --- writes (inside the start transaction) ---------------------------------------------


async def start_new_workflow(
    conn: Conn,
    run: NewRun,
    *,
    execution_timeout_seconds: int | None,
    command_id: str,
    command_context: dict[str, Any],
    accepted_payload: dict[str, Any],
    started_payload: dict[str, Any],
    accepted_event_id: str,
    started_event_id: str,
    task_id: str,
    lease_owner: str | None,
    poll_request_id: str | None,
    lease_s: int | None,
) -> list[StartedRow]:
    """Start a workflow id nobody holds in one statement: instance, first run, start
    command, StartAccepted and WorkflowStarted, first task (leased to ``lease_owner``
    when given and that worker's claim could take it: see the query). The run and its
    task are pinned to the queue's promoted build. Empty when the id is taken."""
    note_new_events(run.id)  # (a taken id appends nothing: a wake nobody waits for)
    return await _START_NEW_WORKFLOW.all(
        conn,
        run_id=run.id,
        workflow_id=run.workflow_id,
        namespace=run.namespace,
        workflow_type=run.workflow_type,
        business_key=run.business_key,
        task_queue=run.task_queue,
        arguments=run.arguments,
        memo=run.memo,
        search_attributes=run.search_attributes,
        execution_timeout_seconds=execution_timeout_seconds,
        run_timeout_seconds=run.run_timeout_seconds,
        command_id=command_id,
        command_context=command_context,
        accepted_payload=accepted_payload,
        started_payload=started_payload,
        accepted_event_id=accepted_event_id,
        started_event_id=started_event_id,
        task_id=task_id,
        lease_owner=lease_owner,
        poll_request_id=poll_request_id,
        lease_s=lease_s,
    )


async def insert_instance_with_first_run(
    conn: Conn, run: NewRun, execution_timeout_seconds: int | None
) -> RunTimes | None:
    """Create the instance and its first run in one statement; None when the id is taken.

    The run's command counter starts at 1 (the start command); it is pinned to the
    queue's promoted build (``RunTimes.compatibility``). A concurrent
    start of the same id blocks here until the other transaction ends, then
    sees its row (None) or, if it rolled back, inserts.
    """
    return await _INSERT_INSTANCE_WITH_FIRST_RUN.one(
        conn,
        run_id=run.id,
        workflow_id=run.workflow_id,
        namespace=run.namespace,
        workflow_type=run.workflow_type,
        business_key=run.business_key,
        task_queue=run.task_queue,
        arguments=run.arguments,
        memo=run.memo,
        search_attributes=run.search_attributes,
        execution_timeout_seconds=execution_timeout_seconds,
        run_timeout_seconds=run.run_timeout_seconds,
    )


async def get_instance_for_start(conn: Conn, workflow_id: str) -> InstanceForStart | None:
    return await _GET_INSTANCE_FOR_START.one(conn, workflow_id=workflow_id)


async def get_current_run_id(conn: Conn, workflow_id: str) -> str | None:
    value = await _GET_CURRENT_RUN_ID.fetchval(conn, workflow_id=workflow_id)
    return None if value is None else str(value)


async def allocate_command_sequence(conn: Conn, run_id: str) -> int:
    """The run's next command number; the caller holds the run lock."""
    return int(await _ALLOCATE_COMMAND_SEQUENCE.fetchval(conn, run_id=run_id))


async def insert_command(conn: Conn, command: NewCommand) -> None:
    await _INSERT_WORKFLOW_COMMAND.execute(
        conn,
        id=command.id,
        namespace=command.namespace,
        workflow_id=command.workflow_id,
        run_id=command.run_id,
        command_type=command.command_type,
        target_scope=command.target_scope,
        context=command.context,
        status=command.status,
        outcome=command.outcome,
        rejection_reason=command.rejection_reason,
        workflow_type=command.workflow_type,
        payload_codec="avro" if command.payload is not None else None,
        payload=command.payload,
        command_sequence=command.command_sequence,
    )


async def lock_instance_for_continue(conn: Conn, workflow_id: str) -> InstanceToContinue:
    """Lock the instance of a locked run that continues as new."""
    instance = await _LOCK_INSTANCE_FOR_CONTINUE.one(conn, workflow_id=workflow_id)
    assert instance is not None  # the caller holds one of its runs locked
    return instance


async def insert_continued_run(
    conn: Conn,
    *,
    run_id: str,
    previous_run_id: str,
    run_number: int,
    workflow_type: str | None,
    task_queue: str,
    arguments: str,
) -> ContinuedRun:
    """The next run of the instance of ``previous_run_id``, made its current run."""
    continued = await _INSERT_CONTINUED_RUN.one(
        conn,
        run_id=run_id,
        previous_run_id=previous_run_id,
        run_number=run_number,
        workflow_type=workflow_type,
        task_queue=task_queue,
        arguments=arguments,
    )
    assert continued is not None  # the previous run and its instance are locked
    return continued


# --- reads -------------------------------------------------------------------------


async def get_run_view(
    conn: Conn, namespace: str, workflow_id: str, run_id: str | None = None
) -> RunView | None:
    """One run (the current one when ``run_id`` is None) of an instance in ``namespace``."""
    return await _GET_WORKFLOW_RUN_VIEW.one(
        conn, workflow_id=workflow_id, namespace=namespace, run_id=run_id
    )


async def list_runs(conn: Conn, namespace: str, workflow_id: str) -> list[RunSummary]:
    """Every run of the instance, oldest first; empty when the instance is not in ``namespace``."""
    return await _LIST_INSTANCE_RUNS.all(conn, workflow_id=workflow_id, namespace=namespace)


@attrs.frozen
class HistoryPage:
    #: Up to the limit asked for, after the sequence asked for.
    events: list[EventRow]
    #: The run is still open: more events may come.
    run_open: bool


async def history_page(
    conn: Conn, namespace: str, workflow_id: str, run_id: str, after_sequence: int, limit: int
) -> HistoryPage | None:
    """Up to ``limit`` events after ``after_sequence``; None when the run is not in this instance."""
    status = await _WORKFLOW_RUN_STATUS.fetchval(
        conn, workflow_id=workflow_id, namespace=namespace, run_id=run_id
    )
    if status is None:
        return None
    events = await history.list_events(conn, run_id, after_sequence, limit)
    return HistoryPage(events=events, run_open=status in OPEN_STATUSES)
