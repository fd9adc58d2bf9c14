"""History retention (``schema/queries/retention.sql``): expired runs, claimed and deleted."""

from __future__ import annotations

from datetime import datetime

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class ExpiredRun:
    """A locked run past its namespace's retention window."""

    run_id: str
    workflow_id: str
    #: Its history length (the run's last history sequence): what pruning it removes.
    event_count: int


@attrs.frozen
class RunRetentionState:
    """Why a named run is not expired (read, not locked)."""

    run_id: str
    is_open: bool
    archived: bool
    within_window: bool
    parent_open: bool


@attrs.frozen
class RetentionStatusRow:
    retention_days: int
    cutoff: datetime
    expired_run_count: int
    expired_run_ids: list[str]


_CLAIM_EXPIRED_RUNS = query("claim_expired_runs", ExpiredRun)
_CLAIM_LISTED_EXPIRED_RUNS = query("claim_listed_expired_runs", ExpiredRun)
_RETENTION_RUN_STATES = query("retention_run_states", RunRetentionState)
_DELETE_RUNS = query("delete_runs")
_LOCK_EMPTY_INSTANCES = query("lock_empty_instances")
_DELETE_EMPTY_INSTANCES = query("delete_empty_instances")
_RETENTION_STATUS = query("retention_status", RetentionStatusRow)
_LOCK_ORPHANED_INSTANCES = query("lock_orphaned_instances")


async def claim_expired_runs(
    conn: Conn, *, namespace: str | None, limit: int, exclude_ids: list[str]
) -> list[ExpiredRun]:
    """Lock up to ``limit`` expired runs (of one namespace, or of all when None), passing
    over ``exclude_ids``."""
    return await _CLAIM_EXPIRED_RUNS.all(
        conn, namespace=namespace, limit=limit, exclude_ids=exclude_ids
    )


async def claim_listed_expired_runs(
    conn: Conn, *, namespace: str | None, run_ids: list[str]
) -> list[ExpiredRun]:
    """Lock those of ``run_ids`` that are expired and that no other pruner holds."""
    return await _CLAIM_LISTED_EXPIRED_RUNS.all(conn, namespace=namespace, run_ids=run_ids)


async def retention_run_states(
    conn: Conn, *, namespace: str | None, run_ids: list[str]
) -> list[RunRetentionState]:
    return await _RETENTION_RUN_STATES.all(conn, namespace=namespace, run_ids=run_ids)


async def delete_runs(conn: Conn, *, run_ids: list[str]) -> None:
    """Delete locked runs and everything that hangs off them (cascades)."""
    await _DELETE_RUNS.execute(conn, run_ids=run_ids)


async def delete_empty_instances(conn: Conn, *, workflow_ids: list[str]) -> int:
    """Delete the instances of ``workflow_ids`` left without runs; how many went.

    Instances a start holds are skipped (a later pass finds them empty, or not).
    """
    rows = await _LOCK_EMPTY_INSTANCES.fetch(conn, workflow_ids=workflow_ids)
    return await _delete_locked([r[0] for r in rows], conn)


async def delete_orphaned_instances(conn: Conn, *, limit: int) -> int:
    """Delete up to ``limit`` instances an earlier pass left without runs; how many went."""
    rows = await _LOCK_ORPHANED_INSTANCES.fetch(conn, limit=limit)
    return await _delete_locked([r[0] for r in rows], conn)


async def _delete_locked(workflow_ids: list[str], conn: Conn) -> int:
    if not workflow_ids:
        return 0
    status = await _DELETE_EMPTY_INSTANCES.execute(conn, workflow_ids=workflow_ids)
    return int(status.rsplit(" ", 1)[-1])


async def retention_status(
    conn: Conn, *, namespace: str, limit: int, count_limit: int
) -> RetentionStatusRow | None:
    """The namespace's window, cutoff and expired runs; None for an unknown namespace."""
    return await _RETENTION_STATUS.one(
        conn, namespace=namespace, limit=limit, count_limit=count_limit
    )
