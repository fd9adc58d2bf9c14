"""Markers and metadata: side effects, version markers, search attribute and memo upserts.

Each takes a step sequence and records one event the SDK replays as a resolved
step (history-events.md §4.7); none creates work. The values are copied as
sent because the replayer returns them to the workflow (side effect) or
compares them with the code (version marker ``change_id``).
"""

from __future__ import annotations

import base64
import re
from typing import Any, Final

from dwtrio import payloads, wire
from dwtrio.engine.commands.context import Completion
from dwtrio.engine.search_attributes import check_values
from dwtrio.errors import ValidationFailedError
from dwtrio.protocol.commands import (
    RecordSideEffect,
    RecordVersionMarker,
    UpsertMemo,
    UpsertSearchAttributes,
)
from dwtrio.protocol.workflows import contains_nul, memo_errors, search_attribute_errors
from dwtrio.store import runs
from dwtrio.store.history import NewEvent

#: The SDK re-validates every ``MemoUpserted`` it replays (entries and merged memo)
#: with these rules, so a memo breaking them must be refused, not recorded.
MEMO_KEY: Final = re.compile(r"(?!-?[0-9]+$)[A-Za-z0-9_.:-]{1,64}")
MEMO_MAX_ENTRIES: Final = 100
MEMO_MAX_VALUE_BYTES: Final = 10_240
MEMO_MAX_TOTAL_BYTES: Final = 65_536


async def apply_record_side_effect(ctx: Completion, command: RecordSideEffect, index: int) -> None:
    field = f"commands.{index}.result"
    if isinstance(command.result, str):
        payloads.validate_blob(command.result, field=field)
    else:
        payloads.validate_envelope(command.result, field=field)
    ctx.add(
        NewEvent(
            event_type="SideEffectRecorded",
            payload={
                "sequence": ctx.next_step(),
                "result": command.result,
                "payload_codec": payloads.CODEC,
            },
        )
    )


async def apply_record_version_marker(
    ctx: Completion, command: RecordVersionMarker, index: int
) -> None:
    ctx.add(
        NewEvent(
            event_type="VersionMarkerRecorded",
            payload={
                "sequence": ctx.next_step(),
                "change_id": command.change_id,
                "version": command.version,
                "min_supported": command.min_supported,
                "max_supported": command.max_supported,
            },
        )
    )


async def apply_upsert_search_attributes(
    ctx: Completion, command: UpsertSearchAttributes, index: int
) -> None:
    """Merge into the run's search attributes (``None`` deletes), validated like a start:
    key and size rules on the merged map, registered types on the values sent."""
    field = f"commands.{index}.attributes"
    if contains_nul(command.attributes):
        raise ValidationFailedError({field: ["The attributes may not contain NUL characters."]})
    current = await runs.get_search_attributes(ctx.conn, ctx.run.id)
    merged = {k: v for k, v in {**current, **command.attributes}.items() if v is not None}
    if problems := search_attribute_errors(merged, ctx.limits.max_search_attributes):
        raise ValidationFailedError({field: problems})
    await check_values(
        ctx.conn, ctx.run.namespace, command.attributes, field, ctx.search_attribute_types
    )
    await runs.set_search_attributes(ctx.conn, ctx.run.id, merged)
    ctx.add(
        NewEvent(
            event_type="SearchAttributesUpserted",
            payload={
                "sequence": ctx.next_step(),
                "attributes": command.attributes,
                "merged": merged,
            },
        )
    )


def _avro_size(value: Any) -> int:
    return len(base64.b64decode(payloads.encode(value)))


def _sorted_maps(value: Any) -> Any:
    """Maps with their keys sorted, at every level (the SDK's canonical memo form)."""
    if isinstance(value, dict):
        return {k: _sorted_maps(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_maps(v) for v in value]
    return value


def memo_map_errors(memo: dict[str, Any]) -> list[str]:
    """The SDK's memo rules: entry count, key shape, per-value and total Avro sizes."""
    errors: list[str] = []
    if len(memo) > MEMO_MAX_ENTRIES:
        errors.append(f"The memo may not have more than {MEMO_MAX_ENTRIES} entries.")
    for key, value in memo.items():
        if not MEMO_KEY.fullmatch(key):
            errors.append(
                f"Memo key {key[:70]!r} must be 1-64 letters, digits, '_', '.', ':' or '-' "
                "and not a number."
            )
        elif _avro_size(value) > MEMO_MAX_VALUE_BYTES:
            errors.append(f"Memo value {key!r} is larger than {MEMO_MAX_VALUE_BYTES} bytes.")
    if not errors and _avro_size(memo) > MEMO_MAX_TOTAL_BYTES:
        errors.append(f"The memo is larger than {MEMO_MAX_TOTAL_BYTES} bytes.")
    return errors


async def apply_upsert_memo(ctx: Completion, command: UpsertMemo, index: int) -> None:
    """Merge an Avro map into the run memo (``None`` deletes); history keeps both as envelopes."""
    field = f"commands.{index}.entries"
    blob = payloads.validate_envelope(command.entries, field=field)
    entries = payloads.decode(blob, field=field)
    if not isinstance(entries, dict) or not entries:
        raise ValidationFailedError({field: ["The entries must be a non-empty map."]})
    if contains_nul(entries):
        raise ValidationFailedError({field: ["The entries may not contain NUL characters."]})
    if wire.too_deep(entries):
        raise ValidationFailedError(
            {field: [f"The entries may not nest deeper than {wire.MAX_JSON_DEPTH} levels."]}
        )
    if problems := memo_map_errors(entries):
        raise ValidationFailedError({field: problems})
    current = await runs.get_memo(ctx.conn, ctx.run.id)
    merged = _sorted_maps({k: v for k, v in {**current, **entries}.items() if v is not None})
    stored = payloads.to_json_view(merged)
    problems = memo_map_errors(merged) + memo_errors(
        stored, len(wire.dumps(stored)), ctx.limits.max_memo_bytes
    )
    if problems:
        raise ValidationFailedError({field: problems})
    await runs.set_memo(ctx.conn, ctx.run.id, stored)
    ctx.add(
        NewEvent(
            event_type="MemoUpserted",
            payload={
                "sequence": ctx.next_step(),
                "entries": {"codec": payloads.CODEC, "blob": blob},
                "merged": {"codec": payloads.CODEC, "blob": payloads.encode(merged)},
            },
        )
    )
