"""Server-owned deadlines (``schema/queries/timeouts.sql``): the earliest passed activity
and run deadlines, claimed one at a time (``FOR UPDATE SKIP LOCKED``)."""

from __future__ import annotations

from datetime import datetime

import attrs

from dwtrio.store.activities import LockedActivityTask
from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class DueDeadlines:
    """Which of an execution's deadlines have passed (None: not set)."""

    schedule_to_start: bool | None
    start_to_close: bool | None
    schedule_to_close: bool | None
    heartbeat: bool | None

    def passed(self, kind: str) -> bool:
        return bool(getattr(self, kind))


@attrs.frozen
class DueRun:
    id: str
    execution_deadline_at: datetime | None
    run_deadline_at: datetime | None


_CLAIM_DUE_ACTIVITY = query("claim_due_activity", LockedActivityTask)
_DUE_ACTIVITY_DEADLINES = query("due_activity_deadlines", DueDeadlines)
_CLEAR_STALE_ACTIVITY_DEADLINES = query("clear_stale_activity_deadlines")
_CLAIM_DUE_RUN = query("claim_due_run", DueRun)
_DUE_ACTIVITY_EXECUTIONS = query("due_activity_executions")


async def claim_due_activity(
    conn: Conn,
    *,
    namespace: str | None,
    execution_ids: list[str] | None,
    exclude_ids: list[str],
) -> LockedActivityTask | None:
    """Lock the task of the execution whose deadline passed first (within the filters)."""
    return await _CLAIM_DUE_ACTIVITY.one(
        conn, namespace=namespace, execution_ids=execution_ids, exclude_ids=exclude_ids
    )


async def due_activity_executions(conn: Conn, *, namespace: str, limit: int) -> list[str]:
    """The ids of up to ``limit`` executions of ``namespace`` past a deadline (not locked)."""
    rows = await _DUE_ACTIVITY_EXECUTIONS.fetch(conn, namespace=namespace, limit=limit)
    return [r[0] for r in rows]


async def due_activity_deadlines(conn: Conn, execution_id: str) -> DueDeadlines:
    due = await _DUE_ACTIVITY_DEADLINES.one(conn, execution_id=execution_id)
    assert due is not None  # the caller holds the execution locked
    return due


async def clear_stale_activity_deadlines(conn: Conn, execution_id: str) -> None:
    await _CLEAR_STALE_ACTIVITY_DEADLINES.execute(conn, execution_id=execution_id)


async def claim_due_run(conn: Conn) -> DueRun | None:
    """Lock the open run whose execution or run deadline passed first."""
    return await _CLAIM_DUE_RUN.one(conn)
