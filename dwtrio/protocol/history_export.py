"""The history-export bundle's canonical form, checksum and signature (no I/O).

The bundle's integrity covers every top-level key but ``integrity`` itself, written
in the ``json-recursive-ksort-v1`` form the SDK's offline verifier recomputes: object
keys sorted by code point at every depth, no whitespace, every non-ASCII character
escaped as ``\\uXXXX`` (UTF-16 units, lowercase hex), integers as digits, and floats
as the verifier spells them (fixed notation for exponents -4..16 with at least one
fractional digit, ``1.5e+20`` beyond). The sha256 of those UTF-8 bytes is the
checksum; the HMAC-SHA256 of the same bytes under the signing key is the signature.

The server writes the bundle *in* that canonical form, so it can hash the bytes as
they leave: :class:`BundleWriter` turns sections into text, feeds the digest(s), and
only at the end appends ``"integrity"`` (the last key, outside the hashed text; key
order does not matter to a JSON reader, and the verifier drops the key before
recomputing).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Final

SCHEMA: Final = "durable-workflow.v2.history-export"
SCHEMA_VERSION: Final = 1
CANONICALIZATION: Final = "json-recursive-ksort-v1"
CHECKSUM_ALGORITHM: Final = "sha256"
SIGNATURE_ALGORITHM: Final = "hmac-sha256"

_dumps = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode
#: A float ``json`` wrote with an exponent (``1e+16``, ``1e-05``): such values take the
#: slow path. A string holding the same text only costs the slow path, never a wrong byte.
_EXPONENT = re.compile(r"[0-9]e[+-][0-9]")


def canonical(value: Any) -> str:
    """``value`` in the canonical form (raises ValueError for NaN or infinity).

    The standard library's encoder writes it (sorted keys, compact, ASCII), except
    in two rare cases that take a slower walk: a float it spells with an exponent,
    and DEL (U+007F), which it escapes and the canonical form leaves as is.
    (orjson was tried: faster to encode, but the scans it then needs, for floats it
    spells differently and characters to escape, cost more than they saved.)
    """
    text = _dumps(value)
    if _EXPONENT.search(text) is None and "\\u007f" not in text:
        return text
    return _slow(value)


def _string(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)
    if quoted.isascii():
        return quoted
    return "".join(c if c < "\x80" else _utf16_escapes(c) for c in quoted)


def _utf16_escapes(char: str) -> str:
    units = char.encode("utf-16-be")
    return "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))


def _slow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(_string(k) + ":" + _slow(value[k]) for k in sorted(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_slow(v) for v in value) + "]"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, float):
        return canonical_float(value)
    return _dumps(value)


def canonical_float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError("bundle numbers must be finite")
    text = repr(value)
    mantissa, has_exponent, exponent_text = text.partition("e")
    if not has_exponent:
        return text
    exponent = int(exponent_text)
    if -4 <= exponent <= 16:
        fixed = format(Decimal(text), "f")
        return fixed if "." in fixed else fixed + ".0"
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{exponent:+d}"


class BundleWriter:
    """Writes a bundle's top-level keys in order, hashing what it writes.

    Call :meth:`key` once per top-level key in sorted order (the caller's duty:
    the canonical form needs it), stream a key's value as text pieces
    (:meth:`raw`, or :meth:`items` for a list's entries), then :meth:`finish`,
    which returns the closing bytes with the ``integrity`` block.
    """

    def __init__(self, signing_key: str | None = None, key_id: str | None = None) -> None:
        self._sha = hashlib.sha256()
        self._mac = (
            hmac.new(signing_key.encode(), digestmod=hashlib.sha256) if signing_key else None
        )
        self._key_id = key_id if signing_key else None
        self._keys = 0
        self._last_key = ""
        self.bytes_written = 0

    def _emit(self, text: str) -> bytes:
        data = text.encode("ascii")  # canonical text is ASCII by construction
        self._sha.update(data)
        if self._mac is not None:
            self._mac.update(data)
        self.bytes_written += len(data)
        return data

    def key(self, name: str) -> bytes:
        if self._keys and name <= self._last_key:
            raise ValueError(f"bundle key {name!r} out of order after {self._last_key!r}")
        prefix = "{" if self._keys == 0 else ","
        self._keys += 1
        self._last_key = name
        return self._emit(prefix + _dumps(name) + ":")

    def value(self, value: Any) -> bytes:
        return self._emit(canonical(value))

    def raw(self, text: str) -> bytes:
        return self._emit(text)

    def items(self, entries: Iterable[Any], *, first: bool) -> bytes:
        """A run of list entries; ``first`` when none was written before in this list."""
        text = ",".join(canonical(e) for e in entries)
        if not text:
            return b""
        return self._emit(text if first else "," + text)

    def integrity(self) -> dict[str, Any]:
        sha = self._sha.copy()
        sha.update(b"}")
        signature = None
        if self._mac is not None:
            mac = self._mac.copy()
            mac.update(b"}")
            signature = mac.hexdigest()
        return {
            "canonicalization": CANONICALIZATION,
            "checksum_algorithm": CHECKSUM_ALGORITHM,
            "checksum": sha.hexdigest(),
            "signature_algorithm": SIGNATURE_ALGORITHM if signature else None,
            "signature": signature,
            "key_id": self._key_id,
        }

    def finish(self) -> bytes:
        """The integrity key and the closing brace (not hashed: not part of the canonical text)."""
        tail = ',"integrity":' + canonical(self.integrity()) + "}"
        data = tail.encode("ascii")
        self.bytes_written += len(data)
        return data


# --- offline verification ---------------------------------------------------------


def canonical_text(bundle: dict[str, Any]) -> str:
    """The hashed text of a parsed bundle: every key but ``integrity``, canonical."""
    return canonical({k: v for k, v in bundle.items() if k != "integrity"})


def verify(bundle: Any, signing_key: str | None = None) -> list[str]:
    """Problems with a parsed bundle's integrity; empty when it verifies.

    Checks the schema, the checksum and, when ``signing_key`` is given, the
    signature (a key given for an unsigned bundle is a problem; a signed bundle
    checked without a key is not, its signature is simply left unchecked).
    """
    if not isinstance(bundle, dict):
        return ["the bundle is not a JSON object"]
    problems: list[str] = []
    if bundle.get("schema") != SCHEMA:
        problems.append(f"schema is {bundle.get('schema')!r}, expected {SCHEMA!r}")
    block = bundle.get("integrity")
    if not isinstance(block, dict):
        return [*problems, "the bundle has no integrity block"]
    if block.get("canonicalization") != CANONICALIZATION:
        problems.append(f"unsupported canonicalization {block.get('canonicalization')!r}")
        return problems
    if block.get("checksum_algorithm") != CHECKSUM_ALGORITHM:
        problems.append(f"unsupported checksum algorithm {block.get('checksum_algorithm')!r}")
        return problems
    try:
        data = canonical_text(bundle).encode("ascii")
    except ValueError as exc:
        return [*problems, f"the bundle cannot be canonicalized: {exc}"]
    checksum = hashlib.sha256(data).hexdigest()
    stated = block.get("checksum")
    if not isinstance(stated, str) or not hmac.compare_digest(checksum, stated):
        problems.append(f"checksum mismatch: the bundle hashes to {checksum}, it states {stated}")
    signature = block.get("signature")
    if signing_key:
        if signature is None:
            problems.append("a signing key was given but the bundle is not signed")
        elif block.get("signature_algorithm") != SIGNATURE_ALGORITHM:
            problems.append(f"unsupported signature algorithm {block.get('signature_algorithm')!r}")
        else:
            expected = hmac.new(signing_key.encode(), data, hashlib.sha256).hexdigest()
            if not isinstance(signature, str) or not hmac.compare_digest(expected, signature):
                problems.append(
                    f"signature mismatch under the given key (bundle key_id {block.get('key_id')!r})"
                )
    return problems
