"""``start_child_workflow``: start the child run and record the step on the parent."""

from __future__ import annotations

from dwtrio import payloads
from dwtrio.engine import children
from dwtrio.engine.commands.activities import check_parallel
from dwtrio.engine.commands.context import Completion
from dwtrio.errors import InvalidCommandsError
from dwtrio.protocol.commands import StartChildWorkflow
from dwtrio.store.children import count_open_child_calls


async def apply_start_child_workflow(
    ctx: Completion, command: StartChildWorkflow, index: int
) -> None:
    seq = ctx.next_step()
    check_parallel(command.parallel, seq, index)
    arguments = payloads.arguments_blob(command.arguments, field=f"commands.{index}.arguments")
    open_children = await count_open_child_calls(ctx.conn, ctx.run.id)
    if open_children >= ctx.limits.max_pending_children:
        raise InvalidCommandsError(
            f"commands[{index}]: the run already has {open_children} open child workflows "
            f"(limit {ctx.limits.max_pending_children})."
        )
    events, task_id = await children.start_child(
        ctx.conn, ctx.run, command, seq, arguments, ctx.outcome
    )
    for event in events:
        ctx.add(event)
    ctx.created.append(task_id)
