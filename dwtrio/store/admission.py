"""Admission caps in Postgres (``schema/queries/admission.sql``).

The caps of a queue are enforced by every node together: a claim locks its
scope with a transaction-level advisory lock (no row is locked, so no table
has a hot row), counts active leases from the leased task rows themselves, and
counts dispatches per UTC minute in ``task_dispatch_counts``, one row per
capped scope and minute.
"""

from __future__ import annotations

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class AdmissionCounts:
    queue_leases: int
    #: 0 unless asked for (a namespace-wide count costs more).
    namespace_leases: int
    queue_dispatches: int
    namespace_dispatches: int
    group_dispatches: int
    #: Seconds until the current UTC minute ends (dispatch counts start again).
    minute_left_s: float


_LOCK_ADMISSION_SCOPE = query("lock_admission_scope")
_ADMISSION_COUNTS = query("admission_counts", AdmissionCounts)
_RECORD_DISPATCH = query("record_dispatch")
_COHORT_DRAINING = query("cohort_draining")


async def lock_scope(conn: Conn, scope: str) -> None:
    """Hold ``scope`` until the transaction ends (waits at most 1 s, then raises
    the driver's lock-not-available error)."""
    await _LOCK_ADMISSION_SCOPE.execute(conn, scope=scope)


async def counts(
    conn: Conn,
    *,
    namespace: str,
    with_namespace: bool,
    task_queues: list[str],
    kinds: list[str],
    queue_scopes: list[str],
    namespace_scopes: list[str],
    group_scopes: list[str | None],
) -> list[AdmissionCounts]:
    """What the caps of several queues and kinds of one namespace count now, in one
    statement, in the order given (the namespace's leases only ``with_namespace``)."""
    return await _ADMISSION_COUNTS.all(
        conn,
        namespace=namespace,
        with_namespace=with_namespace,
        task_queues=task_queues,
        kinds=kinds,
        queue_scopes=queue_scopes,
        namespace_scopes=namespace_scopes,
        group_scopes=group_scopes,
    )


async def record_dispatch(conn: Conn, scopes: list[str]) -> None:
    await _RECORD_DISPATCH.execute(conn, scopes=scopes)


async def cohort_draining(conn: Conn, *, namespace: str, task_queue: str, worker_id: str) -> bool:
    return bool(
        await _COHORT_DRAINING.fetchval(
            conn, namespace=namespace, task_queue=task_queue, worker_id=worker_id
        )
    )
