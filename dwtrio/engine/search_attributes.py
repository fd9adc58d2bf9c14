"""The search-attribute registry (control-plane.md §8) and the type rule for values.

Store operations (``op(conn, ...)``): :func:`create` runs in a transaction
(it locks the namespace's registrations so the limit holds under concurrent
creates), :func:`delete` is one statement, :func:`list_custom` and
:func:`check_values` only read.

A value given at start or by ``upsert_search_attributes`` must fit the type
registered for its key in the run's namespace; keys nobody registered keep only
the key and size rules (``protocol.workflows.search_attribute_errors``), and
``null`` (a delete) always passes. Checking costs one primary-key read of the
keys at hand, and none when there are no values to check.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from dwtrio.errors import (
    NamespaceNotFoundError,
    SearchAttributeAlreadyExistsError,
    SearchAttributeLimitReachedError,
    SearchAttributeNameReservedError,
    SearchAttributeNotFoundError,
    SystemSearchAttributeError,
    ValidationFailedError,
)
from dwtrio.protocol.search_attributes import SYSTEM_ATTRIBUTES, could_be_custom, value_type_errors
from dwtrio.store import search_attributes as store
from dwtrio.store.pool import Conn


async def list_custom(conn: Conn, namespace: str) -> dict[str, str]:
    """The namespace's custom attributes, name to type, sorted by name."""
    return {d.name: d.type for d in await store.list_definitions(conn, namespace)}


async def create(conn: Conn, namespace: str, name: str, type_: str, limit: int) -> None:
    """Register ``name`` as ``type_`` in ``namespace``.

    Raises:
        SearchAttributeNameReservedError: ``name`` is a system attribute.
        SearchAttributeAlreadyExistsError: ``name`` is registered (with its type).
        SearchAttributeLimitReachedError: the namespace already has ``limit``.
    """
    if name in SYSTEM_ATTRIBUTES:
        raise SearchAttributeNameReservedError(
            f"Search attribute {name!r} is a system attribute; choose another name.", name=name
        )
    if not await store.lock_namespace(conn, namespace):
        raise NamespaceNotFoundError(
            f"Namespace {namespace!r} does not exist.", namespace=namespace
        )
    result = await store.create(conn, namespace, name, type_, limit)
    if result.created_type is not None:
        return
    if result.existing_type is not None:
        raise SearchAttributeAlreadyExistsError(
            f"Search attribute {name!r} is already registered as {result.existing_type}.",
            name=name,
            type=result.existing_type,
        )
    raise SearchAttributeLimitReachedError(
        f"The namespace already has {result.taken} custom search attributes; the limit is {limit}.",
        limit=limit,
    )


async def delete(conn: Conn, namespace: str, name: str) -> None:
    """Remove the custom attribute ``name``; runs keep the values they have.

    Raises:
        SystemSearchAttributeError: ``name`` is a system attribute.
        SearchAttributeNotFoundError: no custom attribute has the name.
    """
    if name in SYSTEM_ATTRIBUTES:
        raise SystemSearchAttributeError(
            f"Search attribute {name!r} is a system attribute and cannot be deleted.", name=name
        )
    if not could_be_custom(name) or not await store.delete(conn, namespace, name):
        raise SearchAttributeNotFoundError(
            f"Search attribute {name!r} is not registered in this namespace.", name=name
        )


async def check_values(
    conn: Conn,
    namespace: str,
    attributes: Mapping[str, Any],
    field: str,
    known: MutableMapping[str, str | None] | None = None,
) -> None:
    """Refuse values that do not fit their keys' registered types.

    ``known`` caches lookups across calls (one workflow-task completion may carry
    several upserts): name to type, None for a name nobody registered. Only the
    non-null keys not in it yet are read, in one query.

    Raises:
        ValidationFailedError: keyed ``<field>.<key>``, one message per bad value.
    """
    known = {} if known is None else known
    wanted = [k for k, v in attributes.items() if v is not None and k not in known]
    if wanted:
        found = await store.types_of(conn, namespace, wanted)
        for name in wanted:
            known[name] = found.get(name)
    types = {k: t for k, t in known.items() if t is not None}
    if problems := value_type_errors(types, attributes):
        raise ValidationFailedError({f"{field}.{key}": [text] for key, text in problems.items()})
