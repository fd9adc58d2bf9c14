"""The bundle's canonical form (protocol/history_export.py) is byte for byte what the SDK
2.12.0 verifier recomputes, for any JSON value; and the streamed writer's checksum and
signature equal those of the whole text. The verifier here is only its pure
canonicalizer, imported: no SDK client runs in this process."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from durable_workflow import history_bundle_verify as sdk
from hypothesis import given, settings
from hypothesis import strategies as st

from dwtrio.protocol import history_export as bundle

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def sdk_canonical(value: Any) -> str:
    return sdk._canonical_json_value(sdk._canonicalize_value(value))


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_canonical_matches_the_sdk_verifier(value: Any) -> None:
    assert bundle.canonical(value) == sdk_canonical(value)


def test_floats_with_exponents_and_text_that_looks_like_them() -> None:
    for value in [1e16, 1e17, 1.5e-5, 1e-4, 0.0001234, -2.5e300, 123456789012345680.0, 5e-324]:
        assert bundle.canonical({"x": [value]}) == sdk_canonical({"x": [value]}), value
    assert bundle.canonical("1e+16") == '"1e+16"'
    assert bundle.canonical({"é": "☃ 𝄞 \x7f \u2028"}) == sdk_canonical({"é": "☃ 𝄞 \x7f \u2028"})


@settings(max_examples=100, deadline=None)
@given(st.lists(json_values, max_size=6), st.dictionaries(st.text(max_size=5), json_values))
def test_the_streamed_writer_hashes_the_canonical_text(items: list[Any], other: Any) -> None:
    w = bundle.BundleWriter("k", "kid")
    out = w.key("a_items") + w.raw("[")
    out += w.items(items[:2], first=True)
    out += w.items(items[2:], first=len(items[:2]) == 0)
    out += w.raw("]") + w.key("b_other") + w.value(other)
    out += w.key("schema") + w.value(bundle.SCHEMA) + w.finish()
    parsed = json.loads(out)
    assert parsed["a_items"] == items
    text = sdk._canonicalize({"a_items": items, "b_other": other, "schema": bundle.SCHEMA})
    assert parsed["integrity"]["checksum"] == hashlib.sha256(text.encode()).hexdigest()
    assert parsed["integrity"]["signature"] == hmac.new(b"k", text.encode(), "sha256").hexdigest()
    assert bundle.verify(parsed, "k") == []
    assert bundle.verify(parsed, "other")  # a wrong key is a problem


def test_keys_must_come_in_order() -> None:
    w = bundle.BundleWriter()
    w.key("b")
    try:
        w.key("a")
    except ValueError:
        return
    raise AssertionError("out-of-order key accepted")
