"""The search-attribute registry's request model and value rules (control-plane.md §8).

Pure: no I/O. The system attributes are constants, never rows; custom ones are
registered per namespace with a type, and values given at start or by
``upsert_search_attributes`` are checked against the registered type by
:func:`value_type_errors`. Keys nobody registered keep only the key and size
rules of ``protocol.workflows.search_attribute_errors``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import attrs

from dwtrio.protocol.validators import matches, max_length, not_blank, one_of

NAME_PATTERN: Final = r"[a-zA-Z][a-zA-Z0-9_]*"
NAME_MAX_LENGTH: Final = 128
_NAME: Final = re.compile(NAME_PATTERN)
TYPES: Final = ("keyword", "text", "int", "double", "bool", "datetime", "keyword_list")

#: Fixed for every namespace, in the order the reference lists them.
SYSTEM_ATTRIBUTES: Final[Mapping[str, str]] = {
    "WorkflowType": "keyword",
    "WorkflowId": "keyword",
    "RunId": "keyword",
    "Status": "keyword",
    "StartTime": "datetime",
    "CloseTime": "datetime",
    "TaskQueue": "keyword",
    "BuildId": "keyword",
}

#: What a stored ``int`` can hold (a PostgreSQL bigint).
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1


@attrs.frozen(kw_only=True)
class CreateSearchAttribute:
    """``POST /api/search-attributes``."""

    name: str = attrs.field(
        validator=[
            not_blank,
            max_length(NAME_MAX_LENGTH),
            matches(
                NAME_PATTERN, "must start with a letter and contain only letters, digits and '_'"
            ),
        ]
    )
    type: str = attrs.field(validator=one_of(TYPES))


def could_be_custom(name: str) -> bool:
    """Whether a custom attribute could have this name (else a delete is 404 at once)."""
    return len(name) <= NAME_MAX_LENGTH and _NAME.fullmatch(name) is not None


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT_MIN <= value <= INT_MAX


def _is_double(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


#: Per type: the check a value must pass, and what the 422 says it must be.
_RULES: Final[Mapping[str, tuple[Any, str]]] = {
    "keyword": (lambda v: isinstance(v, str), "a string"),
    "text": (lambda v: isinstance(v, str), "a string"),
    "int": (_is_int, "an integer"),
    "double": (_is_double, "a number"),
    "bool": (lambda v: isinstance(v, bool), "a boolean"),
    "datetime": (_is_datetime, "an ISO-8601 date-time string"),
    "keyword_list": (
        lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        "a list of strings",
    ),
}


def value_type_errors(types: Mapping[str, str], attributes: Mapping[str, Any]) -> dict[str, str]:
    """One message per attribute whose value does not fit its registered type.

    ``types`` holds the registered types of (some of) the keys; keys without
    one, and ``null`` values (a delete), pass.
    """
    errors: dict[str, str] = {}
    for key, value in attributes.items():
        registered = types.get(key)
        if value is None or registered is None or registered not in _RULES:
            continue
        check, expected = _RULES[registered]
        if not check(value):
            errors[key] = (
                f"Search attribute {key!r} is registered as {registered} and must be {expected}."
            )
    return errors
