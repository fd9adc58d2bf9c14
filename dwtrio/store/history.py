"""History events: append (under the run lock) and read pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.protocol.ids import new_id
from dwtrio.store.pool import Conn
from dwtrio.store.queries import sql


@attrs.frozen(kw_only=True)
class NewEvent:
    event_type: str
    payload: dict[str, Any] = attrs.field(factory=dict)
    workflow_task_id: str | None = None
    workflow_command_id: str | None = None


@attrs.frozen(kw_only=True)
class EventRow:
    id: str
    sequence: int
    event_type: str
    payload: dict[str, Any]
    workflow_task_id: str | None
    workflow_command_id: str | None
    recorded_at: datetime


EVENT_FIELDS = tuple(attrs.fields_dict(EventRow))


async def append_events(conn: Conn, run_id: str, events: list[NewEvent]) -> int:
    """Append events with contiguous sequences (one round trip); returns the last sequence.

    The caller must hold the run row lock (``SELECT ... FOR UPDATE``), which
    serialises sequence allocation per run.
    """
    if not events:
        return 0
    rows = await conn.fetch(
        sql("append_history_events"),
        run_id,
        [new_id() for _ in events],
        [e.event_type for e in events],
        [e.payload for e in events],
        [e.workflow_task_id for e in events],
        [e.workflow_command_id for e in events],
    )
    return max(int(r["sequence"]) for r in rows)


async def list_events(conn: Conn, run_id: str, after_sequence: int, limit: int) -> list[EventRow]:
    rows = await conn.fetch(sql("list_history_page"), run_id, after_sequence, limit)
    return [EventRow(**dict(r)) for r in rows]
