"""Durable timers and condition waits (``schema/queries/timers.sql``).

``fire_at`` is computed and compared on the database clock only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class SettledTimer:
    """A due timer the timer loop settled: ``fired``, or ``cancelled`` (its run had closed)."""

    id: str
    run_id: str
    sequence: int
    timer_kind: str
    condition_wait_id: str | None
    delay_seconds: int
    fire_at: datetime
    fired_at: datetime | None
    parallel: dict[str, Any] | None
    state: str


@attrs.frozen
class ClosedWait:
    """A run's open condition wait, just closed, with its timeout timer if that was pending."""

    open_wait_id: str
    open_wait_sequence: int
    open_wait: dict[str, Any] | None
    timer_id: str | None
    delay_seconds: int | None
    fire_at: datetime | None
    cancelled_at: datetime | None


_INSERT_TIMER = query("insert_timer")
_CLAIM_DUE_TIMERS = query("claim_due_timers", SettledTimer)
_NEXT_TIMER_DUE_SECONDS = query("next_timer_due_seconds")
_OPEN_CONDITION_WAIT = query("open_condition_wait")
_CLOSE_OPEN_WAIT = query("close_open_wait", ClosedWait)
_CLEAR_OPEN_WAIT = query("clear_open_wait")


async def insert_timer(
    conn: Conn,
    *,
    id: str,
    run_id: str,
    sequence: int,
    timer_kind: str,
    condition_wait_id: str | None,
    delay_seconds: int,
    parallel: dict[str, Any] | None,
) -> datetime:
    """Arm a pending timer; returns its ``fire_at`` (now plus the delay, database clock)."""
    fire_at: datetime = await _INSERT_TIMER.fetchval(
        conn,
        id=id,
        run_id=run_id,
        sequence=sequence,
        timer_kind=timer_kind,
        condition_wait_id=condition_wait_id,
        delay_seconds=delay_seconds,
        parallel=parallel,
    )
    return fire_at


async def claim_due_timers(conn: Conn, *, limit: int) -> list[SettledTimer]:
    """Settle up to ``limit`` due timers whose runs this transaction could lock."""
    return await _CLAIM_DUE_TIMERS.all(conn, limit=limit)


async def next_timer_due_seconds(conn: Conn) -> float | None:
    """Seconds until the earliest pending timer is due (negative when overdue), or None."""
    seconds: float | None = await _NEXT_TIMER_DUE_SECONDS.fetchval(conn)
    return seconds


async def open_condition_wait(
    conn: Conn,
    run_id: str,
    *,
    wait_id: str,
    sequence: int,
    timer_id: str | None,
    details: dict[str, Any],
    reason: str,
    deadline_at: datetime | None,
) -> None:
    """Make ``wait_id`` the run's open condition wait."""
    await _OPEN_CONDITION_WAIT.execute(
        conn,
        run_id=run_id,
        wait_id=wait_id,
        sequence=sequence,
        timer_id=timer_id,
        details=details,
        reason=reason,
        deadline_at=deadline_at,
    )


async def close_open_wait(conn: Conn, run_id: str) -> ClosedWait | None:
    """Clear the run's open wait and cancel its pending timeout timer; None without one."""
    return await _CLOSE_OPEN_WAIT.one(conn, run_id=run_id)


async def clear_open_wait(conn: Conn, run_id: str, *, wait_id: str | None) -> None:
    """The wait ``wait_id`` timed out: it is no longer the run's open wait."""
    await _CLEAR_OPEN_WAIT.execute(conn, run_id=run_id, wait_id=wait_id)
