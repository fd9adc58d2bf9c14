"""Workflow instances, runs (as the control plane sees them) and control-plane commands.

Asyncio-side store operations: run them through ``Store.transaction`` /
``Store.read``, or call them from an engine use case that already holds a
connection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.store import history
from dwtrio.store.history import EventRow
from dwtrio.store.pool import Conn
from dwtrio.store.queries import sql


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


@attrs.frozen(kw_only=True)
class RunTimes:
    started_at: datetime
    execution_deadline_at: datetime | None
    run_deadline_at: datetime | None


@attrs.frozen(kw_only=True)
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


@attrs.frozen(kw_only=True)
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


@attrs.frozen(kw_only=True)
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


@attrs.frozen(kw_only=True)
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


# --- writes (inside the start transaction) ---------------------------------------------


async def insert_instance_with_first_run(
    conn: Conn, run: NewRun, execution_timeout_seconds: int | None
) -> RunTimes | None:
    """Create the instance and its first run in one statement; None when the id is taken.

    The run's command counter starts at 1 (the start command). A concurrent
    start of the same id blocks here until the other transaction ends, then
    sees its row (None) or, if it rolled back, inserts.
    """
    row = await conn.fetchrow(
        sql("insert_instance_with_first_run"),
        run.id,
        run.workflow_id,
        run.namespace,
        run.workflow_type,
        run.business_key,
        run.task_queue,
        run.arguments,
        run.memo,
        run.search_attributes,
        execution_timeout_seconds,
        run.run_timeout_seconds,
    )
    return None if row is None else RunTimes(**dict(row))


async def get_instance_for_start(conn: Conn, workflow_id: str) -> InstanceForStart | None:
    row = await conn.fetchrow(sql("get_instance_for_start"), workflow_id)
    return None if row is None else InstanceForStart(**dict(row))


async def get_current_run_id(conn: Conn, workflow_id: str) -> str | None:
    value = await conn.fetchval(sql("get_current_run_id"), workflow_id)
    return None if value is None else str(value)


async def allocate_command_sequence(conn: Conn, run_id: str) -> int:
    """The run's next command number; the caller holds the run lock."""
    return int(await conn.fetchval(sql("allocate_command_sequence"), run_id))


async def insert_command(conn: Conn, command: NewCommand) -> None:
    await conn.execute(
        sql("insert_workflow_command"),
        command.id,
        command.namespace,
        command.workflow_id,
        command.run_id,
        command.command_type,
        command.target_scope,
        command.context,
        command.status,
        command.outcome,
        command.rejection_reason,
        command.workflow_type,
        "avro" if command.payload is not None else None,
        command.payload,
        command.command_sequence,
    )


# --- reads -------------------------------------------------------------------------


async def get_run_view(
    conn: Conn, namespace: str, workflow_id: str, run_id: str | None = None
) -> RunView | None:
    """One run (the current one when ``run_id`` is None) of an instance in ``namespace``."""
    row = await conn.fetchrow(sql("get_workflow_run_view"), workflow_id, namespace, run_id)
    return None if row is None else RunView(**dict(row))


async def list_runs(conn: Conn, namespace: str, workflow_id: str) -> list[RunSummary]:
    """Every run of the instance, oldest first; empty when the instance is not in ``namespace``."""
    rows = await conn.fetch(sql("list_instance_runs"), workflow_id, namespace)
    return [RunSummary(**dict(r)) for r in rows]


async def history_page(
    conn: Conn, namespace: str, workflow_id: str, run_id: str, after_sequence: int, limit: int
) -> list[EventRow] | None:
    """Up to ``limit`` events after ``after_sequence``; None when the run is not in this instance."""
    if not await conn.fetchval(sql("workflow_run_exists"), workflow_id, namespace, run_id):
        return None
    return await history.list_events(conn, run_id, after_sequence, limit)


async def list_workflows(
    conn: Conn,
    namespace: str,
    *,
    status_bucket: str | None,
    status: str | None,
    workflow_type: str | None,
    query: str | None,
    offset: int,
    limit: int,
) -> list[ListedRun]:
    rows = await conn.fetch(
        sql("list_workflow_runs_page"),
        namespace,
        status_bucket,
        status,
        workflow_type,
        query,
        offset,
        limit,
    )
    return [ListedRun(**dict(r)) for r in rows]
