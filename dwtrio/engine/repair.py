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

:func:`repair_run` is the same repair for one run, asked for by an operator
(``POST /api/workflows/{wf}/repair``, ``engine/workflow_maintenance.py``): in the
command's transaction, with the run already locked, its expired leases go the
way above (tasks taken with ``SKIP LOCKED``, so holding the run never makes it
wait on a task), then a workflow task the run needs but lacks is created
(``missing_workflow_task_reason`` in ``repair.sql`` says when).
"""

from __future__ import annotations

import attrs

from dwtrio.engine.outcome import Outcome
from dwtrio.engine.timeouts import time_out_attempt
from dwtrio.engine.wakes import request_wake
from dwtrio.store import activities, repair, runs
from dwtrio.store.activities import LockedActivityTask
from dwtrio.store.pool import Conn
from dwtrio.store.repair import QueueRow
from dwtrio.store.runs import LockedRun

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


@attrs.frozen(kw_only=True)
class RunRepair:
    """What :func:`repair_run` did to one run."""

    #: Workflow-task leases that had expired, made ready again.
    workflow_leases_released: int
    #: Activity leases that had expired, their attempts ended (retried or timed out).
    activity_leases_released: int
    #: Why the run needed a workflow task it lacked (``missing_workflow_task_reason``).
    missing_task_reason: str | None
    #: The workflow task created for it, if one was.
    created_task_id: str | None

    @property
    def dispatched(self) -> bool:
        return bool(
            self.workflow_leases_released
            or self.activity_leases_released
            or self.created_task_id is not None
        )


async def repair_run(conn: Conn, run: LockedRun, outcome: Outcome) -> RunRepair:
    """Release the expired leases of a locked run, then give it the workflow task it
    needs and lacks; the queues to wake go on ``outcome``."""
    if not run.is_open:
        return RunRepair(
            workflow_leases_released=0,
            activity_leases_released=0,
            missing_task_reason=None,
            created_task_id=None,
        )
    rows = await repair.expire_run_workflow_task_leases(conn, run_id=run.id)
    outcome.wakes |= _woken(rows, "workflow").wakes
    activities_released = 0
    for _ in range(REPAIR_BATCH):
        task = await repair.claim_expired_run_activity_lease(conn, run_id=run.id)
        if task is None:
            break
        outcome.wakes |= (await _end_leased_attempt(conn, task, None)).wakes
        activities_released += 1
    reason = await repair.missing_workflow_task_reason(conn, run_id=run.id)
    created = None
    if reason is not None:
        relocked = await runs.lock_run(conn, run.id)  # the attempts above may have moved it on
        if relocked is not None:
            created = await request_wake(conn, relocked, outcome)
    return RunRepair(
        workflow_leases_released=len(rows),
        activity_leases_released=activities_released,
        missing_task_reason=reason,
        created_task_id=created,
    )


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
