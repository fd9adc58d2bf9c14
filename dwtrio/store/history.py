"""History events (``schema/queries/history.sql``): append (under the run lock) and read pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from dwtrio.protocol.ids import new_id
from dwtrio.store.pool import Conn, note_new_events
from dwtrio.store.queries import query


@attrs.frozen(kw_only=True)
class NewEvent:
    event_type: str
    payload: dict[str, Any] = attrs.field(factory=dict)
    workflow_task_id: str | None = None
    workflow_command_id: str | None = None


@attrs.frozen
class EventRow:
    id: str
    sequence: int
    event_type: str
    payload: dict[str, Any]
    workflow_task_id: str | None
    workflow_command_id: str | None
    recorded_at: datetime


EVENT_FIELDS = tuple(f.name for f in attrs.fields(EventRow))

_APPEND_HISTORY_EVENTS = query("append_history_events")
_LIST_HISTORY_PAGE = query("list_history_page", EventRow)
_LAST_CLOSING_EVENT = query("last_closing_event")


async def append_events(conn: Conn, run_id: str, events: list[NewEvent]) -> int:
    """Append events with contiguous sequences (one round trip); returns the last sequence.

    The caller must hold the run row lock (``SELECT ... FOR UPDATE``), which
    serialises sequence allocation per run.
    """
    if not events:
        return 0
    note_new_events(run_id)
    rows = await _APPEND_HISTORY_EVENTS.fetch(
        conn,
        run_id=run_id,
        ids=[new_id() for _ in events],
        event_types=[e.event_type for e in events],
        payloads=[e.payload for e in events],
        task_ids=[e.workflow_task_id for e in events],
        command_ids=[e.workflow_command_id for e in events],
    )
    return max(int(r[0]) for r in rows)


async def list_events(conn: Conn, run_id: str, after_sequence: int, limit: int) -> list[EventRow]:
    return await _LIST_HISTORY_PAGE.all(
        conn, run_id=run_id, after_sequence=after_sequence, limit=limit
    )


async def last_closing_payload(conn: Conn, run_id: str) -> dict[str, Any] | None:
    """The payload of the run's newest closing event (failed, timed out, cancelled,
    terminated), or None."""
    payload: dict[str, Any] | None = await _LAST_CLOSING_EVENT.fetchval(conn, run_id=run_id)
    return payload
