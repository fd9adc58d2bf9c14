"""Deleting a namespace (control-plane.md §4 and §14; data-model.md §1.1).

The namespace row is soft-deleted (``status = 'deleted'``, as data-model.md
says later reference builds do; the schema's foreign keys keep workflows and
schedules from outliving a hard delete). What it owned goes with it: its closed
runs (a namespace with an open run is refused), its schedules (soft-deleted by
the schedule rules, so their history stays), its registered search attributes,
worker registrations and build-id rollouts. A deleted namespace answers
``namespace_not_found`` everywhere, and ``POST /api/namespaces`` may create the
name again, empty. The default namespace (``DW_DEFAULT_NAMESPACE``) is never
deleted: readiness and every request that names no namespace depend on it.

Concurrency: the namespace row is locked ``FOR UPDATE`` first, so a start in
the namespace that is inserting its instance (its foreign-key check key-shares
the row) is either committed before the open-run count, and refuses the
deletion, or waits until the deletion is over and is then refused by the
database: instances reference ``(namespace, 'active')``
(``0004_live_namespace_guard``), answered as ``404 namespace_not_found``. The
same key refuses a start let through by another process's namespace cache
until it expires, and a like key on schedules (``0006_live_namespace_schedules``,
following the namespace's status so that deleted schedules stay) refuses a
schedule created that way.
"""

from __future__ import annotations

from typing import Any

from dwtrio import wire
from dwtrio.engine import schedules
from dwtrio.errors import (
    DefaultNamespaceProtectedError,
    NamespaceHasOpenRunsError,
    NamespaceNotFoundError,
)
from dwtrio.protocol.responses import NamespaceDeleted
from dwtrio.store import namespaces as store
from dwtrio.store.pool import Conn


async def delete_namespace(
    conn: Conn, name: str, *, default_namespace: str, context: dict[str, Any]
) -> NamespaceDeleted:
    """Soft-delete ``name`` and everything it owned; ``context`` goes into the
    ``ScheduleDeleted`` history event of each schedule.

    Raises:
        DefaultNamespaceProtectedError: ``name`` is the default namespace.
        NamespaceNotFoundError: no live namespace has the name.
        NamespaceHasOpenRunsError: a run in it is still open (pending, running, waiting).
    """
    if name == default_namespace.lower():
        raise DefaultNamespaceProtectedError(
            f"Namespace {name!r} is the server's default namespace (DW_DEFAULT_NAMESPACE) "
            "and cannot be deleted.",
            namespace=name,
        )
    if await store.lock_for_delete(conn, name) is None:
        raise NamespaceNotFoundError(f"Namespace {name!r} does not exist.", namespace=name)
    open_runs = await store.count_open_runs(conn, name)
    if open_runs:
        raise NamespaceHasOpenRunsError(
            f"Namespace {name!r} has {open_runs} open workflow run"
            f"{'s' if open_runs != 1 else ''}; cancel or terminate them, or let them "
            "finish, before deleting it.",
            namespace=name,
            open_run_count=open_runs,
        )
    schedule_ids = await store.live_schedule_ids(conn, name)
    for schedule_id in schedule_ids:
        await schedules.delete(conn, name, schedule_id, context)
    purged = await store.purge(conn, name)
    row = await store.mark_deleted(conn, name)
    return NamespaceDeleted(
        name=row.name,
        description=row.description,
        retention_days=row.retention_days,
        status=row.status,
        external_payload_storage=row.external_payload_storage,
        created_at=wire.iso_offset(row.created_at),
        updated_at=wire.iso_offset(row.updated_at),
        deleted={
            "workflow_runs": purged.workflow_runs,
            "workflow_schedules": len(schedule_ids),
            "search_attribute_definitions": purged.search_attribute_definitions,
            "workflow_worker_registrations": purged.workflow_worker_registrations,
        },
    )
