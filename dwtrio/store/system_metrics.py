"""What the operator metrics and system health read besides the task queues
(``schema/queries/system_metrics.sql``).

Every read is bounded whatever the size of the namespace: runs come from the
counters the ``workflow_runs`` triggers keep (migration 0007), workers from the
namespace's registrations, schedules from the due range of their due index.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class StatusCountRow:
    #: 'open' (pending, running or waiting) or a closed status.
    status: str
    count: int


@attrs.frozen
class WorkerCountsRow:
    active_count: int
    draining_count: int
    stale_count: int
    draining_build_id_count: int
    draining_queues: list[str]


@attrs.frozen
class ScheduleLagRow:
    due_count: int
    late_count: int
    oldest_next_fire_at: datetime | None
    max_lag_s: int | None


@attrs.frozen
class BackendFactsRow:
    server_version: str
    server_version_num: int
    max_connections: int
    database_connections: int
    schema_version: int | None


_RUN_STATUS_COUNTS = query("run_status_counts", StatusCountRow)
_WORKER_COUNTS = query("namespace_worker_counts", WorkerCountsRow)
_SCHEDULE_LAG = query("schedule_lag", ScheduleLagRow)
_BACKEND_FACTS = query("backend_facts", BackendFactsRow)


async def run_status_counts(conn: Conn, namespace: str) -> dict[str, int]:
    """Runs of the namespace per status class; a class without runs is left out."""
    rows = await _RUN_STATUS_COUNTS.all(conn, namespace=namespace)
    return {r.status: r.count for r in rows}


async def worker_counts(conn: Conn, namespace: str, *, stale_after_s: int) -> WorkerCountsRow:
    row = await _WORKER_COUNTS.one(conn, namespace=namespace, stale_after_s=stale_after_s)
    assert row is not None  # an aggregate: always one row
    return row


async def schedule_lag(conn: Conn, namespace: str, *, late_after_s: float) -> ScheduleLagRow:
    row = await _SCHEDULE_LAG.one(conn, namespace=namespace, late_after_s=late_after_s)
    assert row is not None  # an aggregate: always one row
    return row


async def backend_facts(conn: Conn) -> BackendFactsRow:
    row = await _BACKEND_FACTS.one(conn)
    assert row is not None  # a SELECT without FROM: always one row
    return row
