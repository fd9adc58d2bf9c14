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
    #: None unless asked for (a namespace-wide count costs more).
    namespace_leases: int | None
    queue_dispatches: int
    namespace_dispatches: int
    group_dispatches: int
    #: Seconds until the current UTC minute ends (dispatch counts start again).
    minute_left_s: float


_LOCK_ADMISSION_SCOPE = query("lock_admission_scope")
_ADMISSION_COUNTS = query("admission_counts", AdmissionCounts)
_ADMISSION_COUNTS_MANY = query("admission_counts_many", AdmissionCounts)
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
    task_queue: str,
    kind: str,
    with_namespace: bool,
    queue_scope: str,
    namespace_scope: str,
    group_scope: str | None,
) -> AdmissionCounts:
    row = await _ADMISSION_COUNTS.one(
        conn,
        namespace=namespace,
        task_queue=task_queue,
        kind=kind,
        with_namespace=with_namespace,
        queue_scope=queue_scope,
        namespace_scope=namespace_scope,
        group_scope=group_scope,
    )
    assert row is not None  # a SELECT without FROM: always one row
    return row


async def counts_many(
    conn: Conn,
    *,
    namespace: str,
    task_queues: list[str],
    kinds: list[str],
    queue_scopes: list[str],
    namespace_scopes: list[str],
    group_scopes: list[str | None],
) -> list[AdmissionCounts]:
    """:func:`counts` (with the namespace's leases) of several queues and kinds of one
    namespace, in one statement; in the order given."""
    return await _ADMISSION_COUNTS_MANY.all(
        conn,
        namespace=namespace,
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
