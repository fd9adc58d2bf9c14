"""Closing a run: the one place a run reaches a terminal status.

Used by terminal commands (complete, fail, continue-as-new), terminate,
cancel and run timeouts. The caller holds the run lock and has appended (or
will append) the closing history event itself; append it first if the run may
be a child, so its parent is told why it closed. Closing also settles the
run's parent link and applies its children's parent-close policies
(``engine/children.py``).
"""

from __future__ import annotations

from dwtrio.engine import children, updates
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
    """Close ``run``: status and output, other open tasks and pending timers cancelled.

    ``keep_task_id`` is the workflow task doing the closing (the caller completes it).
    """
    await conn.execute(
        sql("close_run"), run.id, status, reason, output, keep_task_id, last_step_sequence
    )
    # Wakes already in ``outcome`` stay: a child started by the closing task, or
    # the parent told below, must still be woken; a stale wake costs one empty claim.
    await children.on_run_closed(conn, run, outcome, status=status, reason=reason, output=output)
    # Updates still waiting for their handler fail; their callers are answered.
    await updates.fail_open_updates(conn, run.id, run.namespace, outcome)
