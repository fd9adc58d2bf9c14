"""Worker registrations (``schema/queries/workers.sql``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


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
    #: This registration's incarnation (fenced deregistration names it).
    registration_token: str


@attrs.frozen
class PollerTypes:
    supported_workflow_types: list[str]
    supported_activity_types: list[str]


@attrs.frozen
class RegistrationFence:
    """A locked registration row: its current incarnation and stored status."""

    registration_token: str | None
    status: str


@attrs.frozen
class Incarnation:
    """One incarnation (``worker_registration_incarnations``): a token and its receipt."""

    token: str
    #: active, superseded or deregistered.
    status: str
    recovered_workflow_task_count: int | None
    recovered_activity_task_count: int | None
    #: Finished longer ago than the receipt window.
    expired: bool


@attrs.frozen
class WorkerRow:
    """A registration as the worker roster shows it (``list_workers``, ``get_worker``)."""

    worker_id: str
    namespace: str
    task_queue: str
    runtime: str
    sdk_version: str | None
    build_id: str
    supported_workflow_types: list[str]
    workflow_definition_fingerprints: dict[str, Any]
    supported_activity_types: list[str]
    max_concurrent_workflow_tasks: int
    max_concurrent_activity_tasks: int
    task_slots: dict[str, Any] | None
    process_metrics: dict[str, Any] | None
    heartbeat_interval_seconds: int | None
    #: The stored status: active, draining or deregistered.
    status: str
    #: No heartbeat for the stale window (or never one).
    is_stale: bool
    last_heartbeat_at: datetime | None
    heartbeat_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


_UPSERT_WORKER_REGISTRATION = query("upsert_worker_registration")
_ENSURE_WORKER_REGISTRATION = query("ensure_worker_registration", PollerTypes)
_HEARTBEAT_WORKER = query("heartbeat_worker")
_DEREGISTER_WORKER = query("deregister_worker")
_RELEASE_WORKER_WORKFLOW_TASKS = query("release_worker_workflow_tasks")
_LIST_WORKERS = query("list_workers", WorkerRow)
_GET_WORKER = query("get_worker", WorkerRow)
_RETIRE_WORKER_INCARNATIONS = query("retire_worker_incarnations")
_INSERT_WORKER_INCARNATION = query("insert_worker_incarnation")
_LOCK_WORKER_REGISTRATION_TOKEN = query("lock_worker_registration_token", RegistrationFence)
_LOCK_WORKER_INCARNATION = query("lock_worker_incarnation", Incarnation)
_FINISH_WORKER_INCARNATION = query("finish_worker_incarnation")
_COUNT_INCARNATION_ACTIVITY_RECOVERIES = query("count_incarnation_activity_recoveries")
_PRUNE_WORKER_INCARNATIONS = query("prune_worker_incarnations")


async def register(conn: Conn, reg: Registration) -> None:
    """Upsert the registration and start its new incarnation (the earlier one, if any,
    is superseded)."""
    await _UPSERT_WORKER_REGISTRATION.execute(
        conn,
        namespace=reg.namespace,
        worker_id=reg.worker_id,
        task_queue=reg.task_queue,
        runtime=reg.runtime,
        sdk_version=reg.sdk_version,
        build_id=reg.build_id,
        supported_workflow_types=reg.supported_workflow_types,
        supported_activity_types=reg.supported_activity_types,
        workflow_definition_fingerprints=reg.workflow_definition_fingerprints,
        workflow_command_contracts=reg.workflow_command_contracts,
        capabilities=reg.capabilities,
        capability_manifest=reg.capability_manifest,
        task_slots=reg.task_slots,
        process_metrics=reg.process_metrics,
        max_concurrent_workflow_tasks=reg.max_concurrent_workflow_tasks,
        max_concurrent_activity_tasks=reg.max_concurrent_activity_tasks,
        max_concurrent_worker_sessions=reg.max_concurrent_worker_sessions,
        heartbeat_interval_seconds=reg.heartbeat_interval_seconds,
        registration_token=reg.registration_token,
    )
    await _RETIRE_WORKER_INCARNATIONS.execute(
        conn, namespace=reg.namespace, worker_id=reg.worker_id, keep_token=reg.registration_token
    )
    await _INSERT_WORKER_INCARNATION.execute(
        conn, token=reg.registration_token, namespace=reg.namespace, worker_id=reg.worker_id
    )


async def ensure_registered(
    conn: Conn, namespace: str, worker_id: str, task_queue: str
) -> tuple[list[str], list[str]]:
    """Implicitly register an unknown poller; returns (workflow types, activity types)."""
    types = await _ENSURE_WORKER_REGISTRATION.one(
        conn, namespace=namespace, worker_id=worker_id, task_queue=task_queue
    )
    assert types is not None  # an upsert always returns its row
    return list(types.supported_workflow_types), list(types.supported_activity_types)


async def heartbeat(
    conn: Conn,
    namespace: str,
    worker_id: str,
    task_slots: dict[str, Any] | None,
    process_metrics: dict[str, Any] | None,
) -> bool:
    row = await _HEARTBEAT_WORKER.fetchrow(
        conn,
        namespace=namespace,
        worker_id=worker_id,
        task_slots=task_slots,
        process_metrics=process_metrics,
    )
    return row is not None


async def deregister(conn: Conn, namespace: str, worker_id: str) -> list[str] | None:
    """Deregister and release its workflow-task leases; returns their queues, or None if
    unknown. Its active incarnation is superseded (a fenced deregistration then marks
    its own one deregistered)."""
    if await _DEREGISTER_WORKER.fetchrow(conn, namespace=namespace, worker_id=worker_id) is None:
        return None
    await _RETIRE_WORKER_INCARNATIONS.execute(
        conn, namespace=namespace, worker_id=worker_id, keep_token=None
    )
    rows = await _RELEASE_WORKER_WORKFLOW_TASKS.fetch(
        conn, namespace=namespace, worker_id=worker_id
    )
    return [r[0] for r in rows]


async def list_workers(
    conn: Conn, namespace: str, task_queue: str | None, status: str | None, stale_after_s: int
) -> list[WorkerRow]:
    """The namespace's roster, newest heartbeat first (see ``list_workers`` for the filters)."""
    return await _LIST_WORKERS.all(
        conn,
        namespace=namespace,
        task_queue=task_queue,
        status=status,
        stale_after_s=stale_after_s,
    )


async def get_worker(
    conn: Conn, namespace: str, worker_id: str, stale_after_s: int
) -> WorkerRow | None:
    return await _GET_WORKER.one(
        conn, namespace=namespace, worker_id=worker_id, stale_after_s=stale_after_s
    )


async def lock_registration_fence(
    conn: Conn, namespace: str, worker_id: str
) -> RegistrationFence | None:
    """Lock the registration row (None: not registered); take it before the incarnation."""
    return await _LOCK_WORKER_REGISTRATION_TOKEN.one(conn, namespace=namespace, worker_id=worker_id)


async def lock_incarnation(
    conn: Conn, namespace: str, worker_id: str, token: str, retention_s: int
) -> Incarnation | None:
    """Lock the worker id's incarnation ``token`` (None: no such incarnation)."""
    return await _LOCK_WORKER_INCARNATION.one(
        conn, namespace=namespace, worker_id=worker_id, token=token, retention_s=retention_s
    )


async def finish_incarnation(conn: Conn, token: str, recovered_workflow_task_count: int) -> None:
    """Record the fenced deregistration of incarnation ``token`` (its receipt)."""
    await _FINISH_WORKER_INCARNATION.execute(
        conn, token=token, recovered_workflow_task_count=recovered_workflow_task_count
    )


async def count_activity_recoveries(conn: Conn, token: str, recovered: int) -> None:
    """Add activity leases given back after the receipt committed to it."""
    await _COUNT_INCARNATION_ACTIVITY_RECOVERIES.execute(conn, token=token, recovered=recovered)


async def prune_incarnations(conn: Conn, retention_s: int, limit: int) -> int:
    """Delete up to ``limit`` receipts past their window; how many went."""
    rows = await _PRUNE_WORKER_INCARNATIONS.fetch(conn, retention_s=retention_s, limit=limit)
    return len(rows)
