"""``schedule_activity``: create the execution and its ready task."""

from __future__ import annotations

from dwtrio import payloads
from dwtrio.engine import activity_tasks
from dwtrio.engine.commands.context import Completion
from dwtrio.errors import InvalidCommandsError
from dwtrio.protocol.commands import ScheduleActivity


def check_parallel(parallel: dict[str, object], seq: int, index: int) -> None:
    """Each parallel group entry must agree with the step sequence it is given."""
    entries = list(parallel.get("parallel_group_path") or [])  # type: ignore[call-overload]
    if "parallel_group_base_sequence" in parallel:
        entries = [*entries, parallel]
    for entry in entries:
        base, idx = entry.get("parallel_group_base_sequence"), entry.get("parallel_group_index")
        if isinstance(base, int) and isinstance(idx, int) and base + idx != seq:
            raise InvalidCommandsError(
                f"commands[{index}]: parallel group base {base} + index {idx} does not match "
                f"step sequence {seq}."
            )


async def apply_schedule_activity(ctx: Completion, command: ScheduleActivity, index: int) -> None:
    seq = ctx.next_step()
    check_parallel(command.parallel, seq, index)
    arguments = payloads.arguments_blob(command.arguments, field=f"commands.{index}.arguments")
    event, task_id = await activity_tasks.schedule(
        ctx.conn, ctx.run, command, arguments, seq, ctx.outcome
    )
    ctx.add(event)
    ctx.created.append(task_id)
