"""Build-id rollouts: the request model of drain, resume and promote, and what a task
queue path segment may be (schedules-and-admission.md §3, control-plane.md §9).

Pure: no I/O. Unknown body keys are ignored, as on every control-plane route.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from dwtrio.protocol.validators import max_length

#: The longest build id or task queue a worker may register (``protocol.worker``).
BUILD_ID_MAX_LENGTH: Final = 255
TASK_QUEUE_MAX_LENGTH: Final = 255
#: ``build_id_rollouts.build_id`` and ``worker_registrations.build_id`` of the unversioned cohort.
UNVERSIONED: Final = ""


def normalize_build_id(value: Any) -> Any:
    """Trimmed; blank (or null) is None, the unversioned cohort."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


@attrs.frozen(kw_only=True)
class BuildIdRolloutChange:
    """``POST /api/task-queues/{tq}/build-ids/drain|resume|promote``.

    ``build_id`` must be present (no default, so a body without it is a 422), but
    may be null: the unversioned cohort, which a blank string names too.
    """

    build_id: str | None = attrs.field(
        converter=normalize_build_id, validator=max_length(BUILD_ID_MAX_LENGTH)
    )


def task_queue_errors(name: str) -> list[str]:
    """Why a path segment cannot name a task queue (empty when it can): workers and
    starts never use a name longer than 255 characters or holding NUL."""
    if "\x00" in name:
        return ["The task queue may not contain NUL characters."]
    if len(name) > TASK_QUEUE_MAX_LENGTH:
        return [f"The task queue may not be greater than {TASK_QUEUE_MAX_LENGTH} characters."]
    return []
