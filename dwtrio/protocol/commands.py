"""Workflow-task commands: the grammar the server accepts.

``parse_commands`` turns the raw ``commands`` list of a completion into typed
commands, checking the whole list before anything is applied: a non-empty
list of objects with a string ``type``, at most one terminal command and only
last, known and implemented types, and field types. Field errors are a 422
``validation_failed`` keyed ``commands.<i>.<field>``; structural errors a 409
``invalid_commands``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from dwtrio.errors import InvalidCommandsError, ValidationFailedError

TERMINAL = frozenset({"complete_workflow", "fail_workflow", "continue_as_new"})
PARALLEL_FIELDS = (
    "parallel_group_id",
    "parallel_group_kind",
    "parallel_group_base_sequence",
    "parallel_group_size",
    "parallel_group_index",
    "parallel_group_path",
)
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


@attrs.frozen(kw_only=True)
class ScheduleActivity:
    activity_type: str
    queue: str | None
    arguments: Any
    retry_policy: dict[str, Any] | None
    timeouts: dict[str, int]
    parallel: dict[str, Any]


@attrs.frozen(kw_only=True)
class CompleteWorkflow:
    result: Any


@attrs.frozen(kw_only=True)
class FailWorkflow:
    message: str
    exception_type: str | None
    exception_class: str | None
    exception: dict[str, Any] | None
    non_retryable: bool
    details: dict[str, Any]


@attrs.frozen(kw_only=True)
class RecordSideEffect:
    #: The blob string (or inline envelope) as sent; validated by the handler.
    result: Any


@attrs.frozen(kw_only=True)
class RecordVersionMarker:
    change_id: str
    version: int
    min_supported: int
    max_supported: int


@attrs.frozen(kw_only=True)
class UpsertSearchAttributes:
    #: As sent: a ``None`` value deletes the key.
    attributes: dict[str, Any]


@attrs.frozen(kw_only=True)
class StartTimer:
    delay_seconds: int
    parallel: dict[str, Any]


@attrs.frozen(kw_only=True)
class OpenConditionWait:
    #: Key and fingerprint exactly as sent: the SDK compares them on replay.
    condition_key: str | None
    condition_definition_fingerprint: str | None
    timeout_seconds: int | None


@attrs.frozen(kw_only=True)
class UpsertMemo:
    #: The envelope as sent (an Avro map; ``None`` values delete keys); checked by the handler.
    entries: Any


@attrs.frozen(kw_only=True)
class ContinueAsNew:
    #: None keeps the run's type / queue.
    workflow_type: str | None
    queue: str | None
    arguments: Any


@attrs.frozen(kw_only=True)
class StartChildWorkflow:
    workflow_type: str
    queue: str | None
    arguments: Any
    #: As sent (None when the command had none, which means ``abandon``).
    parent_close_policy: str | None
    cancellation_policy: str | None
    execution_timeout_seconds: int | None
    run_timeout_seconds: int | None
    parallel: dict[str, Any]


@attrs.frozen(kw_only=True)
class CompleteUpdate:
    update_id: str
    result: Any


@attrs.frozen(kw_only=True)
class FailUpdate:
    update_id: str
    message: str
    exception_type: str | None
    exception_class: str | None
    non_retryable: bool


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


class _Errors:
    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.fields.setdefault(path, []).append(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parallel(raw: dict[str, Any], path: str, errors: _Errors) -> dict[str, Any]:
    fields = {k: raw[k] for k in PARALLEL_FIELDS if k in raw}
    flat = ("parallel_group_base_sequence", "parallel_group_size", "parallel_group_index")
    if any(k in fields for k in flat):
        # The wake rule reads all three; a partial group would fail when its step settles.
        for key in flat:
            if not (
                _is_int(fields.get(key))
                and fields[key] >= (1 if key != "parallel_group_index" else 0)
            ):
                errors.add(
                    f"{path}.{key}",
                    f"The {key} must be an integer (set with the other group fields).",
                )
    entries = fields.get("parallel_group_path")
    if entries is None:
        return fields
    if (
        not isinstance(entries, list)
        or not entries
        or not all(isinstance(e, dict) for e in entries)
    ):
        errors.add(
            f"{path}.parallel_group_path",
            "The parallel group path must be a non-empty list of objects.",
        )
        return fields
    for i, entry in enumerate(entries):
        for key in flat:
            if not _is_int(entry.get(key)):
                errors.add(
                    f"{path}.parallel_group_path.{i}.{key}", f"The {key} must be an integer."
                )
        if entry.get("parallel_group_mode") == "select":
            raise InvalidCommandsError(
                "Durable selection (parallel_group_mode: select) is not supported."
            )
    return fields


def _schedule_activity(raw: dict[str, Any], path: str, errors: _Errors) -> ScheduleActivity:
    activity_type = raw.get("activity_type")
    if not isinstance(activity_type, str) or not activity_type.strip():
        errors.add(f"{path}.activity_type", "The activity type field is required.")
    queue = raw.get("queue")
    if queue is not None and (not isinstance(queue, str) or not queue.strip()):
        errors.add(f"{path}.queue", "The queue must be a non-empty string.")
    arguments = raw.get("arguments")
    retry = raw.get("retry_policy")
    if retry is not None:
        if not isinstance(retry, dict):
            errors.add(f"{path}.retry_policy", "The retry policy must be an object.")
        else:
            if "max_attempts" in retry and not (
                _is_int(retry["max_attempts"]) and retry["max_attempts"] >= 1
            ):
                errors.add(
                    f"{path}.retry_policy.max_attempts", "The max attempts must be an integer >= 1."
                )
            backoff = retry.get("backoff_seconds", [])
            if not isinstance(backoff, list) or not all(
                _is_int(b) and 0 <= b <= MAX_ACTIVITY_SECONDS for b in backoff
            ):
                errors.add(
                    f"{path}.retry_policy.backoff_seconds",
                    f"The backoff seconds must be a list of integers from 0 to {MAX_ACTIVITY_SECONDS}.",
                )
            types = retry.get("non_retryable_error_types", [])
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                errors.add(
                    f"{path}.retry_policy.non_retryable_error_types",
                    "The non-retryable error types must be a list of strings.",
                )
    timeouts: dict[str, int] = {}
    for key in ACTIVITY_TIMEOUTS:
        if raw.get(key) is None:
            continue
        if not (_is_int(raw[key]) and 1 <= raw[key] <= MAX_ACTIVITY_SECONDS):
            errors.add(
                f"{path}.{key}",
                f"The {key.replace('_', ' ')} must be an integer from 1 to {MAX_ACTIVITY_SECONDS}.",
            )
        else:
            timeouts[key] = raw[key]
    if "worker_session" in raw or "cancellation_policy" in raw:
        raise InvalidCommandsError(
            "worker_session and cancellation_policy are not supported by this server."
        )
    return ScheduleActivity(
        activity_type=activity_type if isinstance(activity_type, str) else "",
        queue=queue,
        arguments=arguments,
        retry_policy=retry if isinstance(retry, dict) else None,
        timeouts=timeouts,
        parallel=_parallel(raw, path, errors),
    )


def _complete_workflow(raw: dict[str, Any], path: str, errors: _Errors) -> CompleteWorkflow:
    return CompleteWorkflow(result=raw.get("result"))


def _fail_workflow(raw: dict[str, Any], path: str, errors: _Errors) -> FailWorkflow:
    message = raw.get("message")
    if not isinstance(message, str):
        errors.add(f"{path}.message", "The message field is required.")
    exception = raw.get("exception")
    if exception is not None and not isinstance(exception, dict):
        errors.add(f"{path}.exception", "The exception must be an object.")
    details: dict[str, Any] = {
        k: raw[k]
        for k in ("failed_step_sequence", "failed_activity_execution_id", "code", "stack_trace")
        if k in raw
    }
    return FailWorkflow(
        message=message if isinstance(message, str) else "",
        exception_type=raw.get("exception_type")
        if isinstance(raw.get("exception_type"), str)
        else None,
        exception_class=raw.get("exception_class")
        if isinstance(raw.get("exception_class"), str)
        else None,
        exception=exception if isinstance(exception, dict) else None,
        non_retryable=bool(raw.get("non_retryable", False)),
        details=details,
    )


def _record_side_effect(raw: dict[str, Any], path: str, errors: _Errors) -> RecordSideEffect:
    result = raw.get("result")
    if not isinstance(result, str | dict):
        errors.add(f"{path}.result", "The result must be a payload blob string or an envelope.")
    return RecordSideEffect(result=result)


def _record_version_marker(raw: dict[str, Any], path: str, errors: _Errors) -> RecordVersionMarker:
    change_id = raw.get("change_id")
    if not isinstance(change_id, str) or not change_id.strip():
        errors.add(f"{path}.change_id", "The change id field is required.")
    numbers: dict[str, int] = {}
    for key in ("version", "min_supported", "max_supported"):
        if _is_int(raw.get(key)):
            numbers[key] = raw[key]
        else:
            errors.add(f"{path}.{key}", f"The {key.replace('_', ' ')} must be an integer.")
    if len(numbers) == 3 and not (
        numbers["min_supported"] <= numbers["version"] <= numbers["max_supported"]
    ):
        errors.add(
            f"{path}.version", "The version must lie between min_supported and max_supported."
        )
    return RecordVersionMarker(
        change_id=change_id if isinstance(change_id, str) else "",
        version=numbers.get("version", 0),
        min_supported=numbers.get("min_supported", 0),
        max_supported=numbers.get("max_supported", 0),
    )


def _upsert_search_attributes(
    raw: dict[str, Any], path: str, errors: _Errors
) -> UpsertSearchAttributes:
    attributes = raw.get("attributes")
    if not isinstance(attributes, dict):
        errors.add(f"{path}.attributes", "The attributes must be an object.")
        attributes = {}
    return UpsertSearchAttributes(attributes=attributes)


def _seconds(raw: dict[str, Any], key: str, path: str, errors: _Errors) -> int | None:
    """An optional whole number of seconds in [0, MAX_TIMER_SECONDS]."""
    value = raw.get(key)
    if value is None:
        return None
    if not (_is_int(value) and 0 <= value <= MAX_TIMER_SECONDS):
        errors.add(
            f"{path}.{key}",
            f"The {key.replace('_', ' ')} must be an integer between 0 and {MAX_TIMER_SECONDS}.",
        )
        return None
    return int(value)


def _start_timer(raw: dict[str, Any], path: str, errors: _Errors) -> StartTimer:
    if raw.get("delay_seconds") is None:
        errors.add(f"{path}.delay_seconds", "The delay seconds field is required.")
    delay = _seconds(raw, "delay_seconds", path, errors)
    return StartTimer(delay_seconds=delay or 0, parallel=_parallel(raw, path, errors))


def _open_condition_wait(raw: dict[str, Any], path: str, errors: _Errors) -> OpenConditionWait:
    if any(k in raw for k in PARALLEL_FIELDS):
        # The SDK groups conditions only in durable selections (ctx.select).
        raise InvalidCommandsError("Condition waits in parallel groups are not supported.")
    strings: dict[str, str | None] = {}
    for key in ("condition_key", "condition_definition_fingerprint"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            errors.add(f"{path}.{key}", f"The {key.replace('_', ' ')} must be a string.")
        strings[key] = value if isinstance(value, str) else None
    return OpenConditionWait(
        condition_key=strings["condition_key"],
        condition_definition_fingerprint=strings["condition_definition_fingerprint"],
        timeout_seconds=_seconds(raw, "timeout_seconds", path, errors),
    )


def _upsert_memo(raw: dict[str, Any], path: str, errors: _Errors) -> UpsertMemo:
    entries = raw.get("entries")
    if not isinstance(entries, dict):
        errors.add(f"{path}.entries", "The entries must be a payload envelope.")
    return UpsertMemo(entries=entries)


def _optional_name(raw: dict[str, Any], key: str, path: str, errors: _Errors) -> str | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        errors.add(f"{path}.{key}", f"The {key.replace('_', ' ')} must be a non-empty string.")
        return None
    return value


def _continue_as_new(raw: dict[str, Any], path: str, errors: _Errors) -> ContinueAsNew:
    return ContinueAsNew(
        workflow_type=_optional_name(raw, "workflow_type", path, errors),
        queue=_optional_name(raw, "queue", path, errors),
        arguments=raw.get("arguments"),
    )


def _start_child_workflow(raw: dict[str, Any], path: str, errors: _Errors) -> StartChildWorkflow:
    workflow_type = raw.get("workflow_type")
    if not isinstance(workflow_type, str) or not workflow_type.strip():
        errors.add(f"{path}.workflow_type", "The workflow type field is required.")
    if raw.get("retry_policy") is not None:
        raise InvalidCommandsError(
            "Child workflow retry policies are not supported by this server."
        )
    policies: dict[str, str | None] = {}
    for key, allowed in (
        ("parent_close_policy", PARENT_CLOSE_POLICIES),
        ("cancellation_policy", CHILD_CANCELLATION_POLICIES),
    ):
        value = raw.get(key)
        if value is not None and value not in allowed:
            errors.add(
                f"{path}.{key}", f"The {key.replace('_', ' ')} must be one of {sorted(allowed)}."
            )
        policies[key] = value if value in allowed else None
    timeouts: dict[str, int | None] = {}
    for key in ("execution_timeout_seconds", "run_timeout_seconds"):
        value = raw.get(key)
        if value is not None and not (_is_int(value) and 1 <= value <= MAX_TIMEOUT_SECONDS):
            errors.add(f"{path}.{key}", f"The {key.replace('_', ' ')} must be an integer >= 1.")
            value = None
        timeouts[key] = value
    return StartChildWorkflow(
        workflow_type=workflow_type if isinstance(workflow_type, str) else "",
        queue=_optional_name(raw, "queue", path, errors),
        arguments=raw.get("arguments"),
        parent_close_policy=policies["parent_close_policy"],
        cancellation_policy=policies["cancellation_policy"],
        execution_timeout_seconds=timeouts["execution_timeout_seconds"],
        run_timeout_seconds=timeouts["run_timeout_seconds"],
        parallel=_parallel(raw, path, errors),
    )


def _update_id(raw: dict[str, Any], path: str, errors: _Errors) -> str:
    update_id = raw.get("update_id")
    if not isinstance(update_id, str) or not update_id.strip():
        errors.add(f"{path}.update_id", "The update id field is required.")
        return ""
    return update_id


def _complete_update(raw: dict[str, Any], path: str, errors: _Errors) -> CompleteUpdate:
    return CompleteUpdate(update_id=_update_id(raw, path, errors), result=raw.get("result"))


def _fail_update(raw: dict[str, Any], path: str, errors: _Errors) -> FailUpdate:
    message = raw.get("message")
    if not isinstance(message, str):
        errors.add(f"{path}.message", "The message field is required.")
    exception_type = raw.get("exception_type")
    exception_class = raw.get("exception_class")
    return FailUpdate(
        update_id=_update_id(raw, path, errors),
        message=message if isinstance(message, str) else "",
        exception_type=exception_type if isinstance(exception_type, str) else None,
        exception_class=exception_class if isinstance(exception_class, str) else None,
        non_retryable=raw.get("non_retryable") is True,
    )


PARSERS: dict[str, Callable[[dict[str, Any], str, _Errors], Command]] = {
    "schedule_activity": _schedule_activity,
    "complete_workflow": _complete_workflow,
    "fail_workflow": _fail_workflow,
    "record_side_effect": _record_side_effect,
    "record_version_marker": _record_version_marker,
    "upsert_search_attributes": _upsert_search_attributes,
    "start_timer": _start_timer,
    "open_condition_wait": _open_condition_wait,
    "upsert_memo": _upsert_memo,
    "continue_as_new": _continue_as_new,
    "start_child_workflow": _start_child_workflow,
    "complete_update": _complete_update,
    "fail_update": _fail_update,
}

#: Command types the engine applies (advertised in discovery).
IMPLEMENTED = tuple(PARSERS)


def parse_commands(raw: Any) -> list[Command]:
    """Validate a whole command list; raise before anything is applied.

    Raises:
        InvalidCommandsError: structural problems (409 invalid_commands).
        ValidationFailedError: field-level problems (422 validation_failed).
    """
    if not isinstance(raw, list) or not raw:
        raise InvalidCommandsError("commands must be a non-empty list.")
    errors = _Errors()
    commands: list[Command] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise InvalidCommandsError(f"commands[{i}] must be an object with a string type.")
        kind = item["type"]
        if kind in TERMINAL and i != len(raw) - 1:
            raise InvalidCommandsError(
                f"commands[{i}] ({kind}) is terminal and must be the last command."
            )
        parser = PARSERS.get(kind)
        if parser is None:
            raise InvalidCommandsError(
                f"commands[{i}]: command type {kind!r} is not supported by this server."
            )
        commands.append(parser(item, f"commands.{i}", errors))
    if errors.fields:
        raise ValidationFailedError(errors.fields)
    return commands
