"""Workflow-task commands: the grammar the server accepts.

``parse_commands`` turns the raw ``commands`` list of a completion into typed
commands, checking the whole list before anything is applied. Two kinds of
rule, two kinds of refusal:

* **Structure** (409 ``invalid_commands``), checked first by
  :func:`_check_structure`: a non-empty list of objects with a string
  ``type``, at most one terminal command and only last, known types, and the
  options this server does not implement (:data:`UNSUPPORTED`).
* **Fields** (422 ``validation_failed``, keyed ``commands.<i>.<field>``): the
  command classes below are a cattrs tagged union on ``type``
  (:data:`COMMAND_TYPES`); each field's annotation is a wire type whose hook
  says what it accepts (:func:`_register`), and the converter collects every
  error of every command with its field path (``wire.field_errors``).

To add a command: a class here (its fields, their wire types), its tag in
:data:`COMMAND_TYPES`, and a handler in ``engine/commands``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, NewType

import attrs
from cattrs import ClassValidationError
from cattrs.strategies import configure_tagged_union

from dwtrio import wire
from dwtrio.errors import InvalidCommandsError, ValidationFailedError
from dwtrio.protocol.validators import FieldValueError

TERMINAL = frozenset({"complete_workflow", "fail_workflow", "continue_as_new"})
PARALLEL_FIELDS = (
    "parallel_group_id",
    "parallel_group_kind",
    "parallel_group_base_sequence",
    "parallel_group_size",
    "parallel_group_index",
    "parallel_group_path",
)
#: The three group numbers the wake rule reads; a group member carries all or none.
GROUP_NUMBERS = ("parallel_group_base_sequence", "parallel_group_size", "parallel_group_index")
#: Longest activity timeout or retry backoff accepted: 10 years (stored as int4 seconds).
MAX_ACTIVITY_SECONDS = 10 * 365 * 24 * 3600
#: Longest timer (or condition timeout) accepted: 100 years, far inside timestamptz range.
MAX_TIMER_SECONDS = 100 * 365 * 24 * 3600
PARENT_CLOSE_POLICIES = frozenset(
    {"abandon", "request_cancel", "request_cancellation", "terminate"}
)
CHILD_CANCELLATION_POLICIES = frozenset({"abandon", "try_cancel", "wait_cancellation_completed"})
#: Timeouts are stored as Postgres integers.
MAX_TIMEOUT_SECONDS = 2**31 - 1
ACTIVITY_TIMEOUTS = (
    "start_to_close_timeout",
    "schedule_to_start_timeout",
    "schedule_to_close_timeout",
    "heartbeat_timeout",
)
FAILURE_DETAILS = ("failed_step_sequence", "failed_activity_execution_id", "code", "stack_trace")


class _Absent:
    """The default of a field whose absence is kept apart from an explicit null."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final[Any] = _Absent()

# --- wire types: each annotation names what the field accepts ---------------------------
#: A required, non-blank string.
Name = NewType("Name", str)
#: A string that is not blank (the field itself may be optional).
NonBlank = NewType("NonBlank", str)
#: A required string, possibly empty.
Text = NewType("Text", str)
#: A string, or None for anything else (informational fields taken as sent).
LooseStr = NewType("LooseStr", str)
#: Any JSON value, taken as truthy or not.
Truthy = NewType("Truthy", bool)
#: True only for JSON ``true``.
OnlyTrue = NewType("OnlyTrue", bool)
#: A JSON object, kept as sent.
Object = NewType("Object", dict[str, Any])
#: A payload envelope (an object), kept as sent.
Envelope = NewType("Envelope", dict[str, Any])
#: A payload blob string or an inline envelope, kept as sent.
Blob = NewType("Blob", object)
ActivitySeconds = NewType("ActivitySeconds", int)
TimerSeconds = NewType("TimerSeconds", int)
RunSeconds = NewType("RunSeconds", int)
ParentClosePolicy = NewType("ParentClosePolicy", str)
ChildCancellationPolicy = NewType("ChildCancellationPolicy", str)
#: A retry policy object: checked field by field (:class:`_RetryPolicyShape`), kept as sent.
RetryPolicy = NewType("RetryPolicy", dict[str, Any])
#: The nested group path: a non-empty list of objects, each checked, kept as sent.
GroupPath = NewType("GroupPath", list[Any])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(accepts: Callable[[Any], bool], message: str) -> Callable[[Any, Any], Any]:
    """A hook that returns the value as sent when ``accepts`` it, else raises ``message``
    (``{field}`` stands for the field's name)."""

    def hook(value: Any, _: Any) -> Any:
        if not accepts(value):
            raise ValueError(message)
        return value

    return hook


def _int_between(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and low <= v <= high


_PositiveCount = NewType("_PositiveCount", int)
_Backoff = NewType("_Backoff", list[int])
_Strings = NewType("_Strings", list[str])
_GroupNumber = NewType("_GroupNumber", int)


@attrs.frozen(kw_only=True)
class _RetryPolicyShape:
    """What a retry policy's known fields must be (other keys pass untouched)."""

    max_attempts: _PositiveCount = ABSENT
    backoff_seconds: _Backoff = ABSENT
    non_retryable_error_types: _Strings = ABSENT


@attrs.frozen(kw_only=True)
class _GroupPathEntry:
    """What each entry of a nested group path must hold (other keys pass untouched)."""

    parallel_group_base_sequence: _GroupNumber
    parallel_group_size: _GroupNumber
    parallel_group_index: _GroupNumber


@attrs.frozen(kw_only=True)
class _GroupMember:
    """The parallel-group fields a command may carry (commands.md §4.2), as sent."""

    parallel_group_id: Any = ABSENT
    parallel_group_kind: Any = ABSENT
    parallel_group_base_sequence: Any = ABSENT
    parallel_group_size: Any = ABSENT
    parallel_group_index: Any = ABSENT
    parallel_group_path: GroupPath = ABSENT

    @property
    def parallel(self) -> dict[str, Any]:
        """The group fields that were sent (explicit nulls included)."""
        return {k: v for k in PARALLEL_FIELDS if (v := getattr(self, k)) is not ABSENT}

    def __attrs_post_init__(self) -> None:
        # The wake rule reads all three numbers; a partial group would fail when its step settles.
        numbers = {k: getattr(self, k) for k in GROUP_NUMBERS}
        if all(v is ABSENT for v in numbers.values()):
            return
        errors = [
            FieldValueError(key, f"The {key} must be an integer (set with the other group fields).")
            for key, value in numbers.items()
            if not (_is_int(value) and value >= (0 if key == "parallel_group_index" else 1))
        ]
        if errors:
            raise ClassValidationError("parallel group", errors, type(self))


@attrs.frozen(kw_only=True)
class ScheduleActivity(_GroupMember):
    activity_type: Name
    queue: NonBlank | None = None
    arguments: Any = None
    retry_policy: RetryPolicy | None = None
    start_to_close_timeout: ActivitySeconds | None = None
    schedule_to_start_timeout: ActivitySeconds | None = None
    schedule_to_close_timeout: ActivitySeconds | None = None
    heartbeat_timeout: ActivitySeconds | None = None

    @property
    def timeouts(self) -> dict[str, int]:
        """The timeouts that were set."""
        return {k: v for k in ACTIVITY_TIMEOUTS if (v := getattr(self, k)) is not None}


@attrs.frozen(kw_only=True)
class CompleteWorkflow:
    result: Any = None


@attrs.frozen(kw_only=True)
class FailWorkflow:
    message: Text
    exception_type: LooseStr | None = None
    exception_class: LooseStr | None = None
    exception: Object | None = None
    non_retryable: Truthy = Truthy(False)
    failed_step_sequence: Any = ABSENT
    failed_activity_execution_id: Any = ABSENT
    code: Any = ABSENT
    stack_trace: Any = ABSENT

    @property
    def details(self) -> dict[str, Any]:
        """The failure details that were sent, as sent."""
        return {k: v for k in FAILURE_DETAILS if (v := getattr(self, k)) is not ABSENT}


@attrs.frozen(kw_only=True)
class RecordSideEffect:
    #: The blob string (or inline envelope) as sent; decoded by the handler.
    result: Blob


@attrs.frozen(kw_only=True)
class RecordVersionMarker:
    change_id: Name
    version: int
    min_supported: int
    max_supported: int

    def __attrs_post_init__(self) -> None:
        if not self.min_supported <= self.version <= self.max_supported:
            raise FieldValueError(
                "version", "The version must lie between min_supported and max_supported."
            )


@attrs.frozen(kw_only=True)
class UpsertSearchAttributes:
    #: As sent: a ``None`` value deletes the key.
    attributes: Object


@attrs.frozen(kw_only=True)
class StartTimer(_GroupMember):
    delay_seconds: TimerSeconds


@attrs.frozen(kw_only=True)
class OpenConditionWait:
    #: Key and fingerprint exactly as sent: the SDK compares them on replay.
    condition_key: str | None = None
    condition_definition_fingerprint: str | None = None
    timeout_seconds: TimerSeconds | None = None


@attrs.frozen(kw_only=True)
class UpsertMemo:
    #: The envelope as sent (an Avro map; ``None`` values delete keys); checked by the handler.
    entries: Envelope


@attrs.frozen(kw_only=True)
class ContinueAsNew:
    #: None keeps the run's type / queue.
    workflow_type: NonBlank | None = None
    queue: NonBlank | None = None
    arguments: Any = None


@attrs.frozen(kw_only=True)
class StartChildWorkflow(_GroupMember):
    workflow_type: Name
    queue: NonBlank | None = None
    arguments: Any = None
    #: As sent (None when the command had none, which means ``abandon``).
    parent_close_policy: ParentClosePolicy | None = None
    cancellation_policy: ChildCancellationPolicy | None = None
    execution_timeout_seconds: RunSeconds | None = None
    run_timeout_seconds: RunSeconds | None = None


@attrs.frozen(kw_only=True)
class CompleteUpdate:
    update_id: Name
    result: Any = None


@attrs.frozen(kw_only=True)
class FailUpdate:
    update_id: Name
    message: Text
    exception_type: LooseStr | None = None
    exception_class: LooseStr | None = None
    non_retryable: OnlyTrue = OnlyTrue(False)


Command = (
    ScheduleActivity
    | CompleteWorkflow
    | FailWorkflow
    | RecordSideEffect
    | RecordVersionMarker
    | UpsertSearchAttributes
    | StartTimer
    | OpenConditionWait
    | UpsertMemo
    | ContinueAsNew
    | StartChildWorkflow
    | CompleteUpdate
    | FailUpdate
)

#: The ``type`` tag of each command class.
COMMAND_TYPES: Final[Mapping[type, str]] = {
    ScheduleActivity: "schedule_activity",
    CompleteWorkflow: "complete_workflow",
    FailWorkflow: "fail_workflow",
    RecordSideEffect: "record_side_effect",
    RecordVersionMarker: "record_version_marker",
    UpsertSearchAttributes: "upsert_search_attributes",
    StartTimer: "start_timer",
    OpenConditionWait: "open_condition_wait",
    UpsertMemo: "upsert_memo",
    ContinueAsNew: "continue_as_new",
    StartChildWorkflow: "start_child_workflow",
    CompleteUpdate: "complete_update",
    FailUpdate: "fail_update",
}

#: Command types the engine applies (advertised in discovery).
IMPLEMENTED: Final = tuple(COMMAND_TYPES.values())


def _selects(raw: dict[str, Any]) -> bool:
    entries = raw.get("parallel_group_path")
    return isinstance(entries, list) and any(
        isinstance(e, dict) and e.get("parallel_group_mode") == "select" for e in entries
    )


#: Options of a known command this server does not implement: (refuses?, why), per type.
UNSUPPORTED: Final[dict[str, list[tuple[Callable[[dict[str, Any]], bool], str]]]] = {
    "schedule_activity": [
        (
            lambda raw: "worker_session" in raw or "cancellation_policy" in raw,
            "worker_session and cancellation_policy are not supported by this server.",
        ),
        (_selects, "Durable selection (parallel_group_mode: select) is not supported."),
    ],
    "start_timer": [
        (_selects, "Durable selection (parallel_group_mode: select) is not supported."),
    ],
    "start_child_workflow": [
        (
            lambda raw: raw.get("retry_policy") is not None,
            "Child workflow retry policies are not supported by this server.",
        ),
        (_selects, "Durable selection (parallel_group_mode: select) is not supported."),
    ],
    "open_condition_wait": [
        # The SDK groups conditions only in durable selections (ctx.select).
        (
            lambda raw: any(k in raw for k in PARALLEL_FIELDS),
            "Condition waits in parallel groups are not supported.",
        ),
    ],
}


def _register(converter: Any) -> None:
    """The hook of every wire type, then the tagged union on ``type``."""
    hooks: dict[Any, Callable[[Any, Any], Any]] = {
        Name: _check(
            lambda v: isinstance(v, str) and bool(v.strip()), "The {field} field is required."
        ),
        NonBlank: _check(
            lambda v: isinstance(v, str) and bool(v.strip()),
            "The {field} must be a non-empty string.",
        ),
        Text: _check(lambda v: isinstance(v, str), "The {field} field is required."),
        LooseStr: lambda v, _: v if isinstance(v, str) else None,
        Truthy: lambda v, _: bool(v),
        OnlyTrue: lambda v, _: v is True,
        Object: _check(lambda v: isinstance(v, dict), "The {field} must be an object."),
        Envelope: _check(lambda v: isinstance(v, dict), "The {field} must be a payload envelope."),
        Blob: _check(
            lambda v: isinstance(v, str | dict),
            "The {field} must be a payload blob string or an envelope.",
        ),
        ActivitySeconds: _check(
            _int_between(1, MAX_ACTIVITY_SECONDS),
            f"The {{field}} must be an integer from 1 to {MAX_ACTIVITY_SECONDS}.",
        ),
        TimerSeconds: _check(
            _int_between(0, MAX_TIMER_SECONDS),
            f"The {{field}} must be an integer between 0 and {MAX_TIMER_SECONDS}.",
        ),
        RunSeconds: _check(
            _int_between(1, MAX_TIMEOUT_SECONDS), "The {field} must be an integer >= 1."
        ),
        ParentClosePolicy: _check(
            lambda v: v in PARENT_CLOSE_POLICIES,
            f"The {{field}} must be one of {sorted(PARENT_CLOSE_POLICIES)}.",
        ),
        ChildCancellationPolicy: _check(
            lambda v: v in CHILD_CANCELLATION_POLICIES,
            f"The {{field}} must be one of {sorted(CHILD_CANCELLATION_POLICIES)}.",
        ),
        RetryPolicy: _kept_as_sent(converter, _RetryPolicyShape, "The {field} must be an object."),
        GroupPath: _group_path(converter),
        _PositiveCount: _check(
            lambda v: _is_int(v) and v >= 1, "The {field} must be an integer >= 1."
        ),
        _Backoff: _check(
            lambda v: (
                isinstance(v, list) and all(_int_between(0, MAX_ACTIVITY_SECONDS)(b) for b in v)
            ),
            f"The {{field}} must be a list of integers from 0 to {MAX_ACTIVITY_SECONDS}.",
        ),
        _Strings: _check(
            lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
            "The {field} must be a list of strings.",
        ),
        _GroupNumber: _check(_is_int, "The {field} must be an integer."),
    }
    for wire_type, hook in hooks.items():
        converter.register_structure_hook(wire_type, hook)
    configure_tagged_union(
        Command, converter, tag_generator=COMMAND_TYPES.__getitem__, tag_name="type"
    )


def _kept_as_sent(converter: Any, shape: type, not_object: str) -> Callable[[Any, Any], Any]:
    """A hook that checks an object against ``shape`` (errors keyed by its fields) and
    returns the object as sent, unknown keys included."""

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(not_object)
        converter.structure(value, shape)
        return value

    return hook


def _group_path(converter: Any) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _: Any) -> Any:
        if value is None:
            return None
        if not (value and isinstance(value, list) and all(isinstance(e, dict) for e in value)):
            raise ValueError("The parallel group path must be a non-empty list of objects.")
        converter.structure(value, list[_GroupPathEntry])
        return value

    return hook


# The wire types and the union are this module's own, so they join the one wire converter.
_converter = wire.converter
_register(_converter)


def _check_structure(raw: Any) -> None:
    """The 409 rules, over the whole list, before any field is looked at."""
    if not isinstance(raw, list) or not raw:
        raise InvalidCommandsError("commands must be a non-empty list.")
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise InvalidCommandsError(f"commands[{i}] must be an object with a string type.")
        kind = item["type"]
        if kind in TERMINAL and i != len(raw) - 1:
            raise InvalidCommandsError(
                f"commands[{i}] ({kind}) is terminal and must be the last command."
            )
        if kind not in IMPLEMENTED:
            raise InvalidCommandsError(
                f"commands[{i}]: command type {kind!r} is not supported by this server."
            )
        for refuses, why in UNSUPPORTED.get(kind, ()):
            if refuses(item):
                raise InvalidCommandsError(why)


def parse_commands(raw: Any) -> list[Command]:
    """Validate a whole command list; raise before anything is applied.

    Raises:
        InvalidCommandsError: structural problems (409 invalid_commands).
        ValidationFailedError: field-level problems (422 validation_failed).
    """
    _check_structure(raw)
    try:
        return _converter.structure(raw, list[Command])
    except Exception as exc:
        errors = wire.field_errors(exc, "commands")
        if not errors:
            raise
        raise ValidationFailedError(errors) from None
