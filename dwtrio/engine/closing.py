"""Closing a run: the one place a run reaches a terminal status.

Used by terminal commands (complete, fail, continue-as-new), terminate,
cancel and run timeouts. The caller holds the run lock and has appended (or
will append) the closing history event itself; append it first if the run may
be a child, so its parent is told why it closed. Closing also settles the
run's parent link and applies its children's parent-close policies
(``engine/children.py``), closing the children those policies close here, so
this module imports ``children`` and not the other way round.
"""

from __future__ import annotations

from dwtrio.engine import children, updates
from dwtrio.engine.outcome import Outcome
from dwtrio.store import runs
from dwtrio.store.pool import Conn
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
    await runs.close_run(
        conn,
        run.id,
        status=status,
        reason=reason,
        output=output,
        keep_task_id=keep_task_id,
        last_step_sequence=last_step_sequence,
    )
    # Wakes already in ``outcome`` stay: a child started by the closing task, or
    # the parent told below, must still be woken; a stale wake costs one empty claim.
    if reason != "continued":
        await children.tell_parent(conn, run, outcome, status, output)
    await _close_children(conn, run, outcome)
    # Updates still waiting for their handler fail; their callers are answered.
    await updates.fail_open_updates(conn, run.id, run.namespace, outcome)


async def _close_children(conn: Conn, parent: LockedRun, outcome: Outcome) -> None:
    """Apply each open child's parent-close policy; close the children it closes (recursively)."""
    for call in await children.lock_open_child_calls(conn, parent):
        closed = await children.apply_parent_close_policy(conn, parent, call)
        if closed is None:
            continue
        child, status = closed
        # A separate outcome: closing the child clears its own wakes, not the parent's.
        child_outcome = Outcome()
        await close_run(conn, child, child_outcome, status=status, reason=status)
        outcome.wakes |= child_outcome.wakes
