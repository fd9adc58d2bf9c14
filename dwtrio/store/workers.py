"""Worker registrations."""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import sql


@attrs.frozen(kw_only=True)
class Registration:
    namespace: str
    worker_id: str
    task_queue: str
    runtime: str
    sdk_version: str | None
    build_id: str
    supported_workflow_types: list[str]
    supported_activity_types: list[str]
    workflow_definition_fingerprints: dict[str, Any]
    workflow_command_contracts: dict[str, Any] | None
    capabilities: list[str]
    capability_manifest: dict[str, Any] | None
    task_slots: dict[str, Any] | None
    process_metrics: dict[str, Any] | None
    max_concurrent_workflow_tasks: int
    max_concurrent_activity_tasks: int
    max_concurrent_worker_sessions: int | None
    heartbeat_interval_seconds: int | None


async def register(conn: Conn, reg: Registration) -> None:
    await conn.execute(sql("upsert_worker_registration"), *attrs.astuple(reg))


async def ensure_registered(
    conn: Conn, namespace: str, worker_id: str, task_queue: str
) -> tuple[list[str], list[str]]:
    """Implicitly register an unknown poller; returns (workflow types, activity types)."""
    row = await conn.fetchrow(sql("ensure_worker_registration"), namespace, worker_id, task_queue)
    return list(row["supported_workflow_types"]), list(row["supported_activity_types"])


async def heartbeat(
    conn: Conn,
    namespace: str,
    worker_id: str,
    task_slots: dict[str, Any] | None,
    process_metrics: dict[str, Any] | None,
) -> bool:
    row = await conn.fetchrow(
        sql("heartbeat_worker"), namespace, worker_id, task_slots, process_metrics
    )
    return row is not None


async def deregister(conn: Conn, namespace: str, worker_id: str) -> list[str] | None:
    """Deregister and release its workflow-task leases; returns their queues, or None if unknown."""
    if await conn.fetchrow(sql("deregister_worker"), namespace, worker_id) is None:
        return None
    rows = await conn.fetch(sql("release_worker_workflow_tasks"), namespace, worker_id)
    return [r["task_queue"] for r in rows]
