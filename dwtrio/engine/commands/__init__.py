"""Applying workflow-task commands: one handler per command type.

A completion (``workflow_tasks.complete``) fences the task, locks the run,
parses the whole command list and then calls ``HANDLERS[type(command)]`` for
each command in order with one shared :class:`Completion`. Handlers append
history events, allocate step sequences, create side rows (activities,
timers, children, ...) and may close the run; the completion then appends the
events in one statement and settles or closes the run. A handler never
commits, publishes wakes or answers HTTP itself.

To add a command: a parser in ``protocol/commands.py`` (its ``PARSERS``) and a
handler here (its ``HANDLERS``); discovery advertises exactly ``PARSERS``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dwtrio.engine.commands.activities import apply_schedule_activity
from dwtrio.engine.commands.context import Completion
from dwtrio.engine.commands.terminal import apply_complete_workflow, apply_fail_workflow
from dwtrio.protocol.commands import CompleteWorkflow, FailWorkflow, ScheduleActivity

Handler = Callable[[Completion, Any, int], Awaitable[None]]

HANDLERS: dict[type, Handler] = {
    ScheduleActivity: apply_schedule_activity,
    CompleteWorkflow: apply_complete_workflow,
    FailWorkflow: apply_fail_workflow,
}

__all__ = ["HANDLERS", "Completion", "Handler"]
