"""Run rows as the engine sees them (locked for the duration of a use case)."""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio import payloads
from dwtrio.store.pool import Conn
from dwtrio.store.queries import sql

OPEN_STATUSES = frozenset({"pending", "running", "waiting"})


@attrs.frozen(kw_only=True)
class LockedRun:
    id: str
    workflow_id: str
    namespace: str
    workflow_type: str
    task_queue: str
    status: str
    wake_pending: bool
    last_step_sequence: int
    payload_codec: str | None
    arguments: str | None
    compatibility: str | None
    #: The open condition wait, if any (engine/commands/conditions.py).
    open_wait_id: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @classmethod
    def inserted(
        cls,
        *,
        id: str,
        workflow_id: str,
        namespace: str,
        workflow_type: str,
        task_queue: str,
        arguments: str | None,
        compatibility: str | None = None,
    ) -> LockedRun:
        """A run this transaction just inserted: already locked and invisible to everyone
        else, so its state (pending, no steps yet) is known without reading it back."""
        return cls(
            id=id,
            workflow_id=workflow_id,
            namespace=namespace,
            workflow_type=workflow_type,
            task_queue=task_queue,
            status="pending",
            wake_pending=False,
            last_step_sequence=0,
            payload_codec=payloads.CODEC,
            arguments=arguments,
            compatibility=compatibility,
        )


_RUN_FIELDS = tuple(attrs.fields_dict(LockedRun))


def joined_run(row: Any) -> LockedRun:
    """The run of a statement that locked it with another row: ``lock_run``'s columns
    prefixed ``run_`` (its id as ``run_id_``, beside the other row's ``run_id``)."""
    fields = {f: row[f"run_{f}"] for f in _RUN_FIELDS if f != "id"}
    return LockedRun(id=row["run_id_"], **fields)


async def lock_run(conn: Conn, run_id: str) -> LockedRun | None:
    row = await conn.fetchrow(sql("lock_run"), run_id)
    return None if row is None else LockedRun(**dict(row))


async def set_status(conn: Conn, run_id: str, status: str) -> None:
    await conn.execute(sql("set_run_status"), run_id, status)


async def set_wake_pending(conn: Conn, run_id: str, pending: bool) -> None:
    await conn.execute(sql("set_wake_pending"), run_id, pending)
