"""``complete_update`` / ``fail_update``: the answer of an update task (commands.md §5.9).

Only valid in the update task of that very update, while it is still
accepted. Neither takes a step sequence; both carry the open condition wait's
sequence, if any. A failed update gets ``UpdateCompleted`` alone, never
``UpdateApplied``: replaying a raising handler would fail the run. Either way
the waiting caller is woken after commit and the run gets a follow-up
workflow task so its main code can react.
"""

from __future__ import annotations

from typing import Any

from dwtrio import payloads
from dwtrio.engine.commands.context import Completion
from dwtrio.engine.updates import answer_key
from dwtrio.errors import InvalidCommandsError
from dwtrio.protocol.commands import CompleteUpdate, FailUpdate
from dwtrio.protocol.ids import new_id
from dwtrio.store import updates
from dwtrio.store.history import NewEvent


async def _open_update(ctx: Completion, update_id: str, index: int) -> dict[str, Any]:
    """The update's common event fields; refuses an update this task may not answer."""
    if ctx.update_id != update_id:
        raise InvalidCommandsError(
            f"commands[{index}] answers update {update_id!r}, which is not this task's update."
        )
    update = await updates.lock_update(ctx.conn, update_id)
    if update is None or update.run_id != ctx.run.id or update.status != "accepted":
        raise InvalidCommandsError(
            f"commands[{index}]: update {update_id!r} is not open on this run."
        )
    fields: dict[str, Any] = {"update_id": update_id, "update_name": update.update_name}
    sequence = await updates.run_open_wait_sequence(ctx.conn, ctx.run.id)
    if sequence is not None:
        fields["sequence"] = sequence
    fields["arguments"] = update.arguments
    return fields


def _answered(ctx: Completion, update_id: str) -> None:
    ctx.outcome.wakes.add(answer_key(ctx.run.namespace, update_id))
    ctx.wake_again = True


async def apply_complete_update(ctx: Completion, command: CompleteUpdate, index: int) -> None:
    fields = await _open_update(ctx, command.update_id, index)
    arguments = fields.pop("arguments")
    result = payloads.value_blob(command.result, field=f"commands.{index}.result")
    ctx.add(
        NewEvent(
            event_type="UpdateApplied",
            payload={**fields, "arguments": payloads.envelope(arguments), "payload_codec": "avro"},
        )
    )
    ctx.add(
        NewEvent(
            event_type="UpdateCompleted",
            payload={**fields, "result": result, "payload_codec": "avro"},
        )
    )
    await updates.close_update(
        ctx.conn,
        command.update_id,
        status="completed",
        outcome="update_completed",
        result=result,
        workflow_sequence=fields.get("sequence"),
        failure_id=None,
        failure_message=None,
        failure=None,
    )
    _answered(ctx, command.update_id)


async def apply_fail_update(ctx: Completion, command: FailUpdate, index: int) -> None:
    fields = await _open_update(ctx, command.update_id, index)
    del fields["arguments"]
    failure_id = new_id()
    failure = {
        "message": command.message,
        "exception_type": command.exception_type,
        "exception_class": command.exception_class,
        "non_retryable": command.non_retryable,
    }
    ctx.add(
        NewEvent(
            event_type="UpdateCompleted",
            payload={
                **fields,
                **failure,
                "failure_id": failure_id,
                "failure_category": "application",
                "exception": {
                    "type": command.exception_type,
                    "class": command.exception_class,
                    "message": command.message,
                },
            },
        )
    )
    await updates.close_update(
        ctx.conn,
        command.update_id,
        status="failed",
        outcome="update_failed",
        result=None,
        workflow_sequence=fields.get("sequence"),
        failure_id=failure_id,
        failure_message=command.message,
        failure=failure,
    )
    _answered(ctx, command.update_id)
