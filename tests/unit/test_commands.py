"""parse_commands: the workflow-task command grammar, checked before anything is applied.

Contract: commands.md §1.1 (409 invalid_commands for structure, 422
validation_failed keyed commands.<i>.<field> for fields), §4.2 (parallel
metadata), §5.1, §5.4, §5.5. The same rules over HTTP are in
tests/http/test_worker_plane.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from dwtrio.errors import InvalidCommandsError, ValidationFailedError
from dwtrio.protocol.commands import (
    IMPLEMENTED,
    MAX_TIMER_SECONDS,
    CompleteWorkflow,
    FailWorkflow,
    OpenConditionWait,
    ScheduleActivity,
    StartTimer,
    parse_commands,
)

ARGS = {"codec": "avro", "blob": "wwHioz3/VYAiNwwCCgp3b3JsZAA="}


def activity(**extra: Any) -> dict[str, Any]:
    return {
        "type": "schedule_activity",
        "activity_type": "greet",
        "queue": "q",
        "arguments": ARGS,
        **extra,
    }


def field_errors(commands: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailedError) as info:
        parse_commands(commands)
    assert info.value.reason == "validation_failed"
    assert info.value.http_status == 422
    return info.value.errors


def structural(commands: Any) -> str:
    with pytest.raises(InvalidCommandsError) as info:
        parse_commands(commands)
    assert info.value.reason == "invalid_commands"
    assert info.value.http_status == 409
    return info.value.message


# --- structure (409 invalid_commands) ------------------------------------------------
@pytest.mark.parametrize("commands", [[], None, {}, "complete_workflow", 1])
def test_commands_must_be_a_non_empty_list(commands: Any) -> None:
    assert "non-empty list" in structural(commands)


@pytest.mark.parametrize(
    "item", ["schedule_activity", None, 3, [], {}, {"type": 7}, {"type": None}, {"kind": "x"}]
)
def test_every_command_is_an_object_with_a_string_type(item: Any) -> None:
    message = structural([activity(), item])
    assert "commands[1]" in message


@pytest.mark.parametrize("terminal", ["complete_workflow", "fail_workflow", "continue_as_new"])
def test_a_terminal_command_must_be_last(terminal: str) -> None:
    message = structural([{"type": terminal, "message": "m"}, activity()])
    assert "commands[0]" in message and "last" in message


def test_two_terminal_commands_are_refused() -> None:
    structural([{"type": "complete_workflow"}, {"type": "fail_workflow", "message": "m"}])


@pytest.mark.parametrize(
    "kind",
    [
        "start_service_operation",
        "cancel_selection_operation",
        "no_such_command",
        "",
    ],
)
def test_unknown_or_unimplemented_types_are_refused(kind: str) -> None:
    assert kind not in IMPLEMENTED
    message = structural([{"type": kind}])
    assert "not supported" in message and repr(kind) in message


def test_structural_errors_win_over_field_errors() -> None:
    """The whole list is checked: an unsupported type anywhere refuses it as a whole."""
    structural([activity(activity_type=""), {"type": "start_service_operation"}])


def test_durable_selection_is_refused() -> None:
    entry = {
        "parallel_group_id": "select:1:2",
        "parallel_group_kind": "activity",
        "parallel_group_base_sequence": 1,
        "parallel_group_size": 2,
        "parallel_group_index": 0,
        "parallel_group_mode": "select",
    }
    assert "select" in structural([activity(parallel_group_path=[entry])])


@pytest.mark.parametrize("key", ["worker_session", "cancellation_policy"])
def test_unsupported_activity_options_are_refused(key: str) -> None:
    structural([activity(**{key: "try_cancel"})])


# --- fields (422 validation_failed) --------------------------------------------------
@pytest.mark.parametrize("value", [None, "", "  ", 5])
def test_schedule_activity_needs_an_activity_type(value: Any) -> None:
    errors = field_errors([activity(activity_type=value)])
    assert list(errors) == ["commands.0.activity_type"]


def test_a_missing_activity_type_is_reported() -> None:
    raw = activity()
    del raw["activity_type"]
    assert list(field_errors([raw])) == ["commands.0.activity_type"]


@pytest.mark.parametrize("value", ["", 3, ["q"]])
def test_queue_must_be_a_non_empty_string(value: Any) -> None:
    assert list(field_errors([activity(queue=value)])) == ["commands.0.queue"]


@pytest.mark.parametrize(
    "key",
    [
        "start_to_close_timeout",
        "schedule_to_start_timeout",
        "schedule_to_close_timeout",
        "heartbeat_timeout",
    ],
)
@pytest.mark.parametrize("value", [0, -1, 1.5, "10", True])
def test_activity_timeouts_are_ints_of_at_least_one(key: str, value: Any) -> None:
    assert list(field_errors([activity(**{key: value})])) == [f"commands.0.{key}"]


@pytest.mark.parametrize(
    ("policy", "path"),
    [
        ("nope", "retry_policy"),
        ({"max_attempts": 0}, "retry_policy.max_attempts"),
        ({"max_attempts": "3"}, "retry_policy.max_attempts"),
        ({"backoff_seconds": [1, -1]}, "retry_policy.backoff_seconds"),
        ({"backoff_seconds": 5}, "retry_policy.backoff_seconds"),
        (
            {"non_retryable_error_types": ["ValueError", 3]},
            "retry_policy.non_retryable_error_types",
        ),
        ({"non_retryable_error_types": "ValueError"}, "retry_policy.non_retryable_error_types"),
    ],
)
def test_retry_policy_fields(policy: Any, path: str) -> None:
    assert list(field_errors([activity(retry_policy=policy)])) == [f"commands.0.{path}"]


def test_fail_workflow_needs_a_message() -> None:
    assert list(field_errors([{"type": "fail_workflow"}])) == ["commands.0.message"]
    errors = field_errors([{"type": "fail_workflow", "message": "m", "exception": "boom"}])
    assert list(errors) == ["commands.0.exception"]


def test_parallel_path_must_be_a_list_of_objects() -> None:
    for bad in ([], "x", [1]):
        errors = field_errors([activity(parallel_group_path=bad)])
        assert list(errors) == ["commands.0.parallel_group_path"]


def test_parallel_path_entries_need_int_sequences() -> None:
    entry = {"parallel_group_base_sequence": "1", "parallel_group_size": 2}
    errors = field_errors([activity(parallel_group_path=[entry])])
    assert set(errors) == {
        "commands.0.parallel_group_path.0.parallel_group_base_sequence",
        "commands.0.parallel_group_path.0.parallel_group_index",
    }


def test_field_errors_of_every_command_are_collected_and_keyed_by_index() -> None:
    errors = field_errors(
        [
            activity(),
            activity(activity_type="", start_to_close_timeout=0),
            {"type": "fail_workflow"},
        ]
    )
    assert set(errors) == {
        "commands.1.activity_type",
        "commands.1.start_to_close_timeout",
        "commands.2.message",
    }
    assert all(isinstance(m, list) and m and isinstance(m[0], str) for m in errors.values())


# --- accepted lists -----------------------------------------------------------------
def test_a_schedule_activity_is_parsed_with_timeouts_policy_and_parallel_fields() -> None:
    entry = {
        "parallel_group_id": "parallel-activities:1:2",
        "parallel_group_kind": "activity",
        "parallel_group_base_sequence": 1,
        "parallel_group_size": 2,
        "parallel_group_index": 1,
    }
    policy = {"max_attempts": 3, "backoff_seconds": [0, 1], "non_retryable_error_types": ["E"]}
    raw = activity(
        retry_policy=policy,
        start_to_close_timeout=30,
        heartbeat_timeout=None,
        observability_context={"ignored": True},
        unknown_extra="ignored",
        **entry,
        parallel_group_path=[entry],
    )
    [command] = parse_commands([raw])
    assert isinstance(command, ScheduleActivity)
    assert (command.activity_type, command.queue, command.arguments) == ("greet", "q", ARGS)
    assert command.retry_policy == policy
    assert command.timeouts == {"start_to_close_timeout": 30}
    assert command.parallel == {**entry, "parallel_group_path": [entry]}


def test_a_retry_policy_is_kept_as_sent() -> None:
    """Checked field by field, but stored and handed back to workers with every key."""
    policy = {"max_attempts": 2, "initial_interval_seconds": 1.5, "backoff_coefficient": 2}
    [command] = parse_commands([activity(retry_policy=policy)])
    assert isinstance(command, ScheduleActivity) and command.retry_policy == policy


def test_explicit_nulls_in_group_fields_are_kept_apart_from_absent_ones() -> None:
    [command] = parse_commands([activity(parallel_group_id=None, parallel_group_path=None)])
    assert isinstance(command, ScheduleActivity)
    assert command.parallel == {"parallel_group_id": None, "parallel_group_path": None}


def test_queue_and_arguments_are_optional() -> None:
    [command] = parse_commands([{"type": "schedule_activity", "activity_type": "greet"}])
    assert isinstance(command, ScheduleActivity)
    assert command.queue is None and command.arguments is None
    assert command.retry_policy is None and command.timeouts == {} and command.parallel == {}


def test_a_terminal_command_after_non_terminal_ones() -> None:
    commands = parse_commands(
        [activity(), activity(activity_type="other"), {"type": "complete_workflow", "result": "x"}]
    )
    assert [type(c) for c in commands] == [ScheduleActivity, ScheduleActivity, CompleteWorkflow]
    assert commands[2] == CompleteWorkflow(result="x")


def test_complete_workflow_without_result_is_none() -> None:
    assert parse_commands([{"type": "complete_workflow"}]) == [CompleteWorkflow(result=None)]


def test_fail_workflow_fields() -> None:
    [command] = parse_commands(
        [
            {
                "type": "fail_workflow",
                "message": "boom",
                "exception_type": "ValueError",
                "exception_class": "builtins.ValueError",
                "exception": {"type": "ValueError", "message": "boom"},
                "non_retryable": True,
                "code": 7,
                "stack_trace": "Traceback",
                "failed_step_sequence": 2,
                "not_kept": "x",
            }
        ]
    )
    assert isinstance(command, FailWorkflow)
    assert (command.message, command.exception_type, command.exception_class) == (
        "boom",
        "ValueError",
        "builtins.ValueError",
    )
    assert command.exception == {"type": "ValueError", "message": "boom"}
    assert command.non_retryable is True
    assert command.details == {"failed_step_sequence": 2, "code": 7, "stack_trace": "Traceback"}


def test_fail_workflow_minimal() -> None:
    [command] = parse_commands([{"type": "fail_workflow", "message": "m", "exception_type": 3}])
    assert command == FailWorkflow(message="m")
    assert isinstance(command, FailWorkflow)
    assert command.exception_type is None and command.exception is None
    assert command.non_retryable is False and command.details == {}


def test_timer_and_condition_wait_fields() -> None:
    timer, wait = parse_commands(
        [
            {"type": "start_timer", "delay_seconds": 0},
            {
                "type": "open_condition_wait",
                "condition_key": "k",
                "condition_definition_fingerprint": "sha256:f",
                "timeout_seconds": 30,
            },
        ]
    )
    assert timer == StartTimer(delay_seconds=0)
    assert isinstance(timer, StartTimer) and timer.parallel == {}
    assert wait == OpenConditionWait(
        condition_key="k", condition_definition_fingerprint="sha256:f", timeout_seconds=30
    )
    assert parse_commands([{"type": "open_condition_wait"}]) == [
        OpenConditionWait(
            condition_key=None, condition_definition_fingerprint=None, timeout_seconds=None
        )
    ]
    errors = field_errors(
        [
            {"type": "start_timer", "delay_seconds": MAX_TIMER_SECONDS + 1},
            {"type": "open_condition_wait", "condition_key": 7, "timeout_seconds": True},
        ]
    )
    assert set(errors) == {
        "commands.0.delay_seconds",
        "commands.1.condition_key",
        "commands.1.timeout_seconds",
    }
    grouped = {"parallel_group_base_sequence": 1, "parallel_group_index": 0}
    assert "parallel" in structural([{"type": "open_condition_wait", **grouped}])


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (
            {"type": "start_timer", "delay_seconds": 1, "parallel_group_base_sequence": 1},
            "parallel_group_size",
        ),
        (
            {"type": "schedule_activity", "activity_type": "a", "start_to_close_timeout": 2**40},
            "start_to_close_timeout",
        ),
        (
            {
                "type": "schedule_activity",
                "activity_type": "a",
                "retry_policy": {"backoff_seconds": [10**13]},
            },
            "retry_policy.backoff_seconds",
        ),
    ],
)
def test_values_that_would_break_later_are_refused_up_front(
    command: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailedError) as info:
        parse_commands([command])
    assert f"commands.0.{field}" in info.value.errors


def test_messages_name_their_field() -> None:
    errors = field_errors(
        [
            activity(queue=" ", heartbeat_timeout=0, retry_policy={"max_attempts": 0}),
            {"type": "start_child_workflow", "workflow_type": "w", "parent_close_policy": "x"},
            {
                "type": "record_version_marker",
                "change_id": "c",
                "version": 3,
                "min_supported": 1,
                "max_supported": 2,
            },
        ]
    )
    assert errors == {
        "commands.0.queue": ["The queue must be a non-empty string."],
        "commands.0.retry_policy.max_attempts": ["The max attempts must be an integer >= 1."],
        "commands.0.heartbeat_timeout": [
            f"The heartbeat timeout must be an integer from 1 to {10 * 365 * 24 * 3600}."
        ],
        "commands.1.parent_close_policy": [
            "The parent close policy must be one of "
            "['abandon', 'request_cancel', 'request_cancellation', 'terminate']."
        ],
        "commands.2.version": ["The version must lie between min_supported and max_supported."],
    }
