"""The wake rules: when a run gets its next workflow task.

A run has at most one open (ready or leased) workflow task. A wake on a run
with a ready task does nothing (that task will see the new history); with a
leased task it sets ``wake_pending``, honoured when that task completes;
otherwise it creates a ready task and asks the caller to wake the queue's
pollers after commit, unless a poll parked in this process is handed the task
(sync match, ``store/offers.py``).
"""

from __future__ import annotations

from dwtrio.engine.outcome import Outcome
from dwtrio.protocol.ids import new_id
from dwtrio.store import tasks
from dwtrio.store.offers import offer_task
from dwtrio.store.pool import Conn
from dwtrio.store.runs import LockedRun


async def create_workflow_task(
    conn: Conn, run: LockedRun, outcome: Outcome, task_id: str | None = None
) -> str:
    """Insert a ready workflow task for ``run`` (no open task may exist)."""
    task_id = task_id or new_id()
    await tasks.insert_workflow_task(conn, task_id, run)
    offer_workflow_task(run, task_id, outcome)
    return task_id


def offer_workflow_task(run: LockedRun, task_id: str, outcome: Outcome) -> None:
    """The run's new ready task ``task_id`` goes to a parked poll, or its queue is woken."""
    offer_task(outcome, run.namespace, run.task_queue, "workflow", run.workflow_type, task_id)


async def request_wake(conn: Conn, run: LockedRun, outcome: Outcome) -> str | None:
    """Apply a wake to a locked run (one statement); returns the id of a task it created.

    A standalone activity's host run is never woken: it has no workflow code (a signal
    to it is recorded and nothing runs it; its activity's outcome closes it)."""
    if not run.is_open or run.hosts_standalone_activity:
        return None
    created = await tasks.wake_run(conn, run, task_id=new_id())
    if created is not None:
        offer_workflow_task(run, created, outcome)
    return created
