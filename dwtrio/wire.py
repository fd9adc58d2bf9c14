"""The wire format: one cattrs converter, JSON bytes and timestamp renderings.

Request bodies are structured into attrs models with a private converter.
Unknown request fields are ignored, as the control-plane contract requires
(SDKs send fields newer than the server); type errors and attrs validator
failures become a ``422 validation_failed`` with a field-path map.

Two rules hold for every decoded request body, whatever route reads it (the
request pipeline applies them, see ``http/pipeline.py``):

* no more than :data:`MAX_JSON_DEPTH` nested arrays and objects, because
  ``orjson.dumps`` (responses, and the store's jsonb codec) gives up near 255
  levels: :func:`too_deep`;
* no NUL character in any string or object key, because PostgreSQL text and
  jsonb cannot hold one: :func:`nul_errors`. (Lone surrogates never get this
  far: ``orjson.loads`` refuses them as malformed JSON.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import attrs
import orjson
from cattrs import ClassValidationError, ForbiddenExtraKeysError
from cattrs.preconf.orjson import make_converter
from cattrs.v import format_exception

from dwtrio.errors import ValidationFailedError

T = TypeVar("T")

#: Most nested arrays and objects a request body may have (the body itself is level 1).
#: SDK bodies use fewer than 10 (payloads travel as base64 strings); orjson can
#: serialise about 254, so a value from a body fits in any response or jsonb
#: column with room to spare. Deeper bodies get ``400 malformed_json``.
MAX_JSON_DEPTH: Final = 64
#: Most bytes a request's line and headers may take (Hypercorn's own limit for a head
#: that arrives in pieces; ``pipeline.check_head`` applies it to every head, as a 431).
MAX_HEAD_BYTES: Final = 16 * 1024
#: How many NUL-holding fields one 422 lists.
_MAX_NUL_ERRORS: Final = 20

converter = make_converter(forbid_extra_keys=False, detailed_validation=True)


def _strict(kind: type, label: str) -> Any:
    def hook(value: Any, _: Any) -> Any:
        # bool is an int subclass in Python but not an integer on the wire.
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"must be {label}")
        if not isinstance(value, kind):
            raise TypeError(f"must be {label}")
        return value

    return hook


converter.register_structure_hook(int, _strict(int, "an integer"))
converter.register_structure_hook(str, _strict(str, "a string"))
converter.register_structure_hook(bool, _strict(bool, "a boolean"))


def _attrs_object(cls: type) -> Any:
    """Nested models must be JSON objects (a string or list is not an empty object)."""
    inner: Callable[[Any, Any], Any] = converter.gen_structure_attrs_fromdict(cls)

    def hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError("must be an object")
        return inner(value, type_)

    return hook


converter.register_structure_hook_factory(attrs.has, _attrs_object)


def _message(exc: BaseException, field: str) -> str:
    """The 422 text of one failure; a hook's message may say ``{field}`` for the field's name."""
    if isinstance(exc, KeyError):
        return f"The {field} field is required."
    if isinstance(exc, TypeError | ValueError) and exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]
        if "{field}" in text:
            return text.replace("{field}", field)
        if text.startswith("must "):
            return f"The {field} field {text}."
        return text
    return f"The {field} field is invalid ({format_exception(exc, None)})."


def _collect(exc: BaseException, prefix: str, out: dict[str, list[str]]) -> None:
    if isinstance(exc, ClassValidationError | ForbiddenExtraKeysError | BaseExceptionGroup):
        for sub in getattr(exc, "exceptions", ()):
            notes = getattr(sub, "__notes__", [])
            name = next((getattr(n, "name", None) for n in notes if hasattr(n, "name")), None)
            index = next((getattr(n, "index", None) for n in notes if hasattr(n, "index")), None)
            part = name if name is not None else (str(index) if index is not None else "")
            path = f"{prefix}.{part}" if prefix and part else (part or prefix)
            _collect(sub, path, out)
        return
    named = getattr(exc, "field", None)  # protocol.validators.FieldValueError
    if isinstance(exc, ValueError) and isinstance(named, str):
        prefix = f"{prefix}.{named}" if prefix else named
    field = prefix or "body"
    out.setdefault(field, []).append(_message(exc, field.rsplit(".", 1)[-1].replace("_", " ")))


def field_errors(exc: BaseException, prefix: str = "") -> dict[str, list[str]]:
    """The 422 map of a cattrs structuring failure: messages keyed by field path
    (``prefix.field.0.inner``); empty when ``exc`` is not a validation failure."""
    if not isinstance(exc, ClassValidationError | ForbiddenExtraKeysError | BaseExceptionGroup):
        return {}
    errors: dict[str, list[str]] = {}
    _collect(exc, prefix, errors)
    return errors


def structure(data: Any, cls: type[T]) -> T:
    """Structure a decoded JSON body into ``cls``.

    Raises:
        ValidationFailedError: with one entry per offending field path.
    """
    if not isinstance(data, dict):
        raise ValidationFailedError({"body": ["The request body must be a JSON object."]})
    try:
        return converter.structure(data, cls)
    except (ClassValidationError, ForbiddenExtraKeysError) as exc:
        raise ValidationFailedError(field_errors(exc)) from None


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


#: Up to this size a body's brackets are counted before its tree is walked.
_BRACKET_COUNT_MAX_BYTES = 64 * 1024


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH, raw: bytes | None = None) -> bool:
    """Whether ``value`` (decoded JSON) nests more than ``limit`` arrays and objects.

    With the ``raw`` JSON, a small body with no more brackets than ``limit`` is
    not walked at all (about 0.2 us). Otherwise one level at a time, with no
    Python recursion: about 3 us for an SDK workflow-task completion, 1 us for a 1 MiB body that is one payload string,
    and about one ``orjson.loads`` of the same bytes for a 1 MiB body made of
    small objects (docs/architecture.md, "A request").
    """
    # A small body with fewer brackets than levels allowed (counting those inside
    # strings too) cannot nest too deep: cheaper than the walk for the usual body.
    if (
        raw is not None
        and len(raw) <= _BRACKET_COUNT_MAX_BYTES
        and raw.count(b"{") + raw.count(b"[") <= limit
    ):
        return False
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            below += [
                child
                for child in (node.values() if type(node) is dict else node)
                if type(child) is dict or type(child) is list
            ]
        level = below
    return False


def nul_errors(value: Any, raw: bytes | None = None) -> dict[str, list[str]]:
    """A 422 field map of the strings (and object keys) in ``value`` that hold a NUL.

    Paths are dotted as in every 422 (``memo.tags.0``); a key holding NUL is
    reported at its object's path (``body`` for the top level). With the ``raw``
    JSON the value was decoded from, a body without the escape ``\\u0000`` (the
    only way JSON can carry NUL) is passed without a walk: most bodies hold no
    backslash at all, which one ``memchr`` tells.
    """
    if raw is not None and (b"\\" not in raw or b"\\u0000" not in raw):
        return {}
    errors: dict[str, list[str]] = {}

    def refuse(path: str, message: str) -> None:
        if len(errors) < _MAX_NUL_ERRORS:
            where = path or "body"
            errors.setdefault(where, []).append(message.format(where))

    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                refuse(path, "The {} field may not contain NUL characters.")
        elif isinstance(node, dict):
            children: list[tuple[Any, str]] = []
            for key, child in node.items():
                if "\x00" in key:
                    refuse(path, "The keys of the {} field may not contain NUL characters.")
                    continue
                children.append((child, f"{path}.{key}" if path else key))
            stack.extend(reversed(children))  # reported in document order
        elif isinstance(node, list):
            stack.extend(
                (node[i], f"{path}.{i}" if path else str(i)) for i in reversed(range(len(node)))
            )
    return errors


def unstructure(value: Any) -> Any:
    return converter.unstructure(value)


def iso_z(value: datetime | None) -> str | None:
    """``2026-04-22T06:24:00.000000Z``: workflow, run, history, task and worker timestamps."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_offset(value: datetime | None) -> str | None:
    """``2026-04-22T06:24:00+00:00``: namespace, schedule, health and readiness timestamps."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def now_utc() -> datetime:
    return datetime.now(UTC)
