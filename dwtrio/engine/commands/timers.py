"""``start_timer``: arm a durable timer as a workflow step."""

from __future__ import annotations

from dwtrio import wire
from dwtrio.engine import timers
from dwtrio.engine.commands.activities import check_parallel
from dwtrio.engine.commands.context import Completion
from dwtrio.protocol.commands import StartTimer
from dwtrio.store.history import NewEvent


async def apply_start_timer(ctx: Completion, command: StartTimer, index: int) -> None:
    seq = ctx.next_step()
    check_parallel(command.parallel, seq, index)
    timer_id, fire_at = await timers.arm(
        ctx.conn, ctx.run.id, seq, command.delay_seconds, parallel=command.parallel
    )
    ctx.add(
        NewEvent(
            event_type="TimerScheduled",
            payload={
                "timer_id": timer_id,
                "sequence": seq,
                "delay_seconds": command.delay_seconds,
                "fire_at": wire.iso_z(fire_at),
                **command.parallel,
            },
        )
    )
    ctx.outcome.timer_armed = True
