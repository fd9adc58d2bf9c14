"""Shared by the retention tests (HTTP and SDK): bulk-loaded runs and their row counts.

Runs are loaded with ``bench.retention.load_expired_runs`` (every row a run can have);
``shapes_of_the_keepers`` adds the runs retention must never prune.
"""

from __future__ import annotations

from typing import Any

from bench.retention import load_expired_runs, rows_of_runs
from dwtrio.store.pool import Conn, connect_once


async def on_db(dsn: str, fn: Any) -> Any:
    return await connect_once(dsn, fn)


async def load(dsn: str, *, runs: int, prefix: str, namespace: str = "default", **kw: Any) -> None:
    async def go(conn: Conn) -> None:
        await load_expired_runs(conn, namespace=namespace, runs=runs, prefix=prefix, **kw)

    await on_db(dsn, go)


async def counts(dsn: str, prefix: str) -> dict[str, int]:
    async def go(conn: Conn) -> dict[str, int]:
        return await rows_of_runs(conn, f"run-{prefix}%")

    result: dict[str, int] = await on_db(dsn, go)
    return result


async def execute(dsn: str, *statements: str) -> None:
    async def go(conn: Conn) -> None:
        for s in statements:
            await conn.execute(s)

    await on_db(dsn, go)


async def shapes_of_the_keepers(dsn: str) -> None:
    """Runs retention must keep: open (old start), inside the window, archived, a child
    whose parent is open; each with history. ``k`` prefixes them."""
    await load(dsn, runs=1, prefix="kopen", start=0)
    await load(dsn, runs=1, prefix="kwindow", start=0, closed_days_ago=1)
    await load(dsn, runs=1, prefix="karch", start=0)
    await load(dsn, runs=1, prefix="kchild", start=0)
    await load(dsn, runs=1, prefix="kparent", start=0)
    await execute(
        dsn,
        "UPDATE workflow_runs SET status = 'running', closed_at = NULL, closed_reason = NULL "
        "WHERE id LIKE 'run-kopen%'",
        "UPDATE workflow_runs SET archived_at = now() - interval '300 days' "
        "WHERE id LIKE 'run-karch%'",
        # The parent is open and called the child (child_workflow_id = the child's id).
        "UPDATE workflow_runs SET status = 'running', closed_at = NULL, closed_reason = NULL "
        "WHERE id LIKE 'run-kparent%'",
        "UPDATE child_workflow_calls SET child_workflow_id = 'wf-kchild000000000' "
        "WHERE parent_run_id = 'run-kparent000000000'",
    )


KEEPERS = ["kopen", "kwindow", "karch", "kchild", "kparent"]
