"""Applying workflow-task commands: one handler per command type.

A completion (``workflow_tasks.complete``) fences the task, locks the run,
parses the whole command list and then calls ``HANDLERS[type(command)]`` for
each command in order with one shared :class:`Completion`. Handlers append
history events, allocate step sequences, create side rows (activities,
timers, children, ...) and may close the run; the completion then appends the
events in one statement and settles or closes the run. A handler never
commits, publishes wakes or answers HTTP itself.

To add a command: a class in ``protocol/commands.py`` (its fields' wire types and
its tag in ``COMMAND_TYPES``) and a handler here (its ``HANDLERS``); discovery
advertises exactly ``COMMAND_TYPES``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dwtrio.engine.commands.activities import apply_schedule_activity
from dwtrio.engine.commands.children import apply_start_child_workflow
from dwtrio.engine.commands.conditions import apply_open_condition_wait
from dwtrio.engine.commands.context import Completion
from dwtrio.engine.commands.continue_as_new import apply_continue_as_new
from dwtrio.engine.commands.markers import (
    apply_record_side_effect,
    apply_record_version_marker,
    apply_upsert_memo,
    apply_upsert_search_attributes,
)
from dwtrio.engine.commands.terminal import apply_complete_workflow, apply_fail_workflow
from dwtrio.engine.commands.timers import apply_start_timer
from dwtrio.engine.commands.updates import apply_complete_update, apply_fail_update
from dwtrio.protocol.commands import (
    CompleteUpdate,
    CompleteWorkflow,
    ContinueAsNew,
    FailUpdate,
    FailWorkflow,
    OpenConditionWait,
    RecordSideEffect,
    RecordVersionMarker,
    ScheduleActivity,
    StartChildWorkflow,
    StartTimer,
    UpsertMemo,
    UpsertSearchAttributes,
)

Handler = Callable[[Completion, Any, int], Awaitable[None]]

HANDLERS: dict[type, Handler] = {
    ScheduleActivity: apply_schedule_activity,
    CompleteWorkflow: apply_complete_workflow,
    FailWorkflow: apply_fail_workflow,
    StartTimer: apply_start_timer,
    OpenConditionWait: apply_open_condition_wait,
    RecordSideEffect: apply_record_side_effect,
    RecordVersionMarker: apply_record_version_marker,
    UpsertSearchAttributes: apply_upsert_search_attributes,
    UpsertMemo: apply_upsert_memo,
    ContinueAsNew: apply_continue_as_new,
    StartChildWorkflow: apply_start_child_workflow,
    CompleteUpdate: apply_complete_update,
    FailUpdate: apply_fail_update,
}

__all__ = ["HANDLERS", "Completion", "Handler"]
