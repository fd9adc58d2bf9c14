"""Request models and rules of the schedule routes (control-plane.md §7).

Pure: no I/O. The spec grammar and its evaluation live in
:mod:`dwtrio.protocol.schedule_spec`; this module checks the rest of a body
(action, policies, limits) and says how an action is normalised.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from dwtrio.protocol.validators import between, matches, max_length, one_of
from dwtrio.protocol.workflows import MAX_TIMEOUT_SECONDS, no_nul

OVERLAP_POLICIES: Final = (
    "skip",
    "buffer_one",
    "buffer_all",
    "cancel_other",
    "terminate_other",
    "allow_all",
)
BUFFER_POLICIES: Final = frozenset({"buffer_one", "buffer_all"})
SCHEDULE_ID_PATTERN: Final = r"[A-Za-z0-9._:-]+"
SCHEDULE_ID_MAX_LENGTH: Final = 128
NOTE_MAX_LENGTH: Final = 1000
MAX_JITTER_SECONDS: Final = 3600
MAX_RUNS_LIMIT: Final = 2**62
#: Renamed on the way in when the canonical key is absent (schedules-and-admission.md §1.1).
ACTION_TIMEOUT_ALIASES: Final = {
    "workflow_execution_timeout": "execution_timeout_seconds",
    "workflow_run_timeout": "run_timeout_seconds",
}
LIST_PAGE_SIZE_DEFAULT: Final = 50
LIST_PAGE_SIZE_MAX: Final = 200
HISTORY_LIMIT_DEFAULT: Final = 100
HISTORY_LIMIT_MAX: Final = 500
BACKFILL_MAX_OCCURRENCES: Final = 1000
LIST_STATUSES: Final = ("active", "paused")

_id = attrs.field(
    default=None,
    validator=[
        max_length(SCHEDULE_ID_MAX_LENGTH),
        matches(SCHEDULE_ID_PATTERN, "may only contain letters, digits, '.', '_', ':' and '-'"),
    ],
)


def _policy() -> Any:
    return attrs.field(default=None, validator=one_of(OVERLAP_POLICIES))


def _note() -> Any:
    return attrs.field(default=None, validator=[max_length(NOTE_MAX_LENGTH), no_nul])


@attrs.frozen(kw_only=True)
class ScheduleFields:
    """What create and update share; on update every field is optional."""

    #: Checked by ``schedule_spec.parse_spec``.
    spec: Any = None
    #: Checked and normalised by :func:`normalize_action`.
    action: Any = None
    overlap_policy: str | None = _policy()
    jitter_seconds: int | None = attrs.field(default=None, validator=between(0, MAX_JITTER_SECONDS))
    max_runs: int | None = attrs.field(default=None, validator=between(1, MAX_RUNS_LIMIT))
    #: Checked with the start rules (``memo_errors`` / ``search_attribute_errors``).
    memo: Any = attrs.field(default=None, validator=no_nul)
    search_attributes: Any = attrs.field(default=None, validator=no_nul)
    note: str | None = _note()


@attrs.frozen(kw_only=True)
class CreateSchedule(ScheduleFields):
    """``POST /api/schedules``."""

    schedule_id: str | None = _id
    paused: bool = False


@attrs.frozen(kw_only=True)
class UpdateSchedule(ScheduleFields):
    """``PUT /api/schedules/{id}``: the fields sent replace (``action``: merges over) the stored ones."""


@attrs.frozen(kw_only=True)
class ScheduleNote:
    """``POST .../pause`` and ``.../resume``."""

    note: str | None = _note()


@attrs.frozen(kw_only=True)
class TriggerSchedule:
    """``POST .../trigger``: a policy for this fire only."""

    overlap_policy: str | None = _policy()


@attrs.frozen(kw_only=True)
class BackfillSchedule:
    """``POST .../backfill``: occurrences in ``[start_time, end_time)``."""

    start_time: str
    end_time: str
    overlap_policy: str | None = _policy()


@attrs.frozen(kw_only=True)
class ListSchedules:
    """``GET /api/schedules`` query parameters."""

    status: str | None = attrs.field(default=None, validator=one_of(LIST_STATUSES))
    workflow_type: str | None = attrs.field(default=None, validator=[max_length(255), no_nul])
    query: str | None = None
    page_size: int | None = attrs.field(default=None, validator=between(1, LIST_PAGE_SIZE_MAX))
    next_page_token: str | None = None


def canonical_timeouts(action: dict[str, Any]) -> dict[str, Any]:
    """A copy with the timeout aliases renamed (dropped where the canonical key is set)."""
    renamed = dict(action)
    for alias, canonical in ACTION_TIMEOUT_ALIASES.items():
        if alias in renamed:
            value = renamed.pop(alias)
            renamed.setdefault(canonical, value)
    return renamed


def merged_action(stored: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """An update's action: the fields sent (aliases renamed first, so they count) over
    the stored ones."""
    return {**stored, **canonical_timeouts(sent)}


def normalize_action(
    action: Any, *, path: str = "action"
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The action to store (timeout aliases renamed, other keys kept) and its field errors.

    ``input`` is checked by the caller (it needs the payload codec); here it is
    only kept as sent.
    """
    if not isinstance(action, dict):
        return {}, {path: [f"The {path} must be an object."]}
    normalized = canonical_timeouts(action)
    errors: dict[str, list[str]] = {}
    workflow_type = normalized.get("workflow_type")
    if not isinstance(workflow_type, str) or not workflow_type.strip():
        errors[f"{path}.workflow_type"] = ["The workflow type field is required."]
    elif len(workflow_type) > 255:
        errors[f"{path}.workflow_type"] = [
            "The workflow type may not be greater than 255 characters."
        ]
    queue = normalized.get("task_queue")
    if queue is not None and (not isinstance(queue, str) or not queue.strip() or len(queue) > 255):
        errors[f"{path}.task_queue"] = [
            "The task queue must be a non-empty string of at most 255 characters."
        ]
    for key in ("execution_timeout_seconds", "run_timeout_seconds"):
        value = normalized.get(key)
        if value is None:
            continue
        if not (
            isinstance(value, int)
            and not isinstance(value, bool)
            and 1 <= value <= MAX_TIMEOUT_SECONDS
        ):
            errors[f"{path}.{key}"] = [f"The {key.replace('_', ' ')} must be an integer >= 1."]
    return normalized, errors
