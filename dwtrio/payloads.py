"""The Avro ``Value`` payload codec (payloads.md): blobs, envelopes, start input.

Every durable payload is a base64 string holding an Avro *single-object
encoding* of the fixed record ``durable_workflow.protocol.Value``::

    base64( C3 01 || CRC-64-AVRO fingerprint (8 bytes) || Avro binary datum )

The server stores blobs exactly as received and only encodes in two places
(plain-JSON control-plane input, merged memos); it decodes for JSON views and
to validate blobs at the HTTP edge, so a malformed payload is refused with
``422 validation_failed`` instead of poisoning history.

Every failure raises :class:`~dwtrio.errors.InvalidPayloadError` (a
``ValidationFailedError``) naming the offending field path, never a bare
``ValueError``; external-storage references raise its subclass
:class:`~dwtrio.errors.ExternalPayloadUnsupportedError`.

Safety: fastavro's compiled reader recurses once per nesting level on the C
stack and crashes the process a few thousand levels down, so blobs long enough
to nest deeper than :data:`MAX_DEPTH` are pre-scanned (iteratively) first.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import Mapping
from typing import Any, Final

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from dwtrio import wire
from dwtrio.errors import ExternalPayloadUnsupportedError, InvalidPayloadError
from dwtrio.protocol.workflows import contains_nul

__all__ = [
    "CODEC",
    "EMPTY_LIST_BLOB",
    "MAX_DEPTH",
    "SCHEMA_FINGERPRINT",
    "decode",
    "decode_for_view",
    "encode",
    "envelope",
    "start_input",
    "to_json_view",
    "validate_blob",
    "validate_envelope",
]

CODEC: Final = "avro"

VALUE_SCHEMA: Final[dict[str, Any]] = {
    "type": "record",
    "name": "Value",
    "namespace": "durable_workflow.protocol",
    "fields": [
        {
            "name": "value",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "BooleanValue",
                    "fields": [{"name": "boolean", "type": "boolean"}],
                },
                {
                    "type": "record",
                    "name": "LongValue",
                    "fields": [{"name": "long", "type": "long"}],
                },
                {
                    "type": "record",
                    "name": "DoubleValue",
                    "fields": [{"name": "double", "type": "double"}],
                },
                {
                    "type": "record",
                    "name": "BytesValue",
                    "fields": [{"name": "bytes", "type": "bytes"}],
                },
                {
                    "type": "record",
                    "name": "StringValue",
                    "fields": [{"name": "string", "type": "string"}],
                },
                {
                    "type": "record",
                    "name": "ArrayValue",
                    "fields": [{"name": "items", "type": {"type": "array", "items": "Value"}}],
                },
                {
                    "type": "record",
                    "name": "MapValue",
                    "fields": [{"name": "entries", "type": {"type": "map", "values": "Value"}}],
                },
            ],
        }
    ],
}

_PARSED = parse_schema(VALUE_SCHEMA)
#: CRC-64-AVRO of the schema's Parsing Canonical Form, as the 8 framing bytes.
SCHEMA_FINGERPRINT: Final = bytes.fromhex(
    fingerprint(to_parsing_canonical_form(VALUE_SCHEMA), "CRC-64-AVRO")
)
MAGIC: Final = b"\xc3\x01"
HEADER: Final = MAGIC + SCHEMA_FINGERPRINT
#: ``encode([])``: what a start without arguments stores.
EMPTY_LIST_BLOB: Final = "wwHioz3/VYAiNwwA"
#: Most nested arrays/maps accepted (the SDK's own recursive codec stops near 1000).
MAX_DEPTH: Final = 512

_NS = "durable_workflow.protocol."
_BOOL, _LONG, _DOUBLE = _NS + "BooleanValue", _NS + "LongValue", _NS + "DoubleValue"
_BYTES, _STRING = _NS + "BytesValue", _NS + "StringValue"
_ARRAY, _MAP = _NS + "ArrayValue", _NS + "MapValue"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SCALAR_FIELDS: Final = {_BOOL: "boolean", _LONG: "long", _BYTES: "bytes", _STRING: "string"}


# --- encode ------------------------------------------------------------------------


def encode(value: Any, *, field: str = "payload") -> str:
    """Encode a JSON-able value (plus ``bytes``) as a base64 single-object blob.

    Maps keep insertion order; ``bool`` is checked before ``int``; ints must fit
    in int64 and floats must be finite.

    Raises:
        InvalidPayloadError: the value (at ``field``) has no Avro Value form.
    """
    datum = _to_datum(value, field)
    buffer = io.BytesIO()
    buffer.write(HEADER)
    schemaless_writer(buffer, _PARSED, datum)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _too_deep(field: str) -> InvalidPayloadError:
    return InvalidPayloadError(
        field,
        f"The {field} value is nested deeper than {MAX_DEPTH} levels.",
        problem="payload_too_deep",
    )


def _to_datum(value: Any, field: str) -> dict[str, Any]:
    """The fastavro datum of ``value`` (iterative: nesting costs no Python stack)."""
    root: list[Any] = [None]
    # (where to put the datum, slot, value, number of enclosing containers)
    stack: list[tuple[Any, Any, Any, int]] = [(root, 0, value, 0)]
    while stack:
        holder, slot, item, depth = stack.pop()
        branch: tuple[str, dict[str, Any]] | None
        if item is None:
            branch = None
        elif isinstance(item, bool):
            branch = (_BOOL, {"boolean": item})
        elif isinstance(item, int):
            if not _INT64_MIN <= item <= _INT64_MAX:
                raise InvalidPayloadError(
                    field,
                    f"The {field} value contains an integer outside the signed 64-bit range.",
                    problem="integer_overflow",
                )
            branch = (_LONG, {"long": item})
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidPayloadError(
                    field,
                    f"The {field} value contains a non-finite number.",
                    problem="non_finite_float",
                )
            branch = (_DOUBLE, {"double": item})
        elif isinstance(item, bytes):
            branch = (_BYTES, {"bytes": item})
        elif isinstance(item, str):
            branch = (_STRING, {"string": item})
        elif isinstance(item, list | tuple):
            if depth >= MAX_DEPTH:
                raise _too_deep(field)
            items: list[Any] = [None] * len(item)
            branch = (_ARRAY, {"items": items})
            stack.extend((items, i, v, depth + 1) for i, v in enumerate(item))
        elif isinstance(item, Mapping):
            if depth >= MAX_DEPTH:
                raise _too_deep(field)
            entries: dict[str, Any] = {}
            for key, v in item.items():
                if not isinstance(key, str):
                    raise InvalidPayloadError(
                        field,
                        f"The {field} value has a map key that is not a string.",
                        problem="invalid_map_key",
                    )
                entries[key] = None  # keeps insertion order
                stack.append((entries, key, v, depth + 1))
            branch = (_MAP, {"entries": entries})
        else:
            raise InvalidPayloadError(
                field,
                f"The {field} value contains a {type(item).__name__}, which has no Avro Value form.",
                problem="unsupported_value_type",
            )
        holder[slot] = {"value": branch}
    datum: dict[str, Any] = root[0]
    return datum


# --- decode ------------------------------------------------------------------------


def decode(blob: Any, *, field: str = "payload") -> Any:
    """Decode a base64 single-object blob to its Python value.

    The base64 must be strict (standard alphabet, padded, no whitespace), the
    header must be ``C3 01`` plus the Value schema fingerprint, and the datum
    must be complete with no trailing bytes.

    Raises:
        InvalidPayloadError: ``blob`` (at ``field``) is not a valid Value payload.
    """
    if not isinstance(blob, str):
        raise InvalidPayloadError(field, f"The {field} must be a base64 string.")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        looks_like_json = blob.lstrip()[:1] in {"{", "[", '"', "-", "t", "f", "n"} or (
            blob.lstrip()[:1].isdigit()
        )
        detail = (
            "looks like JSON, not base64-encoded Avro"
            if looks_like_json
            else "is not strict base64"
        )
        raise InvalidPayloadError(field, f"The {field} {detail}.") from None
    if len(raw) < len(HEADER) + 1:
        raise InvalidPayloadError(field, f"The {field} is too short to be an Avro Value payload.")
    if raw[:2] != MAGIC:
        raise InvalidPayloadError(
            field, f"The {field} does not start with the Avro single-object marker c301."
        )
    if raw[2:10] != SCHEMA_FINGERPRINT:
        raise InvalidPayloadError(
            field,
            f"The {field} was written with an unknown schema (fingerprint {raw[2:10].hex()}).",
            problem="unsupported_payload_schema",
        )
    datum = raw[10:]
    if len(datum) > 3 * MAX_DEPTH:  # each nesting level costs at least 3 bytes
        _scan(datum, field)
    buffer = io.BytesIO(datum)
    try:
        record = schemaless_reader(buffer, _PARSED, None, return_record_name=True)
    except EOFError:
        raise InvalidPayloadError(field, f"The {field} Avro datum is truncated.") from None
    except Exception:
        raise InvalidPayloadError(field, f"The {field} Avro datum is malformed.") from None
    if buffer.read(1):
        raise InvalidPayloadError(field, f"The {field} has trailing bytes after the Avro datum.")
    return _from_datum(record, field)


def _from_datum(record: Any, field: str) -> Any:
    """The Python value of a decoded datum (iterative, like :func:`_to_datum`)."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, record)]
    while stack:
        holder, slot, rec = stack.pop()
        if not isinstance(rec, dict) or "value" not in rec:
            raise InvalidPayloadError(field, f"The {field} Avro datum is not a Value record.")
        branch = rec["value"]
        if branch is None:
            holder[slot] = None
            continue
        name, inner = branch
        if name == _ARRAY:
            items: list[Any] = [None] * len(inner["items"])
            stack.extend((items, i, v) for i, v in enumerate(inner["items"]))
            holder[slot] = items
        elif name == _MAP:
            entries: dict[str, Any] = dict.fromkeys(inner["entries"])
            stack.extend((entries, k, v) for k, v in inner["entries"].items())
            holder[slot] = entries
        elif name == _DOUBLE:
            if not math.isfinite(inner["double"]):
                raise InvalidPayloadError(
                    field, f"The {field} contains a non-finite number.", problem="non_finite_float"
                )
            holder[slot] = inner["double"]
        elif name in _SCALAR_FIELDS:
            holder[slot] = inner[_SCALAR_FIELDS[name]]
        else:
            raise InvalidPayloadError(field, f"The {field} Avro datum has an unknown Value branch.")
    return root[0]


def _scan(datum: bytes, field: str) -> None:
    """Walk a datum iteratively: structure, bounds and nesting depth, no values built."""
    end = len(datum)
    pos = 0

    def fail(detail: str) -> InvalidPayloadError:
        return InvalidPayloadError(field, f"The {field} Avro datum is {detail}.")

    def read_long() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= end:
                raise fail("truncated")
            byte = datum[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (result >> 1) ^ -(result & 1)
            shift += 7
            if shift > 63:
                raise fail("malformed (varint too long)")

    def skip(count: int) -> None:
        nonlocal pos
        if count < 0 or pos + count > end:
            raise fail("truncated" if count >= 0 else "malformed (negative length)")
        pos += count

    # Each open container is [is_map, items left in the current block].
    stack: list[list[Any]] = []
    want_value = True
    while True:
        if want_value:
            index = read_long()
            if index == 0:
                pass
            elif index == 1:
                skip(1)
            elif index == 2:
                read_long()
            elif index == 3:
                skip(8)
            elif index in (4, 5):
                skip(read_long())
            elif index in (6, 7):
                if len(stack) >= MAX_DEPTH:
                    raise _too_deep(field)
                stack.append([index == 7, 0])
            else:
                raise fail("malformed (unknown Value branch)")
            want_value = False
        if not stack:
            break
        top = stack[-1]
        if top[1] == 0:
            count = read_long()
            if count == 0:
                stack.pop()
                continue
            if count < 0:
                count = -count
                read_long()  # block size in bytes
            top[1] = count
        top[1] -= 1
        if top[0]:
            skip(read_long())  # map key
        want_value = True
    if pos != end:
        raise fail("followed by trailing bytes")


def validate_blob(blob: Any, *, field: str = "payload") -> str:
    """Check that ``blob`` decodes; return it unchanged (stored as received)."""
    decode(blob, field=field)
    return str(blob)


# --- envelopes ---------------------------------------------------------------------


def envelope(blob: str | None) -> dict[str, str] | None:
    """The inline envelope ``{"codec": "avro", "blob": ...}`` for a stored blob (or None)."""
    return None if blob is None else {"codec": CODEC, "blob": blob}


def validate_envelope(value: Any, *, field: str = "payload") -> str:
    """Validate an inline envelope ``{"codec": "avro", "blob": "..."}``; return its blob.

    Raises:
        ExternalPayloadUnsupportedError: the envelope is an external-storage
            (or runtime external payload) reference; dwtrio stores none.
        InvalidPayloadError: not an object, codec other than ``avro``, or a bad blob.
    """
    if not isinstance(value, Mapping):
        raise InvalidPayloadError(field, f"The {field} must be a payload envelope object.")
    if "external_storage" in value or "external_payload" in value:
        raise ExternalPayloadUnsupportedError(
            field,
            f"The {field} is an external payload reference; this server does not support "
            "external payload storage. Send the payload inline.",
        )
    codec = value.get("codec")
    if codec != CODEC:
        shown = "missing" if codec is None else json.dumps(codec)
        raise InvalidPayloadError(
            f"{field}.codec",
            f'The {field}.codec must be "avro" (got {shown}); JSON is the HTTP document '
            "format, not a payload codec.",
            problem="unsupported_payload_codec",
        )
    if "blob" not in value or value["blob"] is None:
        raise InvalidPayloadError(f"{field}.blob", f"The {field}.blob field is required.")
    return validate_blob(value["blob"], field=f"{field}.blob")


def start_input(value: Any, *, field: str = "input") -> str:
    """The blob to store for a control-plane ``input`` (start, signal, update, query).

    * envelope ``{"codec": "avro", "blob": ...}`` -> the blob as received (validated);
    * plain JSON array (curl, CLI) -> encoded server-side as an Avro array;
    * absent, ``null`` or ``[]`` -> :data:`EMPTY_LIST_BLOB`;
    * anything else (scalars, non-envelope objects) -> 422.
    """
    if value is None or (isinstance(value, list) and not value):
        return EMPTY_LIST_BLOB
    if isinstance(value, list):
        return encode(value, field=field)
    if isinstance(value, Mapping) and (
        "codec" in value
        or "blob" in value
        or "external_storage" in value
        or "external_payload" in value
    ):
        return validate_envelope(value, field=field)
    raise InvalidPayloadError(
        field,
        f"The {field} must be a JSON array of arguments or a payload envelope "
        '{"codec": "avro", "blob": "<base64>"}.',
    )


# --- JSON views ----------------------------------------------------------------------


def to_json_view(value: Any) -> Any:
    """A decoded value made JSON-safe: ``bytes`` become ``{"$bytes": "<base64>"}``."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [to_json_view(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json_view(v) for k, v in value.items()}
    return value


def decode_for_view(blob: str | None) -> Any:
    """The JSON view of a stored blob, or None when absent or undecodable (views never fail).

    Nor is a value nested deeper than ``wire.MAX_JSON_DEPTH`` (blobs may nest up
    to :data:`MAX_DEPTH`): views keep to the limit of request bodies, well inside
    the ~254 levels ``orjson.dumps`` can write (past those, a 500).
    """
    if blob is None:
        return None
    try:
        value = decode(blob)
    except InvalidPayloadError:
        return None
    return None if wire.too_deep(value) else to_json_view(value)


def value_blob(value: Any, *, field: str = "result") -> str:
    """The blob to store for a single-value payload (activity or workflow result).

    * an envelope ``{"codec": "avro", "blob": ...}`` (what SDKs send) -> its blob, validated;
    * anything else is plain JSON from curl-style clients -> encoded server-side,
      with ``null`` becoming the Avro null the SDK decodes to ``None``.
    """
    if isinstance(value, Mapping) and (
        "codec" in value
        or "blob" in value
        or "external_storage" in value
        or "external_payload" in value
    ):
        return validate_envelope(value, field=field)
    return encode(value, field=field)


def arguments_blob(value: Any, *, field: str = "arguments") -> str:
    """The blob of a positional-arguments payload (activity arguments): like :func:`start_input`."""
    return start_input(value, field=field)


def plain_value(blob: str | None) -> Any:
    """The decoded value of a result blob when plain JSON shows it exactly, else None.

    Clients decode ``result_envelope`` themselves when ``result`` is null, so a
    lossy view (bytes, an undecodable blob) must never stand in for the value.
    Nor does a value that JSON responses and jsonb columns cannot hold: nested
    deeper than ``wire.MAX_JSON_DEPTH``, or with a NUL character in a string.
    """
    if blob is None:
        return None
    try:
        value = decode(blob)
    except InvalidPayloadError:
        return None
    if wire.too_deep(value) or contains_nul(value):
        return None
    return value if to_json_view(value) == value else None
