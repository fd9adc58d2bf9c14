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


Command = ScheduleActivity | CompleteWorkflow | FailWorkflow


class _Errors:
    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.fields.setdefault(path, []).append(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parallel(raw: dict[str, Any], path: str, errors: _Errors) -> dict[str, Any]:
    fields = {k: raw[k] for k in PARALLEL_FIELDS if k in raw}
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
        for key in ("parallel_group_base_sequence", "parallel_group_size", "parallel_group_index"):
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
            if not isinstance(backoff, list) or not all(_is_int(b) and b >= 0 for b in backoff):
                errors.add(
                    f"{path}.retry_policy.backoff_seconds",
                    "The backoff seconds must be a list of integers >= 0.",
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
        if not (_is_int(raw[key]) and raw[key] >= 1):
            errors.add(f"{path}.{key}", f"The {key.replace('_', ' ')} must be an integer >= 1.")
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


PARSERS: dict[str, Callable[[dict[str, Any], str, _Errors], Command]] = {
    "schedule_activity": _schedule_activity,
    "complete_workflow": _complete_workflow,
    "fail_workflow": _fail_workflow,
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
