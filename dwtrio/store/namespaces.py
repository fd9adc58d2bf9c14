"""Namespace rows (``schema/queries/namespaces.sql``; asyncio-side store operations, run
them through Store)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.errors import NamespaceAlreadyExistsError, NamespaceNotFoundError
from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class NamespaceRow:
    name: str
    description: str | None
    retention_days: int | None
    status: str
    external_payload_storage: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@attrs.frozen
class PurgedCounts:
    """What a namespace deletion removed (``purge_namespace``)."""

    workflow_runs: int
    search_attribute_definitions: int
    workflow_worker_registrations: int


_SEED_NAMESPACE = query("seed_namespace")
_CREATE_NAMESPACE = query("create_namespace", NamespaceRow)
_GET_NAMESPACE = query("get_namespace", NamespaceRow)
_NAMESPACE_EXISTS = query("namespace_exists")
_LIST_NAMESPACES = query("list_namespaces", NamespaceRow)
_UPDATE_NAMESPACE = query("update_namespace", NamespaceRow)
_SET_NAMESPACE_EXTERNAL_STORAGE = query("set_namespace_external_storage", NamespaceRow)
_LOCK_NAMESPACE_FOR_DELETE = query("lock_namespace_for_delete", NamespaceRow)
_COUNT_NAMESPACE_OPEN_RUNS = query("count_namespace_open_runs")
_NAMESPACE_LIVE_SCHEDULE_IDS = query("namespace_live_schedule_ids")
_PURGE_NAMESPACE = query("purge_namespace", PurgedCounts)
_MARK_NAMESPACE_DELETED = query("mark_namespace_deleted", NamespaceRow)


async def seed_namespace(conn: Conn, name: str, description: str, retention_days: int) -> bool:
    """Create the namespace unless it exists; whether it was created."""
    created = await _SEED_NAMESPACE.fetchval(
        conn, name=name, description=description, retention_days=retention_days
    )
    return bool(created)


async def create_namespace(
    conn: Conn, name: str, description: str | None, retention_days: int
) -> NamespaceRow:
    row = await _CREATE_NAMESPACE.one(
        conn, name=name, description=description, retention_days=retention_days
    )
    if row is None:
        raise NamespaceAlreadyExistsError(f"Namespace {name!r} already exists.", namespace=name)
    return row


async def get_namespace(conn: Conn, name: str) -> NamespaceRow:
    row = await _GET_NAMESPACE.one(conn, name=name)
    if row is None:
        raise NamespaceNotFoundError(f"Namespace {name!r} does not exist.", namespace=name)
    return row


async def namespace_exists(conn: Conn, name: str) -> bool:
    return bool(await _NAMESPACE_EXISTS.fetchval(conn, name=name))


async def list_namespaces(conn: Conn) -> list[NamespaceRow]:
    return await _LIST_NAMESPACES.all(conn)


async def update_namespace(
    conn: Conn, name: str, description: str | None, retention_days: int | None
) -> NamespaceRow:
    row = await _UPDATE_NAMESPACE.one(
        conn, name=name, description=description, retention_days=retention_days
    )
    if row is None:
        raise NamespaceNotFoundError(f"Namespace {name!r} does not exist.", namespace=name)
    return row


async def set_external_storage(conn: Conn, name: str, policy: dict[str, Any]) -> NamespaceRow:
    row = await _SET_NAMESPACE_EXTERNAL_STORAGE.one(conn, name=name, policy=policy)
    if row is None:
        raise NamespaceNotFoundError(f"Namespace {name!r} does not exist.", namespace=name)
    return row


# --- deletion (engine/namespaces.py) ----------------------------------------------------
async def lock_for_delete(conn: Conn, name: str) -> NamespaceRow | None:
    """The live namespace, locked until the deleting transaction ends; None if there is none."""
    return await _LOCK_NAMESPACE_FOR_DELETE.one(conn, name=name)


async def count_open_runs(conn: Conn, namespace: str) -> int:
    return int(await _COUNT_NAMESPACE_OPEN_RUNS.fetchval(conn, namespace=namespace))


async def live_schedule_ids(conn: Conn, namespace: str) -> list[str]:
    return [r[0] for r in await _NAMESPACE_LIVE_SCHEDULE_IDS.fetch(conn, namespace=namespace)]


async def purge(conn: Conn, namespace: str) -> PurgedCounts:
    counts = await _PURGE_NAMESPACE.one(conn, namespace=namespace)
    assert counts is not None  # an aggregate always returns its row
    return counts


async def mark_deleted(conn: Conn, name: str) -> NamespaceRow:
    row = await _MARK_NAMESPACE_DELETED.one(conn, name=name)
    assert row is not None  # locked by lock_for_delete in the same transaction
    return row
