"""Task repair: leases whose worker is gone are redispatched.

A worker is gone when its lease expired (it died or lost its response), when it
deregistered (the deregistration recovers its leases itself), or when it stopped
heartbeating: its registration is stale (no worker heartbeat for the stale
window) and the lease itself was not touched (claimed or heartbeated) for as
long. Only workers that registered are judged by their heartbeats (registering
is what tells a worker its heartbeat cadence); a worker only ever seen through
its polls keeps its leases until they expire. A deregistered worker no longer
heartbeats, so a lease its deregistration missed (a crash half-way, a racing
poll) is recovered here once the worker is stale.

A workflow task simply becomes ready again; its next lease carries the next
``workflow_task_attempt``. An activity lease ends its attempt like a timeout
(``engine.timeouts.time_out_attempt``), so the lost attempt counts against the
retry policy's ``max_attempts`` and the next one gets a new attempt id and number.

Each activity lease is handled in its own transaction: the task is locked first,
then its run and its execution, the order of the worker-plane paths.
"""

from __future__ import annotations

from dwtrio.engine.outcome import Outcome
from dwtrio.engine.timeouts import time_out_attempt
from dwtrio.store import activities, repair, runs
from dwtrio.store.activities import LockedActivityTask
from dwtrio.store.pool import Conn
from dwtrio.store.repair import QueueRow

REPAIR_BATCH = 500


async def expire_workflow_task_leases(conn: Conn, limit: int = REPAIR_BATCH) -> tuple[Outcome, int]:
    """Make expired workflow-task leases ready again; returns the queues to wake and the count."""
    rows = await repair.expire_workflow_task_leases(conn, limit=limit)
    return _woken(rows, "workflow"), len(rows)


async def expire_next_activity_lease(conn: Conn) -> Outcome | None:
    """The earliest expired activity lease ends its attempt; None when no lease has expired."""
    task = await repair.claim_expired_activity_lease(conn)
    if task is None:
        return None
    return await _end_leased_attempt(conn, task, None)


async def release_lost_worker_workflow_tasks(
    conn: Conn, stale_after_s: int, limit: int = REPAIR_BATCH
) -> tuple[Outcome, int]:
    """Make workflow tasks leased to lost workers ready again; the queues to wake and the count."""
    rows = await repair.release_lost_worker_workflow_tasks(
        conn, stale_after_s=stale_after_s, limit=limit
    )
    return _woken(rows, "workflow"), len(rows)


async def recover_next_lost_worker_activity_lease(conn: Conn, stale_after_s: int) -> Outcome | None:
    """One activity lease of a lost worker ends its attempt; None when there is none."""
    task = await repair.claim_lost_worker_activity_lease(conn, stale_after_s=stale_after_s)
    if task is None:
        return None
    message = f"activity worker {task.lease_owner} lost (no heartbeat for {stale_after_s} s)"
    return await _end_leased_attempt(conn, task, message)


async def worker_activity_leases(conn: Conn, namespace: str, worker_id: str) -> list[str]:
    """The ids of the activity tasks leased to a worker (deregistration recovers each)."""
    return await repair.list_worker_activity_leases(conn, namespace=namespace, worker_id=worker_id)


async def recover_deregistered_activity_lease(
    conn: Conn, namespace: str, worker_id: str, task_id: str
) -> Outcome | None:
    """A deregistered worker's activity lease ends its attempt; None if it is no longer held."""
    task = await repair.claim_worker_activity_lease(
        conn, task_id=task_id, namespace=namespace, worker_id=worker_id
    )
    if task is None:
        return None
    return await _end_leased_attempt(conn, task, f"activity worker {worker_id} deregistered")


def _woken(rows: list[QueueRow], kind: str) -> Outcome:
    outcome = Outcome()
    for r in rows:
        outcome.wake(r.namespace, r.task_queue, kind)
    return outcome


async def _end_leased_attempt(conn: Conn, task: LockedActivityTask, message: str | None) -> Outcome:
    """The attempt on a locked, leased activity task is over: a ``start_to_close``-like
    timeout of it (``message`` None: the lease expired)."""
    outcome = Outcome()
    await repair.count_task_repair(conn, task.task_id)
    run = await runs.lock_run(conn, task.run_id)
    execution = await activities.lock_activity_execution(conn, task.activity_execution_id)
    if run is None or not run.is_open:
        # Closing a run cancels its tasks, so this is only a leftover (e.g. a claim whose
        # clean-up after finding the run closed did not run): retire it.
        await activities.cancel_claimed_activity(
            conn,
            attempt_id=task.activity_attempt_id,
            execution_id=task.activity_execution_id,
            task_id=task.task_id,
        )
        return outcome
    assert execution is not None  # its task is locked
    if message is None:
        # With start_to_close_timeout the lease ends at that deadline: it is that timeout.
        bounded = execution.start_to_close_deadline_at is not None
        message = None if bounded else "activity lease expired"
    await time_out_attempt(conn, task, run, execution, "start_to_close", outcome, message=message)
    return outcome
