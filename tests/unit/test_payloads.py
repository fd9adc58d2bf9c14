"""The Avro Value payload codec (dwtrio.payloads) against payloads.md and the SDK.

The SDK's serializer is pure and synchronous (fastavro over BytesIO; it never
touches an event loop), so it is called in-process here; only the SDK client
needs a subprocess.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from durable_workflow import serializer

from dwtrio import payloads
from dwtrio.errors import ExternalPayloadUnsupportedError, InvalidPayloadError

# payloads.md §1.4: (value, blob, datum hex after the 10-byte header)
VECTORS: list[tuple[Any, str, str]] = [
    (None, "wwHioz3/VYAiNwA=", "00"),
    (True, "wwHioz3/VYAiNwIB", "0201"),
    (False, "wwHioz3/VYAiNwIA", "0200"),
    (0, "wwHioz3/VYAiNwQA", "0400"),
    (1, "wwHioz3/VYAiNwQC", "0402"),
    (-1, "wwHioz3/VYAiNwQB", "0401"),
    (42, "wwHioz3/VYAiNwRU", "0454"),
    (1.5, "wwHioz3/VYAiNwYAAAAAAAD4Pw==", "06000000000000f83f"),
    ("", "wwHioz3/VYAiNwoA", "0a00"),
    ("world", "wwHioz3/VYAiNwoKd29ybGQ=", "0a0a776f726c64"),
    ("hello, world", "wwHioz3/VYAiNwoYaGVsbG8sIHdvcmxk", "0a1868656c6c6f2c20776f726c64"),
    (b"\x01\x02", "wwHioz3/VYAiNwgEAQI=", "08040102"),
    ([], "wwHioz3/VYAiNwwA", "0c00"),
    (["world"], "wwHioz3/VYAiNwwCCgp3b3JsZAA=", "0c020a0a776f726c6400"),
    ([1, "a", None], "wwHioz3/VYAiNwwGBAIKAmEAAA==", "0c0604020a02610000"),
    ({}, "wwHioz3/VYAiNw4A", "0e00"),
    ({"a": 1}, "wwHioz3/VYAiNw4CAmEEAgA=", "0e020261040200"),
    (
        {"name": "bob", "tags": ["x"]},
        "wwHioz3/VYAiNw4ECG5hbWUKBmJvYgh0YWdzDAIKAngAAA==",
        "0e04086e616d650a06626f6208746167730c020a02780000",
    ),
]

ROUND_TRIP_VALUES: list[Any] = [
    "plain",
    "héllo wörld ✓ 日本語 🎉",
    0,
    -(2**63),
    2**63 - 1,
    3.25,
    -0.0,
    True,
    False,
    None,
    b"\x00\xff binary",
    [],
    {},
    [1, 2.5, "three", None, True, [4, [5]]],
    {"order": {"id": 42, "lines": [{"sku": "a", "qty": 2}], "note": None}, "ok": True},
    list(range(1000)),
    {f"key-{i}": i for i in range(500)},
]


def test_fingerprint_is_the_crc64_of_the_canonical_schema() -> None:
    assert payloads.SCHEMA_FINGERPRINT.hex() == "e2a33dff55802237"
    assert bytes.fromhex("c301e2a33dff55802237") == payloads.HEADER


@pytest.mark.parametrize(("value", "blob", "datum_hex"), VECTORS)
def test_vectors(value: Any, blob: str, datum_hex: str) -> None:
    assert payloads.encode(value) == blob
    assert base64.b64decode(blob)[10:].hex() == datum_hex
    decoded = payloads.decode(blob)
    assert decoded == value and type(decoded) is type(value)


def test_every_blob_starts_with_the_header_prefix() -> None:
    assert all(blob.startswith("wwHioz3/VYAiNw") for _, blob, _ in VECTORS)
    assert payloads.encode([]) == payloads.EMPTY_LIST_BLOB


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=lambda v: type(v).__name__)
def test_round_trip_with_the_sdk_serializer(value: Any) -> None:
    ours = payloads.encode(value)
    theirs = serializer.encode(value, "avro")
    assert ours == theirs
    assert serializer.decode(ours, "avro") == value
    assert payloads.decode(theirs) == value
    assert serializer.decode_envelope({"codec": "avro", "blob": ours}) == value


def test_reader_accepts_multi_block_and_negative_count_arrays() -> None:
    item = bytes.fromhex("0402")  # long 1
    # two blocks of one item, then the end marker
    multi = payloads.HEADER + b"\x0c" + b"\x02" + item + b"\x02" + item + b"\x00"
    assert payloads.decode(base64.b64encode(multi).decode()) == [1, 1]
    # negative count (-2 -> zig-zag 03) followed by the block size in bytes (4 -> 08)
    negative = payloads.HEADER + b"\x0c" + b"\x03\x08" + item + item + b"\x00"
    assert payloads.decode(base64.b64encode(negative).decode()) == [1, 1]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("blob", "fragment"),
    [
        ("%%%not-base64", "not strict base64"),
        ('["world"]', "looks like JSON"),
        ("wwHioz3/VYAiNwoKd29ybGQ", "not strict base64"),  # padding missing
        ("wwHioz3_VYAiNwoKd29ybGQ=", "not strict base64"),  # URL-safe alphabet
        (" wwHioz3/VYAiNwA=", "not strict base64"),  # whitespace
        ("", "too short"),
        (b64(b"\xc3\x01"), "too short"),
        (b64(b"\x00\x01" + payloads.SCHEMA_FINGERPRINT + b"\x00"), "single-object marker"),
        (b64(b"\xc3\x01" + bytes(8) + b"\x00"), "unknown schema"),
        (b64(payloads.HEADER + bytes.fromhex("0a0a776f72")), "truncated"),  # "world" cut short
        (b64(payloads.HEADER + bytes.fromhex("06000000")), "truncated"),  # half a double
        (b64(payloads.HEADER + bytes.fromhex("0c02")), "truncated"),  # array without items
        (b64(payloads.HEADER + bytes.fromhex("0000")), "trailing bytes"),
        (b64(payloads.HEADER + bytes.fromhex("10")), "malformed"),  # union index 8
        (b64(payloads.HEADER + bytes.fromhex("0a04ffff")), "malformed"),  # invalid UTF-8
    ],
)
def test_malformed_blobs_raise_the_typed_error(blob: str, fragment: str) -> None:
    with pytest.raises(InvalidPayloadError) as info:
        payloads.decode(blob, field="input.blob")
    err = info.value
    assert err.reason == "validation_failed" and err.http_status == 422
    assert list(err.errors) == ["input.blob"]
    assert fragment in err.errors["input.blob"][0], err.errors


def test_non_string_blob_is_refused() -> None:
    with pytest.raises(InvalidPayloadError):
        payloads.decode(12, field="x")


def test_deep_nesting_is_refused_without_crashing() -> None:
    depth = 20_000  # fastavro's compiled reader would overflow the C stack
    datum = b"\x0c\x02" * depth + b"\x00" + b"\x00" * depth
    with pytest.raises(InvalidPayloadError) as info:
        payloads.decode(b64(payloads.HEADER + datum))
    assert "nested deeper" in info.value.message
    # just inside the limit still decodes, through the pre-scan
    ok = payloads.MAX_DEPTH
    datum = b"\x0c\x02" * ok + b"\x00" + b"\x00" * ok
    value = payloads.decode(b64(payloads.HEADER + datum))
    for _ in range(ok):
        value = value[0]
    assert value is None
    # and the encoder enforces the same limit
    nested: Any = None
    for _ in range(ok):
        nested = [nested]
    assert payloads.decode(payloads.encode(nested)) == nested
    with pytest.raises(InvalidPayloadError, match="nested deeper"):
        payloads.encode([nested])


def test_large_blob_prescan_catches_truncation_and_trailing_bytes() -> None:
    big = payloads.encode(list(range(2000)))
    raw = base64.b64decode(big)
    with pytest.raises(InvalidPayloadError, match="truncated"):
        payloads.decode(b64(raw[:-5]))
    with pytest.raises(InvalidPayloadError, match="trailing"):
        payloads.decode(b64(raw + b"\x00"))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (2**63, "integer_overflow"),
        (-(2**63) - 1, "integer_overflow"),
        (float("nan"), "non_finite_float"),
        (float("inf"), "non_finite_float"),
        ({1: "x"}, "invalid_map_key"),
        (object(), "unsupported_value_type"),
        ([{"a": {1, 2}}], "unsupported_value_type"),
    ],
)
def test_unencodable_values(value: Any, problem: str) -> None:
    with pytest.raises(InvalidPayloadError) as info:
        payloads.encode(value, field="input")
    assert info.value.problem == problem
    assert list(info.value.errors) == ["input"]


# --- envelopes and the start-input rule -------------------------------------------------


def test_start_input_rules() -> None:
    envelope_blob = "wwHioz3/VYAiNwwCCgp3b3JsZAA="
    assert payloads.start_input(["world"]) == envelope_blob  # curl form
    assert payloads.start_input({"codec": "avro", "blob": envelope_blob}) == envelope_blob
    assert payloads.start_input(None) == "wwHioz3/VYAiNwwA"
    assert payloads.start_input([]) == "wwHioz3/VYAiNwwA"
    # an envelope is stored as received, even a non-list value
    assert payloads.start_input({"codec": "avro", "blob": "wwHioz3/VYAiNwRU"}) == "wwHioz3/VYAiNwRU"
    # nested objects inside a plain array are values, never envelopes
    nested = [{"codec": "avro", "blob": "x"}]
    assert payloads.decode(payloads.start_input(nested)) == nested


@pytest.mark.parametrize(
    ("value", "field", "fragment"),
    [
        ("world", "input", "JSON array"),
        (42, "input", "JSON array"),
        (True, "input", "JSON array"),
        ({"name": "world"}, "input", "JSON array"),
        ({"codec": "json", "blob": "wwHioz3/VYAiNwA="}, "input.codec", '"avro"'),
        ({"blob": "wwHioz3/VYAiNwA="}, "input.codec", "missing"),
        ({"codec": "avro"}, "input.blob", "required"),
        ({"codec": "avro", "blob": None}, "input.blob", "required"),
        ({"codec": "avro", "blob": "!!"}, "input.blob", "base64"),
        ({"codec": "avro", "blob": 7}, "input.blob", "base64 string"),
        ([2**64], "input", "64-bit"),
    ],
)
def test_start_input_rejections(value: Any, field: str, fragment: str) -> None:
    with pytest.raises(InvalidPayloadError) as info:
        payloads.start_input(value)
    assert info.value.reason == "validation_failed"
    assert list(info.value.errors) == [field]
    assert fragment in info.value.errors[field][0]


@pytest.mark.parametrize(
    "value",
    [
        {
            "codec": "avro",
            "external_storage": {
                "schema": "durable-workflow.v2.external-payload-reference.v1",
                "uri": "s3://bucket/key",
                "sha256": "00",
                "size_bytes": 3,
                "codec": "avro",
            },
        },
        {"external_payload": {"reference_id": "r1"}},
    ],
)
def test_external_payload_references_are_refused(value: Any) -> None:
    with pytest.raises(ExternalPayloadUnsupportedError) as info:
        payloads.start_input(value)
    assert info.value.reason == "external_payload_unsupported"
    assert info.value.http_status == 422
    assert list(info.value.errors) == ["input"]


def test_envelope_and_views() -> None:
    assert payloads.envelope("wwHioz3/VYAiNwA=") == {"codec": "avro", "blob": "wwHioz3/VYAiNwA="}
    assert payloads.envelope(None) is None
    assert payloads.decode_for_view(payloads.encode(["a", {"b": b"\x01"}])) == [
        "a",
        {"b": {"$bytes": "AQ=="}},
    ]
    assert payloads.decode_for_view("garbage") is None
    assert payloads.decode_for_view(None) is None
