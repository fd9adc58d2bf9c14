"""Task repair: leases that expired (a worker died or lost its response) are redispatched.

A workflow task simply becomes ready again; its next lease carries the next
``workflow_task_attempt``. An activity lease ends its attempt like a timeout
(``engine.timeouts.time_out_attempt``), so the lost attempt counts against the
retry policy's ``max_attempts`` and the next one gets a new attempt id and number.
"""

from __future__ import annotations

from dwtrio.engine.outcome import Outcome
from dwtrio.engine.timeouts import time_out_attempt
from dwtrio.store import runs
from dwtrio.store.pool import Conn
from dwtrio.store.queries import sql

REPAIR_BATCH = 500


async def expire_workflow_task_leases(conn: Conn, limit: int = REPAIR_BATCH) -> tuple[Outcome, int]:
    """Make expired workflow-task leases ready again; returns the queues to wake and the count."""
    rows = await conn.fetch(sql("expire_workflow_task_leases"), limit)
    outcome = Outcome()
    for r in rows:
        outcome.wake(r["namespace"], r["task_queue"], "workflow")
    return outcome, len(rows)


async def expire_next_activity_lease(conn: Conn) -> Outcome | None:
    """The earliest expired activity lease ends its attempt; None when no lease has expired."""
    task = await conn.fetchrow(sql("claim_expired_activity_lease"))
    if task is None:
        return None
    outcome = Outcome()
    await conn.execute(sql("count_task_repair"), task["task_id"])
    run = await runs.lock_run(conn, task["run_id"])
    execution = await conn.fetchrow(sql("lock_activity_execution"), task["activity_execution_id"])
    if run is None or not run.is_open:
        # Closing a run cancels its tasks, so this is only a leftover (e.g. a claim whose
        # clean-up after finding the run closed did not run): retire it.
        await conn.execute(
            sql("cancel_claimed_activity"),
            task["activity_attempt_id"],
            task["activity_execution_id"],
            task["task_id"],
        )
        return outcome
    # With start_to_close_timeout the lease ends at that deadline: it is that timeout.
    bounded = execution["start_to_close_deadline_at"] is not None
    message = None if bounded else "activity lease expired"
    await time_out_attempt(conn, task, run, execution, "start_to_close", outcome, message=message)
    return outcome
