"""Admission at claim time: caps per queue, namespace and budget group, and drained cohorts.

A claim on a capped queue (``ClaimParams.caps``, resolved from the settings by
``protocol/admission.py``) runs in a transaction that first takes its scope's
advisory lock (:func:`admit`), so the claims of every node on that scope take
turns; it then counts what the caps limit and claims nothing if one is
reached: the poll goes on waiting (``Throttled``), it never errors. A claim
that did lease a task on a queue with a dispatch cap counts one dispatch in
each capped scope (:func:`record`), inside the same transaction, so the next
claim's count includes it.

An uncapped queue (the default) takes none of this: its claim is the single
statement it always was.

A claim that found nothing may have been refused because the worker's
build-id cohort drains (the claim statements exclude such workers): then the
poll should not wait in the queue's line at all (:func:`refused`).
"""

from __future__ import annotations

from typing import Any

from dwtrio.engine.claims import ClaimParams
from dwtrio.protocol.admission import BLOCKED, Blocked, Cap, QueueCaps, Throttled, global_source
from dwtrio.store import admission as store
from dwtrio.store.pool import Conn

#: How soon a poll throttled by a lease cap looks again without a wake (a lease may
#: end on another node, which wakes nobody here).
LEASE_RECHECK_S = 0.1


async def admit(conn: Conn, caps: QueueCaps) -> Throttled | None:
    """Lock the caps' scope for the rest of the transaction; a ``Throttled`` when a
    cap is reached, else None (the claim may lease one task)."""
    await store.lock_scope(conn, caps.lock_scope)
    (counts,) = await _counts(conn, [caps], with_namespace=caps.leases_per_namespace is not None)
    leases = (
        (caps.leases_per_queue, counts.queue_leases),
        (caps.leases_per_namespace, counts.namespace_leases),
    )
    if any(cap is not None and n >= cap.limit for cap, n in leases):
        return Throttled(LEASE_RECHECK_S)
    dispatches = (
        (caps.dispatches_per_minute, counts.queue_dispatches),
        (caps.dispatches_per_minute_per_namespace, counts.namespace_dispatches),
        (caps.dispatches_per_minute_per_group, counts.group_dispatches),
    )
    if any(cap is not None and n >= cap.limit for cap, n in dispatches):
        return Throttled(max(counts.minute_left_s, LEASE_RECHECK_S))
    return None


async def _counts(
    conn: Conn, budgets: list[QueueCaps], *, with_namespace: bool
) -> list[store.AdmissionCounts]:
    """What the caps of ``budgets`` (queues and kinds of one namespace) count now."""
    return await store.counts(
        conn,
        namespace=budgets[0].namespace,
        with_namespace=with_namespace,
        task_queues=[c.task_queue for c in budgets],
        kinds=[c.kind for c in budgets],
        queue_scopes=[c.queue_scope for c in budgets],
        namespace_scopes=[c.namespace_scope for c in budgets],
        group_scopes=[c.group_scope for c in budgets],
    )


async def record(conn: Conn, caps: QueueCaps) -> None:
    """Count the dispatch a claim just made, in each scope with a dispatch cap."""
    scopes: list[str] = []
    if caps.counts_dispatches:
        scopes.append(caps.queue_scope)
    if caps.dispatches_per_minute_per_namespace is not None:
        scopes.append(caps.namespace_scope)
    if caps.dispatches_per_minute_per_group is not None and caps.group_scope is not None:
        scopes.append(caps.group_scope)
    if scopes:
        await store.record_dispatch(conn, scopes)


async def refused(conn: Conn, params: ClaimParams) -> Blocked | None:
    """After a claim that found nothing: ``BLOCKED`` if the worker's cohort drains."""
    draining = await store.cohort_draining(
        conn,
        namespace=params.namespace,
        task_queue=params.task_queue,
        worker_id=params.worker_id,
    )
    return BLOCKED if draining else None


def _remaining(cap: Cap | None, count: int) -> int | None:
    return None if cap is None else max(0, cap.limit - count)


async def server_budgets(conn: Conn, budgets: list[QueueCaps]) -> list[dict[str, Any]]:
    """The server side of a task queue's ``admission`` entry for each of ``budgets``
    (queues and kinds of one namespace; schedules-and-admission.md §2.3 and §2.5),
    read in one statement: each cap, what it counts now and what is left, where it
    was configured, and ``server_status``: ``unlimited`` (no cap), ``throttled`` (a
    cap is reached) or ``accepting``. Locks are Postgres advisory locks, always
    available, so ``unavailable`` never occurs."""
    if not budgets:
        return []
    rows = await _counts(conn, budgets, with_namespace=True)
    return [_server_budget(caps, counts) for caps, counts in zip(budgets, rows, strict=True)]


def _server_budget(caps: QueueCaps, counts: store.AdmissionCounts) -> dict[str, Any]:
    ns_leases = counts.namespace_leases
    pairs = (
        (caps.leases_per_queue, counts.queue_leases),
        (caps.leases_per_namespace, ns_leases),
        (caps.dispatches_per_minute, counts.queue_dispatches),
        (caps.dispatches_per_minute_per_namespace, counts.namespace_dispatches),
        (caps.dispatches_per_minute_per_group, counts.group_dispatches),
    )
    sources = caps.sources()
    if not caps.any:
        status = "unlimited"
    elif any(cap is not None and n >= cap.limit for cap, n in pairs):
        status = "throttled"
    else:
        status = "accepting"

    def limit(cap: Cap | None) -> int | None:
        return None if cap is None else cap.limit

    return {
        "server_budget_source": (
            ";".join(sources)
            if sources
            else global_source(caps.kind, "max_active_leases_per_queue")
        ),
        "server_max_active_leases_per_queue": limit(caps.leases_per_queue),
        "server_active_lease_count": counts.queue_leases,
        "server_remaining_active_lease_capacity": _remaining(
            caps.leases_per_queue, counts.queue_leases
        ),
        "server_max_active_leases_per_namespace": limit(caps.leases_per_namespace),
        "server_namespace_active_lease_count": ns_leases,
        "server_remaining_namespace_active_lease_capacity": _remaining(
            caps.leases_per_namespace, ns_leases
        ),
        "server_max_dispatches_per_minute": limit(caps.dispatches_per_minute),
        "server_dispatch_count_this_minute": counts.queue_dispatches,
        "server_remaining_dispatch_capacity": _remaining(
            caps.dispatches_per_minute, counts.queue_dispatches
        ),
        "server_max_dispatches_per_minute_per_namespace": limit(
            caps.dispatches_per_minute_per_namespace
        ),
        "server_namespace_dispatch_count_this_minute": counts.namespace_dispatches,
        "server_remaining_namespace_dispatch_capacity": _remaining(
            caps.dispatches_per_minute_per_namespace, counts.namespace_dispatches
        ),
        "server_dispatch_budget_group": caps.budget_group,
        "server_max_dispatches_per_minute_per_budget_group": limit(
            caps.dispatches_per_minute_per_group
        ),
        "server_budget_group_dispatch_count_this_minute": counts.group_dispatches,
        "server_remaining_budget_group_dispatch_capacity": _remaining(
            caps.dispatches_per_minute_per_group, counts.group_dispatches
        ),
        "server_lock_required": caps.any,
        "server_lock_supported": True,
        "server_status": status,
    }
