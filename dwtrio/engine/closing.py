"""Closing a run: the one place a run reaches a terminal status.

Used by terminal commands (complete, fail, continue-as-new), terminate,
cancel and run timeouts. The caller holds the run lock and has appended (or
will append) the closing history event itself.
"""

from __future__ import annotations

from dwtrio.engine.outcome import Outcome
from dwtrio.store.pool import Conn
from dwtrio.store.queries import sql
from dwtrio.store.runs import LockedRun


async def close_run(
    conn: Conn,
    run: LockedRun,
    outcome: Outcome,
    *,
    status: str,
    reason: str,
    output: str | None = None,
    last_step_sequence: int | None = None,
    keep_task_id: str | None = None,
) -> None:
    """Close ``run``: status and output, every other open task cancelled, no wakes left.

    ``keep_task_id`` is the workflow task doing the closing (the caller completes it).
    """
    if last_step_sequence is not None and last_step_sequence != run.last_step_sequence:
        await conn.execute(sql("set_last_step_sequence"), run.id, last_step_sequence)
    await conn.execute(sql("close_run"), run.id, status, reason, output)
    await conn.execute(sql("cancel_open_tasks_of_run"), run.id, keep_task_id)
    await conn.execute(sql("cancel_run_activities"), run.id)
    # Nothing this run scheduled can run any more.
    outcome.wakes.clear()
