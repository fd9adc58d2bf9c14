"""Build-id rollouts (schedules-and-admission.md §3): the cohorts of a task queue, and
the operator's drain, resume and promote of one cohort.

A cohort is ``(namespace, task_queue, build_id)``, ``build_id`` None being the
unversioned cohort (workers that registered without one; ``''`` in the store).

* **Drain** records the intent and moves the cohort's current registrations from
  ``active`` to ``draining`` in the same transaction; every later registration,
  implicit registration or heartbeat of a worker of that cohort stores
  ``draining`` too (``schema/queries/workers.sql``). A draining worker's claims
  take nothing (the claim statements check the cohort). A repeated drain keeps
  the first ``drained_at``.
* **Resume** clears the intent and moves the cohort's ``draining`` registrations
  back to ``active`` at once, and wakes the queue's pollers (the cohort's parked
  polls may claim again). A cohort without a rollout row has nothing to resume:
  the answer is ``active`` and nothing is written.
* **Promote** selects the cohort for new starts on its queue: every workflow
  started on the queue afterwards (``POST /api/workflows``, schedules, child
  workflows) has ``compatibility`` = that build id, and only that build's workers
  claim its tasks; runs started before keep their marker. The selected cohort is
  the one with the queue's latest ``promoted_at``; promoting the unversioned
  cohort makes new starts unpinned again (``compatibility`` null). A draining
  cohort cannot be promoted (409 ``build_id_draining``): its workers take
  nothing, so the runs pinned to it would wait.

Operations are ``op(conn, ...)``: the reads run with ``Store.read``, the changes
with ``Store.transaction``.
"""

from __future__ import annotations

import math

import attrs

from dwtrio import wire
from dwtrio.engine.outcome import Outcome
from dwtrio.errors import BuildIdDrainingError
from dwtrio.protocol.build_ids import UNVERSIONED
from dwtrio.protocol.responses import BuildIdCohort, BuildIdRollout, BuildIdRolloutState, Deployment
from dwtrio.store import build_ids as store
from dwtrio.store.build_ids import CohortRow, RolloutRow
from dwtrio.store.pool import Conn

#: The rollout statuses in list order: cohorts that take work first.
STATUS_ORDER = ("active", "active_with_draining", "draining", "stale_only", "no_workers")


def rollout_status(row: CohortRow) -> str:
    """What the cohort is doing: from its live workers' counts and its drain intent."""
    intent_draining = row.drain_intent == "draining"
    if row.active_worker_count > 0:
        if intent_draining or row.draining_worker_count > 0:
            return "active_with_draining"
        return "active"
    if row.draining_worker_count > 0 or intent_draining:
        return "draining"
    if row.stale_worker_count > 0:
        return "stale_only"
    return "no_workers"


def cohort_body(row: CohortRow) -> BuildIdCohort:
    return BuildIdCohort(
        build_id=row.build_id or None,
        rollout_status=rollout_status(row),
        drain_intent=row.drain_intent,
        drained_at=wire.iso_z(row.drained_at),
        active_worker_count=row.active_worker_count,
        draining_worker_count=row.draining_worker_count,
        stale_worker_count=row.stale_worker_count,
        total_worker_count=row.total_worker_count,
        runtimes=sorted(row.runtimes),
        sdk_versions=sorted(row.sdk_versions),
        last_heartbeat_at=wire.iso_z(row.last_heartbeat_at),
        first_seen_at=wire.iso_z(row.first_seen_at),
        promoted_at=wire.iso_z(row.promoted_at),
        new_start_selected=row.new_start_selected,
    )


def _list_order(row: CohortRow) -> tuple[int, bool, float, str]:
    """By rollout status; within one, named builds before the unversioned cohort, then
    the newest heartbeat first (none last); the build id breaks remaining ties."""
    heartbeat = row.last_heartbeat_at
    newest_first = -heartbeat.timestamp() if heartbeat is not None else math.inf
    return (STATUS_ORDER.index(rollout_status(row)), not row.build_id, newest_first, row.build_id)


async def list_cohorts(
    conn: Conn, namespace: str, task_queue: str, stale_after_s: int
) -> BuildIdRollout:
    """The queue's cohorts in rollout order (an unknown queue has none)."""
    rows = await store.list_cohorts(conn, namespace, task_queue, stale_after_s)
    return BuildIdRollout(
        namespace=namespace,
        task_queue=task_queue,
        stale_after_seconds=stale_after_s,
        build_ids=[cohort_body(r) for r in sorted(rows, key=_list_order)],
    )


def _state(
    namespace: str, task_queue: str, build_id: str | None, row: RolloutRow | None
) -> BuildIdRolloutState:
    return BuildIdRolloutState(
        namespace=namespace,
        task_queue=task_queue,
        build_id=build_id,
        drain_intent="active" if row is None else row.drain_intent,
        drained_at=None if row is None else wire.iso_z(row.drained_at),
        promoted_at=None if row is None else wire.iso_z(row.promoted_at),
        new_start_selected=row is not None and row.new_start_selected,
    )


async def drain(conn: Conn, namespace: str, task_queue: str, build_id: str | None) -> Outcome:
    """Mark the cohort draining and its current registrations with it."""
    key = build_id or UNVERSIONED
    row = await store.drain(conn, namespace, task_queue, key)
    await store.set_worker_status(
        conn, namespace, task_queue, key, from_status="active", to_status="draining"
    )
    return Outcome(body=_state(namespace, task_queue, build_id, row))


async def resume(conn: Conn, namespace: str, task_queue: str, build_id: str | None) -> Outcome:
    """Clear the cohort's drain and put its draining registrations back to active."""
    key = build_id or UNVERSIONED
    row = await store.resume(conn, namespace, task_queue, key)
    outcome = Outcome(body=_state(namespace, task_queue, build_id, row))
    if row is not None:
        await store.set_worker_status(
            conn, namespace, task_queue, key, from_status="draining", to_status="active"
        )
        # Its workers' parked polls claimed nothing while it drained: they look again now.
        outcome.wake(namespace, task_queue, "workflow")
        outcome.wake(namespace, task_queue, "activity")
    return outcome


async def promote(conn: Conn, namespace: str, task_queue: str, build_id: str | None) -> Outcome:
    """Select the cohort for new starts on its queue.

    Raises:
        BuildIdDrainingError: the cohort is draining (nothing is written).
    """
    row = await store.promote(conn, namespace, task_queue, build_id or UNVERSIONED)
    if row is None:
        raise BuildIdDrainingError(
            f"Build id {build_id!r} is draining on task queue {task_queue!r}; "
            "resume it before promoting it.",
            task_queue=task_queue,
            build_id=build_id,
        )
    state = _state(namespace, task_queue, build_id, row)
    deployment = Deployment(task_queue=task_queue, build_id=build_id, promoted_at=state.promoted_at)
    return Outcome(body=attrs.evolve(state, deployment=deployment))
