"""Condition waits: ``open_condition_wait`` and closing the open wait.

A run has at most one open wait (the ``open_wait_*`` columns of its row). It
ends in one of two ways, and each wait gets exactly one of them in history:

* its timeout timer fires (``TimerFired`` with ``timer_kind:
  condition_timeout``, see ``engine.timers``): the SDK resolves it ``False``;
* the next ordinary completion is applied while it is still open
  (``ConditionWaitSatisfied`` plus ``TimerCancelled`` for its timeout): the
  SDK evaluated the predicate on the way and either moved on or re-opens a
  fresh wait in that same completion. Cancelling the timeout here is what
  keeps a late ``TimerFired`` from turning a passed wait into ``False`` on
  the next replay.

The wait itself never wakes the run; signals, updates and the timeout do.
"""

from __future__ import annotations

from typing import Any

from dwtrio import wire
from dwtrio.engine import timers
from dwtrio.engine.commands.context import Completion
from dwtrio.engine.commands.timers import schedule_timer
from dwtrio.errors import InvalidCommandsError
from dwtrio.protocol.commands import OpenConditionWait
from dwtrio.protocol.ids import new_id
from dwtrio.store import timers as store
from dwtrio.store.history import NewEvent


def _identity(details: dict[str, Any]) -> dict[str, Any]:
    """The wait's key and fingerprint, only when it had them (the SDK compares them)."""
    return {
        k: details[k]
        for k in ("condition_key", "condition_definition_fingerprint")
        if details.get(k) is not None
    }


async def apply_open_condition_wait(
    ctx: Completion, command: OpenConditionWait, index: int
) -> None:
    if any(e.event_type == "ConditionWaitOpened" for e in ctx.events):
        raise InvalidCommandsError(
            f"commands[{index}]: a completion may open at most one condition wait."
        )
    seq = ctx.next_step()
    wait_id = new_id()
    details = {
        "condition_key": command.condition_key,
        "condition_definition_fingerprint": command.condition_definition_fingerprint,
        "timeout_seconds": command.timeout_seconds,
    }
    opened: dict[str, Any] = {"condition_wait_id": wait_id, "sequence": seq, **_identity(details)}
    if command.timeout_seconds is not None:
        opened["timeout_seconds"] = command.timeout_seconds
    ctx.add(NewEvent(event_type="ConditionWaitOpened", payload=opened))
    timer_id, fire_at = None, None
    # A zero timeout arms nothing, as in the reference: the wait never times out.
    if command.timeout_seconds:
        timer_id, fire_at = await schedule_timer(
            ctx,
            seq,
            command.timeout_seconds,
            {
                "timer_kind": timers.CONDITION_TIMEOUT,
                "condition_wait_id": wait_id,
                **_identity(details),
            },
            condition_wait_id=wait_id,
        )
    await store.open_condition_wait(
        ctx.conn,
        ctx.run.id,
        wait_id=wait_id,
        sequence=seq,
        timer_id=timer_id,
        details=details,
        reason=command.condition_key or "condition",
        deadline_at=fire_at,
    )


async def close_open_wait(ctx: Completion) -> None:
    """Record the run's open wait as satisfied (commands.md §3 step 3), if there is one.

    Called before an ordinary completion's commands are applied. Update tasks
    must not call it: an update does not end the wait it ran inside.
    """
    if ctx.run.open_wait_id is None:
        return
    wait = await store.close_open_wait(ctx.conn, ctx.run.id)
    if wait is None:
        return
    details: dict[str, Any] = wait.open_wait or {}
    satisfied: dict[str, Any] = {
        "condition_wait_id": wait.open_wait_id,
        "sequence": wait.open_wait_sequence,
        **_identity(details),
    }
    if details.get("timeout_seconds") is not None:
        satisfied["timeout_seconds"] = details["timeout_seconds"]
    if wait.timer_id is not None:
        satisfied["timer_id"] = wait.timer_id
    ctx.add(NewEvent(event_type="ConditionWaitSatisfied", payload=satisfied))
    if wait.timer_id is not None:
        ctx.add(
            NewEvent(
                event_type="TimerCancelled",
                payload={
                    "timer_id": wait.timer_id,
                    "sequence": wait.open_wait_sequence,
                    "delay_seconds": wait.delay_seconds,
                    "fire_at": wire.iso_z(wait.fire_at),
                    "cancelled_at": wire.iso_z(wait.cancelled_at),
                    "timer_kind": timers.CONDITION_TIMEOUT,
                    "condition_wait_id": wait.open_wait_id,
                },
            )
        )
