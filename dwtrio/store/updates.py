"""Workflow updates (``schema/queries/updates.sql``): the update and command rows, update
tasks, and closing updates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query
from dwtrio.store.runs import LockedRun


@attrs.frozen
class UpdateView:
    """An update with its command, as the route answers it."""

    update_id: str
    update_name: str
    status: str
    outcome: str | None
    run_id: str
    result: str | None
    workflow_sequence: int | None
    failure_id: str | None
    failure_message: str | None
    accepted_at: datetime | None
    applied_at: datetime | None
    rejected_at: datetime | None
    closed_at: datetime | None
    command_id: str
    command_sequence: int | None
    target_scope: str
    requested_run_id: str | None
    workflow_type: str | None
    request_id: str | None

    @property
    def is_open(self) -> bool:
        return self.status == "accepted"


@attrs.frozen
class RetainedUpdate:
    """The update already accepted for a request id, with what it was asked."""

    command_id: str
    requested_run_id: str | None
    payload: str | None
    update_id: str
    update_name: str


@attrs.frozen
class LockedUpdate:
    id: str
    run_id: str
    update_name: str
    status: str
    arguments: str | None


_FIND_UPDATE_INSTANCE = query("find_update_instance")
_FIND_RETAINED_UPDATE = query("find_retained_update", RetainedUpdate)
_INSERT_UPDATE_COMMAND = query("insert_update_command")
_INSERT_WORKFLOW_UPDATE = query("insert_workflow_update")
_INSERT_UPDATE_TASK = query("insert_update_task")
_READ_UPDATE = query("read_update", UpdateView)
_LOCK_UPDATE = query("lock_update", LockedUpdate)
_RUN_OPEN_WAIT_SEQUENCE = query("run_open_wait_sequence")
_CLOSE_UPDATE = query("close_update")
_FAIL_OPEN_UPDATES_OF_RUN = query("fail_open_updates_of_run")


async def find_update_instance(conn: Conn, *, workflow_id: str, namespace: str) -> str | None:
    """The current run of the instance in ``namespace``; None when there is no such instance."""
    run_id: str | None = await _FIND_UPDATE_INSTANCE.fetchval(
        conn, workflow_id=workflow_id, namespace=namespace
    )
    return run_id


async def find_retained_update(
    conn: Conn, *, workflow_id: str, request_id: str
) -> RetainedUpdate | None:
    return await _FIND_RETAINED_UPDATE.one(conn, workflow_id=workflow_id, request_id=request_id)


async def insert_update_command(
    conn: Conn,
    *,
    id: str,
    run: LockedRun,
    requested_run_id: str | None,
    target_scope: str,
    payload: str,
    command_sequence: int,
    request_id: str | None,
) -> None:
    """The accepted ``update`` command on ``run`` (its outcome comes when it closes)."""
    await _INSERT_UPDATE_COMMAND.execute(
        conn,
        id=id,
        namespace=run.namespace,
        workflow_id=run.workflow_id,
        run_id=run.id,
        requested_run_id=requested_run_id,
        target_scope=target_scope,
        context={},
        workflow_type=run.workflow_type,
        payload=payload,
        command_sequence=command_sequence,
        request_id=request_id,
    )


async def insert_workflow_update(
    conn: Conn,
    *,
    id: str,
    command_id: str,
    workflow_id: str,
    run_id: str,
    update_name: str,
    arguments: str,
) -> None:
    await _INSERT_WORKFLOW_UPDATE.execute(
        conn,
        id=id,
        command_id=command_id,
        workflow_id=workflow_id,
        run_id=run_id,
        update_name=update_name,
        arguments=arguments,
    )


async def insert_update_task(conn: Conn, task_id: str, run: LockedRun, *, update_id: str) -> None:
    """A ready workflow task of ``run`` that runs the handler of ``update_id``."""
    await _INSERT_UPDATE_TASK.execute(
        conn,
        id=task_id,
        namespace=run.namespace,
        task_queue=run.task_queue,
        run_id=run.id,
        workflow_id=run.workflow_id,
        workflow_type=run.workflow_type,
        compatibility=run.compatibility,
        update_id=update_id,
    )


async def read_update(conn: Conn, update_id: str) -> UpdateView | None:
    return await _READ_UPDATE.one(conn, id=update_id)


async def lock_update(conn: Conn, update_id: str) -> LockedUpdate | None:
    return await _LOCK_UPDATE.one(conn, id=update_id)


async def run_open_wait_sequence(conn: Conn, run_id: str) -> int | None:
    """The sequence of the run's open condition wait, if any."""
    sequence: int | None = await _RUN_OPEN_WAIT_SEQUENCE.fetchval(conn, run_id=run_id)
    return sequence


async def close_update(
    conn: Conn,
    update_id: str,
    *,
    status: str,
    outcome: str,
    result: str | None,
    workflow_sequence: int | None,
    failure_id: str | None,
    failure_message: str | None,
    failure: dict[str, Any] | None,
) -> None:
    """Close the update (``completed`` or ``failed``); its command records the outcome."""
    await _CLOSE_UPDATE.execute(
        conn,
        id=update_id,
        status=status,
        outcome=outcome,
        result=result,
        workflow_sequence=workflow_sequence,
        failure_id=failure_id,
        failure_message=failure_message,
        failure=failure,
    )


async def fail_open_updates_of_run(conn: Conn, run_id: str, *, message: str) -> list[str]:
    """Fail the run's open updates; returns their ids."""
    rows = await _FAIL_OPEN_UPDATES_OF_RUN.fetch(conn, run_id=run_id, message=message)
    return [r[0] for r in rows]
