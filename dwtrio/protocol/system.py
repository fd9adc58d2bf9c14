"""Request models of the admin system passes (control-plane.md §11; docs/retention.md)."""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio.errors import ValidationFailedError
from dwtrio.protocol.validators import FieldValueError, Validator, between, max_length, not_blank

#: Most ids one pass request may name.
MAX_PASS_IDS = 100
#: Longest id a pass request may name.
MAX_ID_LENGTH = 128


def id_list(max_items: int = MAX_PASS_IDS, max_len: int = MAX_ID_LENGTH) -> Validator:
    """A list of at most ``max_items`` non-blank strings of at most ``max_len`` characters."""

    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if len(value) > max_items:
            raise FieldValueError(
                attribute.name, f"The {attribute.name} may not have more than {max_items} items."
            )
        for i, item in enumerate(value):
            if not item.strip() or len(item) > max_len:
                raise FieldValueError(
                    f"{attribute.name}.{i}",
                    f"Each of {attribute.name} must be 1 to {max_len} characters.",
                )

    setattr(check, "json_schema", {"maxItems": max_items})  # noqa: B010 - read by the OpenAPI doc
    return check


def require_lists(body: Any, *fields: str) -> None:
    """422 when one of ``fields`` is present and not a JSON array (the converter would
    otherwise take a string for the list of its characters)."""
    if not isinstance(body, dict):
        return  # the converter refuses a body that is not an object
    bad = {
        f: [f"The {f} must be an array."]
        for f in fields
        if body.get(f) is not None and not isinstance(body[f], list)
    }
    if bad:
        raise ValidationFailedError(bad)


@attrs.frozen(kw_only=True)
class RepairPassRequest:
    run_ids: list[str] | None = attrs.field(default=None, validator=id_list())
    instance_id: str | None = attrs.field(
        default=None, validator=[not_blank, max_length(MAX_ID_LENGTH)]
    )


@attrs.frozen(kw_only=True)
class ActivityTimeoutPassRequest:
    limit: int | None = attrs.field(default=None, validator=between(1))
    execution_ids: list[str] | None = attrs.field(default=None, validator=id_list())


@attrs.frozen(kw_only=True)
class RetentionPassRequest:
    limit: int | None = attrs.field(default=None, validator=between(1))
    run_ids: list[str] | None = attrs.field(default=None, validator=id_list())
