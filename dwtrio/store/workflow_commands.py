"""Control-plane commands on a live run (``schema/queries/workflow_commands.sql``):
signal, cancel and terminate records, with the receipts a retried request gets back."""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query
from dwtrio.store.runs import LockedRun


@attrs.frozen
class RetainedCommand:
    """The command already recorded for a request id, with the receipt it answered."""

    id: str
    status: str
    outcome: str | None
    context: dict[str, Any] | None
    response: dict[str, Any] | None


@attrs.frozen
class CommandSlot:
    """A locked run's next command number, with its open condition wait's sequence."""

    last_command_sequence: int
    open_wait_sequence: int | None


_FIND_RETAINED_COMMAND = query("find_retained_command", RetainedCommand)
_ALLOCATE_COMMAND_SLOT = query("allocate_command_slot", CommandSlot)
_INSERT_CONTROL_COMMAND = query("insert_control_command")
_INSERT_WORKFLOW_SIGNAL = query("insert_workflow_signal")


async def find_retained_command(
    conn: Conn, *, workflow_id: str, command_type: str, request_id: str
) -> RetainedCommand | None:
    return await _FIND_RETAINED_COMMAND.one(
        conn, workflow_id=workflow_id, command_type=command_type, request_id=request_id
    )


async def allocate_command_slot(conn: Conn, run_id: str) -> CommandSlot:
    slot = await _ALLOCATE_COMMAND_SLOT.one(conn, run_id=run_id)
    assert slot is not None  # the caller holds the run locked
    return slot


async def insert_control_command(
    conn: Conn,
    *,
    id: str,
    run: LockedRun,
    requested_run_id: str | None,
    command_type: str,
    target_scope: str,
    context: dict[str, Any],
    status: str,
    outcome: str,
    rejection_reason: str | None,
    payload: str | None,
    command_sequence: int,
    request_id: str | None,
    response: dict[str, Any],
) -> None:
    """Record a command on ``run`` with the receipt (``response``) it was answered."""
    await _INSERT_CONTROL_COMMAND.execute(
        conn,
        id=id,
        namespace=run.namespace,
        workflow_id=run.workflow_id,
        run_id=run.id,
        requested_run_id=requested_run_id,
        command_type=command_type,
        target_scope=target_scope,
        context=context,
        status=status,
        outcome=outcome,
        rejection_reason=rejection_reason,
        workflow_type=run.workflow_type,
        payload=payload,
        command_sequence=command_sequence,
        request_id=request_id,
        response=response,
    )


async def insert_workflow_signal(
    conn: Conn,
    *,
    id: str,
    command_id: str,
    workflow_id: str,
    run_id: str,
    signal_name: str,
    arguments: str,
    workflow_sequence: int | None,
) -> None:
    await _INSERT_WORKFLOW_SIGNAL.execute(
        conn,
        id=id,
        command_id=command_id,
        workflow_id=workflow_id,
        run_id=run_id,
        signal_name=signal_name,
        arguments=arguments,
        workflow_sequence=workflow_sequence,
    )
