"""Task repair: leases that expired (a worker died or lost its response) are redispatched."""

from __future__ import annotations

from dwtrio.engine.outcome import Outcome
from dwtrio.store.pool import Conn
from dwtrio.store.queries import sql

REPAIR_BATCH = 500


async def expire_leases(conn: Conn, limit: int = REPAIR_BATCH) -> tuple[Outcome, int]:
    """Make expired leases ready again; returns the queues to wake and how many were repaired."""
    rows = await conn.fetch(sql("expire_leases"), limit)
    attempts = [r["activity_attempt_id"] for r in rows if r["activity_attempt_id"]]
    if attempts:
        await conn.execute(sql("expire_activity_attempts"), attempts)
    outcome = Outcome()
    for r in rows:
        outcome.wake(r["namespace"], r["task_queue"], r["kind"])
    return outcome, len(rows)
