"""``complete_workflow`` and ``fail_workflow``: the terminal commands that close the run."""

from __future__ import annotations

from typing import Any

from dwtrio import payloads
from dwtrio.engine.commands.context import Closing, Completion
from dwtrio.protocol.commands import CompleteWorkflow, FailWorkflow
from dwtrio.protocol.ids import new_id
from dwtrio.store.history import NewEvent


async def apply_complete_workflow(ctx: Completion, command: CompleteWorkflow, index: int) -> None:
    result_blob = payloads.value_blob(command.result, field=f"commands.{index}.result")
    ctx.add(
        NewEvent(
            event_type="WorkflowCompleted",
            payload={"output": result_blob, "payload_codec": "avro"},
        )
    )
    ctx.closing = Closing(status="completed", reason="completed", output=result_blob)


async def apply_fail_workflow(ctx: Completion, command: FailWorkflow, index: int) -> None:
    ctx.add(NewEvent(event_type="WorkflowFailed", payload=failure_payload(ctx.run.id, command)))
    ctx.closing = Closing(status="failed", reason="failed")


def failure_payload(run_id: str, command: FailWorkflow) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "message": command.message,
        "exception_type": command.exception_type,
        "exception_class": command.exception_class,
        "exception": command.exception
        or {
            "type": command.exception_type,
            "class": command.exception_class,
            "message": command.message,
        },
        "non_retryable": command.non_retryable,
        "failure_id": new_id(),
        "source_kind": "workflow_run",
        "source_id": run_id,
        "failure_category": "application",
    }
    payload.update(command.details)
    return payload
