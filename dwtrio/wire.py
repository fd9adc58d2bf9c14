"""The wire format: one cattrs converter, JSON bytes and timestamp renderings.

Request bodies are structured into attrs models with a private converter.
Unknown request fields are ignored, as the control-plane contract requires
(SDKs send fields newer than the server); type errors and attrs validator
failures become a ``422 validation_failed`` with a field-path map.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
import orjson
from cattrs import ClassValidationError, ForbiddenExtraKeysError
from cattrs.preconf.orjson import make_converter
from cattrs.v import format_exception

from dwtrio.errors import ValidationFailedError

T = TypeVar("T")

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
    if isinstance(exc, KeyError):
        return f"The {field} field is required."
    if isinstance(exc, TypeError | ValueError) and exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]
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
        errors: dict[str, list[str]] = {}
        _collect(exc, "", errors)
        raise ValidationFailedError(errors) from None


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


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
