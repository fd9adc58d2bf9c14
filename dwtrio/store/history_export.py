"""Reads of a history export (``schema/queries/history_export.sql``): the run, then pages.

Each function reads one page and takes the keyset position explicitly, so the caller
decides how much of a run is in memory at once (one page).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import attrs

from dwtrio.store.history import EventRow
from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class RunHead:
    """The exported run, with its instance's current run and run count."""

    id: str
    workflow_id: str
    namespace: str
    run_number: int
    workflow_type: str
    business_key: str | None
    task_queue: str
    compatibility: str | None
    status: str
    status_bucket: str
    closed_reason: str | None
    payload_codec: str | None
    arguments: str | None
    output: str | None
    memo: dict[str, Any]
    search_attributes: dict[str, Any]
    visibility_labels: Any
    last_history_sequence: int
    history_size_bytes: int
    run_timeout_seconds: int | None
    execution_deadline_at: datetime | None
    run_deadline_at: datetime | None
    wait_kind: str | None
    wait_reason: str | None
    wait_started_at: datetime | None
    wait_deadline_at: datetime | None
    started_at: datetime
    closed_at: datetime | None
    last_progress_at: datetime | None
    archived_at: datetime | None
    archive_command_id: str | None
    archive_reason: str | None
    continued_from_run_id: str | None
    continued_to_run_id: str | None
    #: Why the previous run closed: ``continued`` (continue-as-new) or ``failed`` (redrive).
    continued_from_closed_reason: str | None
    current_run_id: str | None
    run_count: int


@attrs.frozen
class SectionRow:
    """One entry of a bundle section: its keyset position and the entry itself."""

    key: str
    item: dict[str, Any]


_HEAD = query("export_run_head", RunHead)
_EVENTS = query("export_events_page", EventRow)
_PARENTS = query("export_parent_calls", SectionRow)
_COMMANDS = query("export_commands_page", SectionRow)
_SIGNALS = query("export_signals_page", SectionRow)
_UPDATES = query("export_updates_page", SectionRow)
_TASKS = query("export_tasks_page", SectionRow)
_ACTIVITIES = query("export_activities_page", SectionRow)
_TIMERS = query("export_timers_page", SectionRow)
_FAILURES = query("export_failures_page", SectionRow)
_CHILDREN = query("export_children_page", SectionRow)

#: Most parent links read (a workflow id is started as a child by one call; more is damage).
MAX_PARENT_LINKS: Final = 100


async def get_run_head(conn: Conn, namespace: str, workflow_id: str, run_id: str) -> RunHead | None:
    return await _HEAD.one(conn, run_id=run_id, workflow_id=workflow_id, namespace=namespace)


async def events_page(
    conn: Conn, run_id: str, after_sequence: int, upto_sequence: int, limit: int
) -> list[EventRow]:
    return await _EVENTS.all(
        conn,
        run_id=run_id,
        after_sequence=after_sequence,
        upto_sequence=upto_sequence,
        limit=limit,
    )


async def parent_calls(conn: Conn, workflow_id: str) -> list[SectionRow]:
    return await _PARENTS.all(conn, workflow_id=workflow_id, limit=MAX_PARENT_LINKS)


async def _commands(conn: Conn, run_id: str, after_key: str, limit: int) -> list[SectionRow]:
    return await _COMMANDS.all(conn, run_id=run_id, after_key=after_key, limit=limit)


async def _signals(conn: Conn, run_id: str, after_key: str, limit: int) -> list[SectionRow]:
    return await _SIGNALS.all(conn, run_id=run_id, after_key=after_key, limit=limit)


async def _updates(conn: Conn, run_id: str, after_key: str, limit: int) -> list[SectionRow]:
    return await _UPDATES.all(conn, run_id=run_id, after_key=after_key, limit=limit)


async def _tasks(conn: Conn, run_id: str, after_key: str, limit: int) -> list[SectionRow]:
    return await _TASKS.all(conn, run_id=run_id, after_key=after_key, limit=limit)


async def _activities(conn: Conn, run_id: str, after_key: str, limit: int) -> list[SectionRow]:
    return await _ACTIVITIES.all(conn, run_id=run_id, after_key=after_key, limit=limit)


async def _timers(conn: Conn, run_id: str, after_key: str, limit: int) -> list[SectionRow]:
    return await _TIMERS.all(conn, run_id=run_id, after_key=after_key, limit=limit)


async def _failures(conn: Conn, run_id: str, after_key: str, limit: int) -> list[SectionRow]:
    return await _FAILURES.all(conn, run_id=run_id, after_key=after_key, limit=limit)


async def _children(conn: Conn, run_id: str, after_key: str, limit: int) -> list[SectionRow]:
    return await _CHILDREN.all(conn, run_id=run_id, after_key=after_key, limit=limit)


_SECTION_PAGES: Final = {
    "commands": _commands,
    "signals": _signals,
    "updates": _updates,
    "tasks": _tasks,
    "activities": _activities,
    "timers": _timers,
    "failures": _failures,
    "children": _children,
}
#: The paged sections, by the bundle key they fill (``children`` fills ``links.children``).
SECTIONS: Final = tuple(_SECTION_PAGES)


async def section_page(
    conn: Conn, section: str, run_id: str, after_key: str, limit: int
) -> list[SectionRow]:
    """One page of ``section`` (one of :data:`SECTIONS`) after ``after_key``, by id."""
    return await _SECTION_PAGES[section](conn, run_id, after_key, limit)
