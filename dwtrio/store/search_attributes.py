"""Custom search-attribute definitions (``schema/queries/search_attributes.sql``).

One row per (namespace, name); the primary key serves every read here. The
system attributes are constants (``protocol/search_attributes.py``), never rows.
"""

from __future__ import annotations

from collections.abc import Collection

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class Definition:
    name: str
    type: str


@attrs.frozen
class CreateResult:
    #: The type just registered, or None when nothing was inserted.
    created_type: str | None
    #: The type of a definition that already had the name (None if there was none).
    existing_type: str | None
    #: How many custom attributes the namespace had before this insert.
    taken: int


_LIST_SEARCH_ATTRIBUTES = query("list_search_attributes", Definition)
_SEARCH_ATTRIBUTE_TYPES = query("search_attribute_types", Definition)
_LOCK_SEARCH_ATTRIBUTE_NAMESPACE = query("lock_search_attribute_namespace")
_CREATE_SEARCH_ATTRIBUTE = query("create_search_attribute", CreateResult)
_DELETE_SEARCH_ATTRIBUTE = query("delete_search_attribute")


async def list_definitions(conn: Conn, namespace: str) -> list[Definition]:
    """Every custom attribute of ``namespace``, sorted by name."""
    return await _LIST_SEARCH_ATTRIBUTES.all(conn, namespace=namespace)


async def types_of(conn: Conn, namespace: str, names: Collection[str]) -> dict[str, str]:
    """The registered type of each of ``names`` that has one."""
    rows = await _SEARCH_ATTRIBUTE_TYPES.all(conn, namespace=namespace, names=list(names))
    return {row.name: row.type for row in rows}


async def lock_namespace(conn: Conn, namespace: str) -> bool:
    """Hold the namespace's registrations until the transaction ends; False if it is gone."""
    return bool(await _LOCK_SEARCH_ATTRIBUTE_NAMESPACE.fetchval(conn, namespace=namespace))


async def create(conn: Conn, namespace: str, name: str, type_: str, max_count: int) -> CreateResult:
    """Insert the definition unless the name is taken or ``max_count`` are registered.

    Exact only under :func:`lock_namespace` (the count and the existing row are
    read in the statement's snapshot).
    """
    row = await _CREATE_SEARCH_ATTRIBUTE.one(
        conn, namespace=namespace, name=name, type=type_, max_count=max_count
    )
    assert row is not None  # the final SELECT always returns one row
    return row


async def delete(conn: Conn, namespace: str, name: str) -> bool:
    """Remove the definition; whether there was one."""
    return await _DELETE_SEARCH_ATTRIBUTE.fetchval(conn, namespace=namespace, name=name) is not None
