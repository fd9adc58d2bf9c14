"""Namespace rows (asyncio-side store operations; run them through Store)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.errors import NamespaceAlreadyExistsError, NamespaceNotFoundError
from dwtrio.store.pool import Conn
from dwtrio.store.queries import sql


@attrs.frozen(kw_only=True)
class NamespaceRow:
    name: str
    description: str | None
    retention_days: int | None
    status: str
    external_payload_storage: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


def _row(record: Any) -> NamespaceRow:
    return NamespaceRow(**dict(record))


async def create_namespace(
    conn: Conn, name: str, description: str | None, retention_days: int
) -> NamespaceRow:
    record = await conn.fetchrow(sql("create_namespace"), name, description, retention_days)
    if record is None:
        raise NamespaceAlreadyExistsError(f"Namespace {name!r} already exists.", namespace=name)
    return _row(record)


async def get_namespace(conn: Conn, name: str) -> NamespaceRow:
    record = await conn.fetchrow(sql("get_namespace"), name)
    if record is None:
        raise NamespaceNotFoundError(f"Namespace {name!r} does not exist.", namespace=name)
    return _row(record)


async def namespace_exists(conn: Conn, name: str) -> bool:
    return bool(await conn.fetchval(sql("namespace_exists"), name))


async def list_namespaces(conn: Conn) -> list[NamespaceRow]:
    return [_row(r) for r in await conn.fetch(sql("list_namespaces"))]


async def update_namespace(
    conn: Conn, name: str, description: str | None, retention_days: int | None
) -> NamespaceRow:
    record = await conn.fetchrow(sql("update_namespace"), name, description, retention_days)
    if record is None:
        raise NamespaceNotFoundError(f"Namespace {name!r} does not exist.", namespace=name)
    return _row(record)


async def set_external_storage(conn: Conn, name: str, policy: dict[str, Any]) -> NamespaceRow:
    record = await conn.fetchrow(sql("set_namespace_external_storage"), name, policy)
    if record is None:
        raise NamespaceNotFoundError(f"Namespace {name!r} does not exist.", namespace=name)
    return _row(record)
