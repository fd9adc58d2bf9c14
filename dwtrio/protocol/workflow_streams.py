"""Durable workflow streams (docs/workflow-streams.md): requests, limits and answers.

Pure: no I/O and no payload codec.
"""

from __future__ import annotations

import re
from typing import Any, Final

import attrs

from dwtrio.protocol.responses import ResponseBody
from dwtrio.protocol.validators import FieldValueError, between, max_length
from dwtrio.protocol.workflows import no_nul

#: 1 to 191 characters; a letter or digit first, then letters, digits, '.', '_', ':', '-'.
STREAM_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,190}")
#: Items one append may carry.
MAX_ITEMS_PER_APPEND: Final = 500
#: Appended items no reader has caught up with, unless the append names its own cap.
DEFAULT_MAX_PENDING_ITEMS: Final = 10_000
#: ``GET .../items``: ``max_items`` default and bounds, ``wait_seconds`` bounds.
DEFAULT_MAX_ITEMS: Final = 100
MAX_ITEMS_PER_READ: Final = 500
MAX_WAIT_SECONDS: Final = 60
#: The retention a closed stream records when its close names none.
DEFAULT_CLOSED_RETENTION_SECONDS: Final = 3600
#: Stored as a Postgres integer.
MAX_RETENTION_SECONDS: Final = 2**31 - 1
#: What an item's ``origin`` says when the append does not.
DEFAULT_ORIGIN: Final = "workflow_command"
STATUSES: Final = ("open", "closed", "errored")


#: The kind of the wake keys that say a run's stream got items or closed (matching's
#: ``QueueKey``): ("", "<run id>/<stream name>", STREAM); a stream name never holds "/".
STREAM: Final = "stream"


def stream_key(run_id: str, stream_name: str) -> tuple[str, str, str]:
    return ("", f"{run_id}/{stream_name}", STREAM)


def valid_stream_name(name: str) -> bool:
    return STREAM_NAME.fullmatch(name) is not None


def _empty_to_none(value: Any) -> Any:
    return None if value == "" else value


def _text(limit: int) -> Any:
    return attrs.field(
        default=None, converter=_empty_to_none, validator=[max_length(limit), no_nul]
    )


@attrs.frozen(kw_only=True)
class StreamItemInput:
    """One item of an append: a payload envelope (or plain JSON, encoded by the server),
    or only a ``payload_reference``; an ``idempotency_key`` makes a repeat a no-op."""

    payload: Any = None
    payload_reference: str | None = _text(191)
    payload_codec: str | None = _text(64)
    idempotency_key: str | None = _text(191)
    origin: str | None = _text(64)
    origin_reference: str | None = _text(191)
    item_type: str | None = _text(64)
    content_type: str | None = _text(191)


def _item_count(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value:
        raise FieldValueError(attribute.name, "The items field must have at least 1 item.")
    if len(value) > MAX_ITEMS_PER_APPEND:
        raise FieldValueError(
            attribute.name,
            f"The items field must not have more than {MAX_ITEMS_PER_APPEND} items.",
        )


_describe_count: Any = _item_count
_describe_count.json_schema = {"minItems": 1, "maxItems": MAX_ITEMS_PER_APPEND}


@attrs.frozen(kw_only=True)
class AppendStreamItems:
    """``POST .../streams/{name}/items``: 1 to 500 items, appended in order."""

    items: list[StreamItemInput] = attrs.field(validator=_item_count)
    max_pending_items: int | None = attrs.field(default=None, validator=between(1, 2**62))


@attrs.frozen(kw_only=True)
class CloseStream:
    """``POST .../streams/{name}/close``: an ``error_reason`` marks the stream errored."""

    error_reason: str | None = _text(191)
    retention_seconds: int | None = attrs.field(
        default=None, validator=between(1, MAX_RETENTION_SECONDS)
    )


@attrs.frozen(kw_only=True)
class StreamItemsQuery:
    """``GET .../streams/{name}/items`` query parameters (``from`` on the wire)."""

    #: The first offset wanted (a reader resumes with the last ``next_offset``).
    from_offset: int = 0
    max_items: int = DEFAULT_MAX_ITEMS
    #: Long-poll: wait up to this long for an item when none is there yet.
    wait_seconds: int = 0


#: Query parameter -> (lowest, highest) accepted.
ITEMS_QUERY_BOUNDS: Final = {
    "from": (0, 2**62),
    "max_items": (1, MAX_ITEMS_PER_READ),
    "wait_seconds": (0, MAX_WAIT_SECONDS),
}


# --- answers ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StreamView(ResponseBody):
    """One stream: lifecycle, offsets and backlog (``last_offset`` -1: no item yet)."""

    stream_name: str
    status: str
    last_offset: int
    total_items: int
    pending_items: int
    opened_at: str | None
    last_appended_at: str | None
    closed_at: str | None
    error_reason: str | None
    retention_seconds: int | None


@attrs.frozen(kw_only=True)
class StreamItemView(ResponseBody):
    offset: int
    idempotency_key: str | None
    origin: str
    origin_reference: str | None
    item_type: str | None
    content_type: str | None
    #: The payload envelope ``{"codec": "avro", "blob": ...}``, or null.
    payload: dict[str, str] | None
    payload_reference: str | None
    payload_codec: str | None
    emitted_at: str | None


@attrs.frozen(kw_only=True)
class StreamList(ResponseBody):
    """``GET .../streams``: every stream of the run, by name."""

    workflow_id: str
    workflow_run_id: str
    count: int
    streams: list[StreamView]


@attrs.frozen(kw_only=True)
class StreamDescription(ResponseBody):
    """``GET .../streams/{name}`` and ``POST .../close``."""

    workflow_id: str
    workflow_run_id: str
    stream: StreamView


@attrs.frozen(kw_only=True)
class StreamPage(ResponseBody):
    """``GET .../items``: items from ``from`` on; resume at ``next_offset``. ``terminal``:
    the stream is closed or errored and this page reached its last item."""

    workflow_id: str
    workflow_run_id: str
    stream: StreamView
    items: list[StreamItemView]
    next_offset: int
    terminal: bool


@attrs.frozen(kw_only=True)
class StreamAppended(ResponseBody):
    """``POST .../items``: each item's offset in request order (a deduplicated item's is
    the one it got first); ``accepted`` new items, ``deduped`` repeats."""

    workflow_id: str
    workflow_run_id: str
    stream: StreamView
    accepted_offsets: list[int]
    accepted: int
    deduped: int
