"""Request models and rules of the workflow control-plane routes (control-plane.md §5-§6).

Pure: no I/O and no payload codec. Limits that come from settings are passed
in as arguments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from dwtrio.protocol.validators import (
    FieldValueError,
    between,
    matches,
    max_length,
    not_blank,
    one_of,
)

WORKFLOW_ID_PATTERN: Final = r"[A-Za-z0-9._:-]+"
WORKFLOW_ID_MAX_LENGTH: Final = 128
DEFAULT_TASK_QUEUE: Final = "default"
DUPLICATE_POLICIES: Final = ("fail", "use-existing")
#: Timeouts are stored as Postgres integers.
MAX_TIMEOUT_SECONDS: Final = 2**31 - 1
#: Start fields refused even when null (request_contract.operations.start.unsupported_fields).
REJECTED_START_FIELDS: Final = (
    "workflow_execution_timeout",
    "workflow_run_timeout",
    "workflow_task_timeout",
    "retry_policy",
    "idempotency_key",
    "request_id",
)
SEARCH_ATTRIBUTE_KEY_PATTERN: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*")
SEARCH_ATTRIBUTE_KEY_MAX_BYTES: Final = 128
SEARCH_ATTRIBUTE_VALUE_MAX_BYTES: Final = 2048

LIST_STATUS_BUCKETS: Final = ("running", "completed", "failed")
#: Accepted as exact-status list filters (later builds), though the request contract lists them as aliases.
LIST_EXACT_STATUSES: Final = ("cancelled", "terminated")
LIST_PAGE_SIZE_DEFAULT: Final = 50
#: ``GET /api/workflows?archived=``: hide archived runs, only them, or both.
LIST_ARCHIVED_VALUES: Final = ("false", "true", "any")
LIST_PAGE_SIZE_MAX: Final = 200
HISTORY_PAGE_SIZE_DEFAULT: Final = 100
HISTORY_PAGE_SIZE_MAX: Final = 1000


def contains_nul(value: Any) -> bool:
    """Whether a JSON value holds a NUL character anywhere (Postgres text and jsonb cannot)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def no_nul(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and contains_nul(value):
        label = attribute.name.replace("_", " ")
        raise FieldValueError(attribute.name, f"The {label} may not contain NUL characters.")


def _empty_to_none(value: Any) -> Any:
    """Optional strings: "" means absent, as the reference's request normalisation does."""
    return None if value == "" else value


@attrs.frozen(kw_only=True)
class StartWorkflow:
    """``POST /api/workflows``. Unknown fields (priority, build_id, ...) are ignored."""

    workflow_type: str = attrs.field(validator=[not_blank, max_length(255), no_nul])
    workflow_id: str | None = attrs.field(
        default=None,
        converter=_empty_to_none,
        validator=[
            max_length(WORKFLOW_ID_MAX_LENGTH),
            matches(WORKFLOW_ID_PATTERN, "may only contain letters, digits, '.', '_', ':' and '-'"),
        ],
    )
    task_queue: str | None = attrs.field(
        default=None, converter=_empty_to_none, validator=[max_length(255), no_nul]
    )
    #: A JSON array or a payload envelope; converted by ``dwtrio.payloads.start_input``.
    input: Any = None
    business_key: str | None = attrs.field(
        default=None, converter=_empty_to_none, validator=[max_length(255), no_nul]
    )
    #: Checked by :func:`memo_errors` / :func:`search_attribute_errors` (limits come from settings).
    memo: Any = attrs.field(default=None, validator=no_nul)
    search_attributes: Any = attrs.field(default=None, validator=no_nul)
    duplicate_policy: str | None = attrs.field(default=None, validator=one_of(DUPLICATE_POLICIES))
    execution_timeout_seconds: int | None = attrs.field(
        default=None, validator=between(1, MAX_TIMEOUT_SECONDS)
    )
    run_timeout_seconds: int | None = attrs.field(
        default=None, validator=between(1, MAX_TIMEOUT_SECONDS)
    )


def rejected_field_errors(body: Mapping[str, Any]) -> dict[str, list[str]]:
    """One error per rejected start field that is present, even with a null value."""
    return {
        name: [f"The {name} field is not supported by this server."]
        for name in REJECTED_START_FIELDS
        if name in body
    }


def memo_errors(memo: Any, encoded_size: int, max_bytes: int) -> list[str]:
    """Rules for ``memo``: an object whose JSON encoding fits ``max_bytes``."""
    if memo is None:
        return []
    if not isinstance(memo, dict):
        return ["The memo must be an object."]
    if encoded_size > max_bytes:
        return [f"The memo may not be larger than {max_bytes} bytes when JSON-encoded."]
    return []


def search_attribute_errors(attributes: Any, max_count: int) -> list[str]:
    """Rules for ``search_attributes``: keys, string sizes and count (control-plane.md §5.1)."""
    if attributes is None:
        return []
    if not isinstance(attributes, dict):
        return ["The search attributes must be an object."]
    errors: list[str] = []
    if len(attributes) > max_count:
        errors.append(f"The search attributes may not have more than {max_count} keys.")
    for key, value in attributes.items():
        if not key:
            errors.append("Search attribute keys may not be empty.")
            continue
        if len(key.encode()) > SEARCH_ATTRIBUTE_KEY_MAX_BYTES:
            errors.append(
                f"Search attribute key {key[:40]!r} is longer than {SEARCH_ATTRIBUTE_KEY_MAX_BYTES} bytes."
            )
        elif not SEARCH_ATTRIBUTE_KEY_PATTERN.fullmatch(key):
            errors.append(
                f"Search attribute key {key!r} must start with a letter and contain only "
                "letters, digits and '_'."
            )
        strings = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        if any(
            isinstance(s, str) and len(s.encode()) > SEARCH_ATTRIBUTE_VALUE_MAX_BYTES
            for s in strings
        ):
            errors.append(
                f"Search attribute {key[:40]!r} has a value longer than "
                f"{SEARCH_ATTRIBUTE_VALUE_MAX_BYTES} bytes."
            )
    return errors


@attrs.frozen(kw_only=True)
class ListWorkflows:
    """``GET /api/workflows`` query parameters (page_size already an int)."""

    workflow_type: str | None = attrs.field(default=None, validator=no_nul)
    status: str | None = attrs.field(
        default=None, validator=one_of(LIST_STATUS_BUCKETS + LIST_EXACT_STATUSES)
    )
    query: str | None = attrs.field(default=None, validator=no_nul)
    task_queue: str | None = attrs.field(default=None, validator=no_nul)
    workflow_id_prefix: str | None = attrs.field(default=None, validator=no_nul)
    #: ISO-8601 date-times (exclusive bounds); parsed by the route.
    started_after: str | None = attrs.field(default=None, validator=no_nul)
    started_before: str | None = attrs.field(default=None, validator=no_nul)
    closed_after: str | None = attrs.field(default=None, validator=no_nul)
    closed_before: str | None = attrs.field(default=None, validator=no_nul)
    #: Archived runs: ``false`` hides them (the default), ``true`` lists only them, ``any``
    #: lists both (docs/visibility.md).
    archived: str = attrs.field(default="false", validator=one_of(LIST_ARCHIVED_VALUES))
    page_size: int = attrs.field(
        default=LIST_PAGE_SIZE_DEFAULT, validator=between(1, LIST_PAGE_SIZE_MAX)
    )
    next_page_token: str | None = None


#: Spellings of a boolean query parameter (case-insensitive).
TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})


def boolean_word(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and str(value).lower() not in TRUE_WORDS | FALSE_WORDS:
        raise FieldValueError(attribute.name, f"The {attribute.name} field must be true or false.")


@attrs.frozen(kw_only=True)
class HistoryPageQuery:
    """``GET .../runs/{run}/history`` query parameters."""

    page_size: int = attrs.field(
        default=HISTORY_PAGE_SIZE_DEFAULT, validator=between(1, HISTORY_PAGE_SIZE_MAX)
    )
    next_page_token: str | None = None
    #: Long-poll: wait until an event exists after the token (or the poll timeout).
    wait_new_event: str | None = attrs.field(default=None, validator=boolean_word)

    @property
    def waits(self) -> bool:
        return self.wait_new_event is not None and self.wait_new_event.lower() in TRUE_WORDS
