"""Build-id rollouts (``schema/queries/build_ids.sql``): the cohorts of a task queue and
the operator's drain, resume and promote of one cohort.

A cohort is ``(namespace, task_queue, build_id)``; ``build_id`` is ``''`` for the
unversioned cohort here, as in ``worker_registrations`` (null on the wire).
"""

from __future__ import annotations

from datetime import datetime

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class CohortRow:
    """One cohort of a queue: its workers' counts and its rollout row (either may be absent)."""

    build_id: str
    active_worker_count: int
    draining_worker_count: int
    stale_worker_count: int
    total_worker_count: int
    #: Unique, in no particular order.
    runtimes: list[str]
    sdk_versions: list[str]
    last_heartbeat_at: datetime | None
    first_seen_at: datetime | None
    drain_intent: str
    drained_at: datetime | None
    promoted_at: datetime | None
    new_start_selected: bool


@attrs.frozen
class RolloutRow:
    """A cohort's rollout row after a drain, resume or promote."""

    drain_intent: str
    drained_at: datetime | None
    promoted_at: datetime | None
    #: The cohort holds the latest ``promoted_at`` of its queue: new starts pin to it.
    new_start_selected: bool


_LIST_BUILD_ID_COHORTS = query("list_build_id_cohorts", CohortRow)
_DRAIN_BUILD_ID = query("drain_build_id", RolloutRow)
_RESUME_BUILD_ID = query("resume_build_id", RolloutRow)
_PROMOTE_BUILD_ID = query("promote_build_id", RolloutRow)
_SET_COHORT_WORKER_STATUS = query("set_cohort_worker_status")


async def list_cohorts(
    conn: Conn, namespace: str, task_queue: str, stale_after_s: int
) -> list[CohortRow]:
    """Every cohort of the queue, in no particular order."""
    return await _LIST_BUILD_ID_COHORTS.all(
        conn, namespace=namespace, task_queue=task_queue, stale_after_s=stale_after_s
    )


async def drain(conn: Conn, namespace: str, task_queue: str, build_id: str) -> RolloutRow:
    """Mark the cohort draining (a repeated drain keeps the first ``drained_at``)."""
    row = await _DRAIN_BUILD_ID.one(
        conn, namespace=namespace, task_queue=task_queue, build_id=build_id
    )
    assert row is not None  # an upsert always returns its row
    return row


async def resume(conn: Conn, namespace: str, task_queue: str, build_id: str) -> RolloutRow | None:
    """Clear the cohort's drain; None when it has no rollout row (nothing to resume)."""
    return await _RESUME_BUILD_ID.one(
        conn, namespace=namespace, task_queue=task_queue, build_id=build_id
    )


async def promote(conn: Conn, namespace: str, task_queue: str, build_id: str) -> RolloutRow | None:
    """Select the cohort for new starts on its queue; None (nothing written) while it drains."""
    return await _PROMOTE_BUILD_ID.one(
        conn, namespace=namespace, task_queue=task_queue, build_id=build_id
    )


async def set_worker_status(
    conn: Conn,
    namespace: str,
    task_queue: str,
    build_id: str,
    *,
    from_status: str,
    to_status: str,
) -> None:
    """Move the cohort's registrations stored ``from_status`` to ``to_status``."""
    await _SET_COHORT_WORKER_STATUS.execute(
        conn,
        namespace=namespace,
        task_queue=task_queue,
        build_id=build_id,
        from_status=from_status,
        to_status=to_status,
    )
