"""``start_timer``: arm a durable timer as a workflow step."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dwtrio import wire
from dwtrio.engine import timers
from dwtrio.engine.commands.activities import check_parallel
from dwtrio.engine.commands.context import Completion
from dwtrio.protocol.commands import StartTimer
from dwtrio.store.history import NewEvent


async def apply_start_timer(ctx: Completion, command: StartTimer, index: int) -> None:
    seq = ctx.next_step()
    check_parallel(command.parallel, seq, index)
    await schedule_timer(
        ctx, seq, command.delay_seconds, command.parallel, parallel=command.parallel
    )


async def schedule_timer(
    ctx: Completion,
    seq: int,
    delay_seconds: int,
    event_fields: dict[str, Any],
    *,
    parallel: dict[str, Any] | None = None,
    condition_wait_id: str | None = None,
) -> tuple[str, datetime]:
    """Arm a durable timer for step ``seq`` and record its TimerScheduled (``event_fields``
    say what else the event names); the timer loop is nudged after commit in case the
    timer is due before its next tick. Returns (timer id, fire_at)."""
    timer_id, fire_at = await timers.arm(
        ctx.conn,
        ctx.run.id,
        seq,
        delay_seconds,
        parallel=parallel,
        condition_wait_id=condition_wait_id,
    )
    ctx.add(
        NewEvent(
            event_type="TimerScheduled",
            payload={
                "timer_id": timer_id,
                "sequence": seq,
                "delay_seconds": delay_seconds,
                "fire_at": wire.iso_z(fire_at),
                **event_fields,
            },
        )
    )
    ctx.outcome.timer_armed = True
    return timer_id, fire_at
