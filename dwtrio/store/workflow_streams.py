"""Durable workflow streams and their items (``schema/queries/workflow_streams.sql``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from dwtrio.store.pool import Conn
from dwtrio.store.queries import query


@attrs.frozen
class StreamRow:
    stream_name: str
    status: str
    last_offset: int
    total_items: int
    pending_items: int
    opened_at: datetime
    last_appended_at: datetime | None
    closed_at: datetime | None
    error_reason: str | None
    retention_seconds: int | None


@attrs.frozen
class StreamLookup:
    """A run and perhaps its stream (``stream_name`` None: the run has no such stream)."""

    run_found: bool
    stream_name: str | None
    status: str | None
    last_offset: int | None
    total_items: int | None
    pending_items: int | None
    opened_at: datetime | None
    last_appended_at: datetime | None
    closed_at: datetime | None
    error_reason: str | None
    retention_seconds: int | None

    def stream(self) -> StreamRow | None:
        if self.stream_name is None:
            return None
        return StreamRow(
            stream_name=self.stream_name,
            status=self.status or "open",
            last_offset=-1 if self.last_offset is None else self.last_offset,
            total_items=self.total_items or 0,
            pending_items=self.pending_items or 0,
            opened_at=self.opened_at,  # type: ignore[arg-type]  # set with the stream
            last_appended_at=self.last_appended_at,
            closed_at=self.closed_at,
            error_reason=self.error_reason,
            retention_seconds=self.retention_seconds,
        )


@attrs.frozen
class RunId:
    run_id: str


@attrs.frozen
class IdempotentItem:
    idempotency_key: str
    item_offset: int


@attrs.frozen
class ItemRow:
    item_offset: int
    idempotency_key: str | None
    origin: str
    origin_reference: str | None
    item_type: str | None
    content_type: str | None
    payload_blob: str | None
    payload_reference: str | None
    payload_codec: str | None
    emitted_at: datetime


@attrs.frozen
class NewItem:
    """One item to append, at ``offset``."""

    offset: int
    idempotency_key: str | None
    origin: str
    origin_reference: str | None
    item_type: str | None
    content_type: str | None
    payload_blob: str | None
    payload_reference: str | None
    payload_codec: str | None


_FIND_RUN = query("find_stream_run", RunId)
_OPEN_FOR_APPEND = query("open_stream_for_append", StreamRow)
_LOCK = query("lock_stream", StreamRow)
_GET = query("get_stream", StreamLookup)
_LIST = query("list_streams", StreamRow)
_FIND_IDEMPOTENT = query("find_idempotent_items", IdempotentItem)
_INSERT_ITEMS = query("insert_stream_items")
_RECORD_APPENDS = query("record_stream_appends", StreamRow)
_READ_ITEMS = query("read_stream_items", ItemRow)
_DRAIN_PENDING = query("drain_stream_pending", StreamRow)
_CLOSE = query("close_stream", StreamRow)


async def run_exists(conn: Conn, *, namespace: str, workflow_id: str, run_id: str) -> bool:
    found = await _FIND_RUN.one(conn, namespace=namespace, workflow_id=workflow_id, run_id=run_id)
    return found is not None


async def open_for_append(
    conn: Conn, *, namespace: str, workflow_id: str, run_id: str, stream_name: str
) -> StreamRow | None:
    """The stream, locked (opened when new); None when the run does not match."""
    return await _OPEN_FOR_APPEND.one(
        conn, namespace=namespace, workflow_id=workflow_id, run_id=run_id, stream_name=stream_name
    )


async def lock_stream(
    conn: Conn, *, namespace: str, workflow_id: str, run_id: str, stream_name: str
) -> StreamRow | None:
    return await _LOCK.one(
        conn, namespace=namespace, workflow_id=workflow_id, run_id=run_id, stream_name=stream_name
    )


async def get_stream(
    conn: Conn, *, namespace: str, workflow_id: str, run_id: str, stream_name: str
) -> StreamLookup:
    found = await _GET.one(
        conn, namespace=namespace, workflow_id=workflow_id, run_id=run_id, stream_name=stream_name
    )
    assert found is not None  # the query always answers one row
    return found


async def list_streams(conn: Conn, *, run_id: str) -> list[StreamRow]:
    return await _LIST.all(conn, run_id=run_id)


async def idempotent_offsets(
    conn: Conn, *, run_id: str, stream_name: str, keys: Sequence[str]
) -> dict[str, int]:
    rows = await _FIND_IDEMPOTENT.all(conn, run_id=run_id, stream_name=stream_name, keys=keys)
    return {row.idempotency_key: row.item_offset for row in rows}


async def insert_items(
    conn: Conn, *, run_id: str, stream_name: str, items: Sequence[NewItem]
) -> None:
    await _INSERT_ITEMS.execute(
        conn,
        run_id=run_id,
        stream_name=stream_name,
        offsets=[i.offset for i in items],
        idempotency_keys=[i.idempotency_key for i in items],
        origins=[i.origin for i in items],
        origin_references=[i.origin_reference for i in items],
        item_types=[i.item_type for i in items],
        content_types=[i.content_type for i in items],
        payload_blobs=[i.payload_blob for i in items],
        payload_references=[i.payload_reference for i in items],
        payload_codecs=[i.payload_codec for i in items],
    )


async def record_appends(
    conn: Conn, *, run_id: str, stream_name: str, last_offset: int, added: int
) -> StreamRow:
    row = await _RECORD_APPENDS.one(
        conn, run_id=run_id, stream_name=stream_name, last_offset=last_offset, added=added
    )
    assert row is not None  # the caller holds the stream locked
    return row


async def read_items(
    conn: Conn, *, run_id: str, stream_name: str, from_offset: int, limit: int
) -> list[ItemRow]:
    return await _READ_ITEMS.all(
        conn, run_id=run_id, stream_name=stream_name, from_offset=from_offset, limit=limit
    )


async def drain_pending(
    conn: Conn, *, run_id: str, stream_name: str, head_offset: int
) -> StreamRow | None:
    return await _DRAIN_PENDING.one(
        conn, run_id=run_id, stream_name=stream_name, head_offset=head_offset
    )


async def close_stream(
    conn: Conn,
    *,
    run_id: str,
    stream_name: str,
    error_reason: str | None,
    retention_seconds: int | None,
    default_retention: int,
) -> StreamRow:
    row = await _CLOSE.one(
        conn,
        run_id=run_id,
        stream_name=stream_name,
        error_reason=error_reason,
        retention_seconds=retention_seconds,
        default_retention=default_retention,
    )
    assert row is not None  # the caller holds the stream locked
    return row
