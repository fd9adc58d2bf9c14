"""Archive stamps on closed runs (``schema/queries/archive.sql``)."""

from __future__ import annotations

from datetime import datetime

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class ArchiveStamp:
    archived_at: datetime | None
    archive_command_id: str | None
    archive_reason: str | None


_GET_RUN_ARCHIVE = query("get_run_archive", ArchiveStamp)
_ARCHIVE_RUN = query("archive_run")


async def get_run_archive(conn: Conn, *, run_id: str) -> ArchiveStamp:
    stamp = await _GET_RUN_ARCHIVE.one(conn, run_id=run_id)
    assert stamp is not None  # the caller holds the run locked
    return stamp


async def archive_run(
    conn: Conn, *, run_id: str, command_id: str, reason: str | None
) -> datetime | None:
    """Stamp a closed, unarchived run; its ``archived_at``, None when nothing changed."""
    at: datetime | None = await _ARCHIVE_RUN.fetchval(
        conn, run_id=run_id, command_id=command_id, reason=reason
    )
    return at
