"""attrs validators that produce the wire's validation messages."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

import attrs

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


class FieldValueError(ValueError):
    """A validator failure that names its field, so the 422 map is keyed by it.

    attrs runs validators in ``__init__``, after cattrs has structured every
    field, so cattrs cannot attach the field name itself.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _described(check: Validator, **schema: Any) -> Validator:
    """Record the JSON Schema keywords a validator enforces (read by the OpenAPI document)."""
    setattr(check, "json_schema", schema)  # noqa: B010 - a function attribute, not a field
    return check


def _label(attribute: attrs.Attribute[Any]) -> str:
    return attribute.name.replace("_", " ")


def max_length(n: int) -> Validator:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and len(value) > n:
            raise FieldValueError(
                attribute.name, f"The {_label(attribute)} may not be greater than {n} characters."
            )

    return _described(check, maxLength=n)


def not_blank(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value.strip():
        raise FieldValueError(attribute.name, f"The {_label(attribute)} field is required.")


_described(not_blank, pattern=r"\S")


def matches(pattern: str, description: str) -> Validator:
    compiled = re.compile(pattern)

    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not compiled.fullmatch(value):
            raise FieldValueError(attribute.name, f"The {_label(attribute)} {description}.")

    return _described(check, pattern=f"^(?:{pattern})$")


def between(low: int, high: int | None = None) -> Validator:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise FieldValueError(attribute.name, f"The {_label(attribute)} must be {bound}.")

    return _described(check, minimum=low, **({} if high is None else {"maximum": high}))


def one_of(choices: Collection[str]) -> Validator:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and value not in choices:
            raise FieldValueError(
                attribute.name,
                f"The selected {_label(attribute)} is invalid; use one of {', '.join(choices)}.",
            )

    return _described(check, enum=list(choices))
