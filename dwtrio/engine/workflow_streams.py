"""Durable workflow streams: the rules of appending, reading and closing (docs/workflow-streams.md).

A stream is a run's ordered output, named within the run. The first append
opens it; every item gets the next offset (0, 1, 2, ...) under the stream's
row lock, so concurrent appends never share or skip an offset, and an append
is committed before it is answered. An item with an ``idempotency_key`` the
stream already holds is not written again: the append reports the offset it
got the first time and counts it as ``deduped``.

*Pending* items are those appended since a reader last reached the head; an
append that would take them past its cap (``max_pending_items``, default
10,000) is refused whole with ``stream_full``. A read whose page ends at the
head drains the count to zero. Closing (or failing, with an ``error_reason``)
ends the stream: appends are refused with ``stream_closed`` /
``stream_errored``, and a read that reaches the last item says ``terminal``.

Each write asks for a wake of the stream's key (``matching.waiters.stream_key``)
after commit: parked readers, here and on other nodes, read again at once.
"""

from __future__ import annotations

import attrs

from dwtrio import payloads, wire
from dwtrio.engine.outcome import Outcome
from dwtrio.errors import (
    InstanceNotFoundError,
    InvalidStreamNameError,
    StreamClosedError,
    StreamErroredError,
    StreamFullError,
    StreamNotFoundError,
    ValidationFailedError,
)
from dwtrio.protocol.workflow_streams import (
    DEFAULT_CLOSED_RETENTION_SECONDS,
    DEFAULT_MAX_PENDING_ITEMS,
    DEFAULT_ORIGIN,
    AppendStreamItems,
    CloseStream,
    StreamAppended,
    StreamDescription,
    StreamItemInput,
    StreamItemView,
    StreamList,
    StreamPage,
    StreamView,
    stream_key,
    valid_stream_name,
)
from dwtrio.store import workflow_streams as store
from dwtrio.store.pool import Conn


@attrs.frozen
class StreamRef:
    """A stream of a run, as the path names it."""

    namespace: str
    workflow_id: str
    run_id: str
    stream_name: str


@attrs.frozen
class ReadResult:
    """A page read; ``items`` empty and not ``terminal``: a long-poll may wait."""

    page: StreamPage

    @property
    def ready(self) -> bool:
        return bool(self.page.items) or self.page.terminal


def stream_view(row: store.StreamRow) -> StreamView:
    return StreamView(
        stream_name=row.stream_name,
        status=row.status,
        last_offset=row.last_offset,
        total_items=row.total_items,
        pending_items=row.pending_items,
        opened_at=wire.iso_z(row.opened_at),
        last_appended_at=wire.iso_z(row.last_appended_at),
        closed_at=wire.iso_z(row.closed_at),
        error_reason=row.error_reason,
        retention_seconds=row.retention_seconds,
    )


def item_view(row: store.ItemRow) -> StreamItemView:
    return StreamItemView(
        offset=row.item_offset,
        idempotency_key=row.idempotency_key,
        origin=row.origin,
        origin_reference=row.origin_reference,
        item_type=row.item_type,
        content_type=row.content_type,
        payload=payloads.envelope(row.payload_blob),
        payload_reference=row.payload_reference,
        payload_codec=row.payload_codec,
        emitted_at=wire.iso_z(row.emitted_at),
    )


def run_not_found(ref: StreamRef) -> InstanceNotFoundError:
    return InstanceNotFoundError(
        f"Run {ref.run_id!r} of workflow {ref.workflow_id!r} was not found.",
        workflow_id=ref.workflow_id,
        run_id=ref.run_id,
    )


def stream_not_found(ref: StreamRef) -> StreamNotFoundError:
    return StreamNotFoundError(
        f"Run {ref.run_id!r} has no stream named {ref.stream_name!r}.",
        stream_name=ref.stream_name,
    )


async def _refuse_name(conn: Conn, ref: StreamRef) -> None:
    """An invalid name: 404 when the run is unknown anyway, else 400."""
    if not valid_stream_name(ref.stream_name):
        if not await store.run_exists(
            conn, namespace=ref.namespace, workflow_id=ref.workflow_id, run_id=ref.run_id
        ):
            raise run_not_found(ref)
        raise InvalidStreamNameError()


# --- items in ------------------------------------------------------------------------


@attrs.frozen
class ParsedItem:
    """An append item checked, its payload reduced to the blob to store."""

    idempotency_key: str | None
    origin: str
    origin_reference: str | None
    item_type: str | None
    content_type: str | None
    payload_blob: str | None
    payload_reference: str | None
    payload_codec: str | None


def parse_items(items: list[StreamItemInput]) -> list[ParsedItem]:
    """Payloads validated like every other payload (an Avro envelope stored as received,
    plain JSON encoded, external references refused); a codec, when named, must be
    ``avro``. The first bad item is the 422, keyed by its path."""
    parsed: list[ParsedItem] = []
    for i, item in enumerate(items):
        blob = (
            None
            if item.payload is None
            else payloads.value_blob(item.payload, field=f"items.{i}.payload")
        )
        codec = item.payload_codec.strip().lower() if item.payload_codec else None
        if codec is not None and codec != payloads.CODEC:
            raise ValidationFailedError(
                {f"items.{i}.payload_codec": [f'The items.{i}.payload_codec must be "avro".']}
            )
        parsed.append(
            ParsedItem(
                idempotency_key=item.idempotency_key,
                origin=item.origin or DEFAULT_ORIGIN,
                origin_reference=item.origin_reference,
                item_type=item.item_type,
                content_type=item.content_type,
                payload_blob=blob,
                payload_reference=item.payload_reference,
                payload_codec=payloads.CODEC if blob is not None else codec,
            )
        )
    return parsed


@attrs.frozen
class AppendCommand:
    ref: StreamRef
    items: list[ParsedItem]
    max_pending_items: int


def append_command(ref: StreamRef, req: AppendStreamItems) -> AppendCommand:
    return AppendCommand(
        ref=ref,
        items=parse_items(req.items),
        max_pending_items=req.max_pending_items or DEFAULT_MAX_PENDING_ITEMS,
    )


async def append_items(conn: Conn, cmd: AppendCommand) -> Outcome:
    """Append the items in order, each at the next offset (or deduplicated), or none."""
    ref = cmd.ref
    await _refuse_name(conn, ref)
    stream = await store.open_for_append(
        conn,
        namespace=ref.namespace,
        workflow_id=ref.workflow_id,
        run_id=ref.run_id,
        stream_name=ref.stream_name,
    )
    if stream is None:
        raise run_not_found(ref)
    if stream.status == "closed":
        raise StreamClosedError(stream_name=ref.stream_name)
    if stream.status == "errored":
        raise StreamErroredError(stream_name=ref.stream_name, error_reason=stream.error_reason)
    keys = sorted({i.idempotency_key for i in cmd.items if i.idempotency_key is not None})
    known = (
        await store.idempotent_offsets(
            conn, run_id=ref.run_id, stream_name=ref.stream_name, keys=keys
        )
        if keys
        else {}
    )
    offsets: list[int] = []
    new: list[store.NewItem] = []
    deduped = 0
    last, pending = stream.last_offset, stream.pending_items
    for item in cmd.items:
        key = item.idempotency_key
        if key is not None and key in known:
            offsets.append(known[key])
            deduped += 1
            continue
        if pending >= cmd.max_pending_items:
            raise StreamFullError(
                stream_name=ref.stream_name,
                pending_items=pending,
                max_pending_items=cmd.max_pending_items,
            )
        last += 1
        pending += 1
        if key is not None:
            known[key] = last
        offsets.append(last)
        new.append(store.NewItem(offset=last, **attrs.asdict(item)))
    outcome = Outcome()
    if new:
        await store.insert_items(conn, run_id=ref.run_id, stream_name=ref.stream_name, items=new)
        stream = await store.record_appends(
            conn, run_id=ref.run_id, stream_name=ref.stream_name, last_offset=last, added=len(new)
        )
        outcome.wakes.add(stream_key(ref.run_id, ref.stream_name))
    outcome.body = StreamAppended(
        workflow_id=ref.workflow_id,
        workflow_run_id=ref.run_id,
        stream=stream_view(stream),
        accepted_offsets=offsets,
        accepted=len(new),
        deduped=deduped,
    )
    return outcome


# --- close ---------------------------------------------------------------------------


@attrs.frozen
class CloseCommand:
    ref: StreamRef
    req: CloseStream


async def close_stream(conn: Conn, cmd: CloseCommand) -> Outcome:
    """Close the stream (errored with a reason); closing a closed stream changes nothing."""
    ref = cmd.ref
    await _refuse_name(conn, ref)
    stream = await store.lock_stream(
        conn,
        namespace=ref.namespace,
        workflow_id=ref.workflow_id,
        run_id=ref.run_id,
        stream_name=ref.stream_name,
    )
    outcome = Outcome()
    if stream is None:
        if not await store.run_exists(
            conn, namespace=ref.namespace, workflow_id=ref.workflow_id, run_id=ref.run_id
        ):
            raise run_not_found(ref)
        raise stream_not_found(ref)
    if stream.status == "open":
        stream = await store.close_stream(
            conn,
            run_id=ref.run_id,
            stream_name=ref.stream_name,
            error_reason=cmd.req.error_reason,
            retention_seconds=cmd.req.retention_seconds,
            default_retention=DEFAULT_CLOSED_RETENTION_SECONDS,
        )
        outcome.wakes.add(stream_key(ref.run_id, ref.stream_name))
    outcome.body = StreamDescription(
        workflow_id=ref.workflow_id, workflow_run_id=ref.run_id, stream=stream_view(stream)
    )
    return outcome


# --- reads ---------------------------------------------------------------------------


async def _existing_stream(conn: Conn, ref: StreamRef) -> store.StreamRow:
    await _refuse_name(conn, ref)
    found = await store.get_stream(
        conn,
        namespace=ref.namespace,
        workflow_id=ref.workflow_id,
        run_id=ref.run_id,
        stream_name=ref.stream_name,
    )
    if not found.run_found:
        raise run_not_found(ref)
    stream = found.stream()
    if stream is None:
        raise stream_not_found(ref)
    return stream


async def describe_stream(conn: Conn, ref: StreamRef) -> StreamDescription:
    stream = await _existing_stream(conn, ref)
    return StreamDescription(
        workflow_id=ref.workflow_id, workflow_run_id=ref.run_id, stream=stream_view(stream)
    )


async def list_streams(conn: Conn, ref: StreamRef) -> StreamList:
    """Every stream of the run (``ref.stream_name`` is not used)."""
    if not await store.run_exists(
        conn, namespace=ref.namespace, workflow_id=ref.workflow_id, run_id=ref.run_id
    ):
        raise run_not_found(ref)
    rows = await store.list_streams(conn, run_id=ref.run_id)
    return StreamList(
        workflow_id=ref.workflow_id,
        workflow_run_id=ref.run_id,
        count=len(rows),
        streams=[stream_view(r) for r in rows],
    )


async def read_items(conn: Conn, ref: StreamRef, from_offset: int, limit: int) -> ReadResult:
    """Up to ``limit`` items from ``from_offset``; a page that reaches the head drains
    the stream's pending count (in the same transaction)."""
    stream = await _existing_stream(conn, ref)
    rows = await store.read_items(
        conn, run_id=ref.run_id, stream_name=ref.stream_name, from_offset=from_offset, limit=limit
    )
    next_offset = rows[-1].item_offset + 1 if rows else from_offset
    if rows and rows[-1].item_offset == stream.last_offset and stream.pending_items > 0:
        drained = await store.drain_pending(
            conn, run_id=ref.run_id, stream_name=ref.stream_name, head_offset=stream.last_offset
        )
        stream = drained or stream
    terminal = stream.status != "open" and next_offset > stream.last_offset
    return ReadResult(
        StreamPage(
            workflow_id=ref.workflow_id,
            workflow_run_id=ref.run_id,
            stream=stream_view(stream),
            items=[item_view(r) for r in rows],
            next_offset=next_offset,
            terminal=terminal,
        )
    )
