"""Durable timers: arm them (from a completion) and fire the due ones (from the timer loop).

A timer is a ``timers`` row plus its history: ``TimerScheduled`` when armed,
``TimerFired`` or ``TimerCancelled`` when settled. ``start_timer`` timers are
workflow steps; ``condition_timeout`` timers share the step of the condition
wait they bound, and carry ``timer_kind`` and ``condition_wait_id`` so the
SDK's replayer treats them as internal rather than as a step result.

``fire_at`` is computed and compared on the database clock only, so a timer
never fires before ``fire_at`` whatever the app servers' clocks say.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from dwtrio import wire
from dwtrio.engine.activity_tasks import wake_after_settling
from dwtrio.engine.outcome import Outcome
from dwtrio.protocol.ids import new_id
from dwtrio.store import runs, timers
from dwtrio.store.history import NewEvent, append_events
from dwtrio.store.pool import Conn
from dwtrio.store.timers import SettledTimer

CONDITION_TIMEOUT = "condition_timeout"


async def arm(
    conn: Conn,
    run_id: str,
    seq: int,
    delay_seconds: int,
    *,
    parallel: dict[str, Any] | None = None,
    condition_wait_id: str | None = None,
) -> tuple[str, datetime]:
    """Insert a pending timer; returns (timer id, fire_at)."""
    timer_id = new_id()
    fire_at = await timers.insert_timer(
        conn,
        id=timer_id,
        run_id=run_id,
        sequence=seq,
        timer_kind="timer" if condition_wait_id is None else CONDITION_TIMEOUT,
        condition_wait_id=condition_wait_id,
        delay_seconds=delay_seconds,
        parallel=parallel or None,
    )
    return timer_id, fire_at


def _fired_payload(timer: SettledTimer) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "timer_id": timer.id,
        "sequence": timer.sequence,
        "delay_seconds": timer.delay_seconds,
        "fire_at": wire.iso_z(timer.fire_at),
        "fired_at": wire.iso_z(timer.fired_at),
    }
    if timer.timer_kind == CONDITION_TIMEOUT:
        payload["timer_kind"] = CONDITION_TIMEOUT
        payload["condition_wait_id"] = timer.condition_wait_id
    payload.update(timer.parallel or {})
    return payload


async def fire_due(conn: Conn, limit: int) -> tuple[Outcome, int, float | None]:
    """Fire up to ``limit`` due timers in this transaction.

    Returns the wakes to publish after commit, how many timers were settled
    (fired, or cancelled because their run had closed) and the seconds until
    the earliest timer still pending (negative when overdue; None when none).
    Each fired timer appends ``TimerFired`` and wakes its run, subject to the
    parallel-group rule; a condition timeout also closes its open wait, which
    the SDK then resolves as ``False``.
    """
    outcome = Outcome()
    settled = await timers.claim_due_timers(conn, limit=limit)
    by_run: dict[str, list[SettledTimer]] = defaultdict(list)
    for timer in settled:
        if timer.state == "fired":
            by_run[timer.run_id].append(timer)
    for run_id in sorted(by_run):
        run = await runs.lock_run(conn, run_id)  # already locked by the claim
        if run is None:
            continue
        fired = sorted(by_run[run_id], key=lambda t: (t.fire_at, t.sequence))
        for timer in fired:
            if timer.timer_kind == CONDITION_TIMEOUT:
                await timers.clear_open_wait(conn, run.id, wait_id=timer.condition_wait_id)
        await append_events(
            conn,
            run.id,
            [NewEvent(event_type="TimerFired", payload=_fired_payload(t)) for t in fired],
        )
        for timer in fired:
            if await wake_after_settling(conn, run, timer.parallel, outcome) is not None:
                break
    next_due = await timers.next_timer_due_seconds(conn)
    return outcome, len(settled), next_due
