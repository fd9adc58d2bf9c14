"""Request models of the worker plane (``/api/worker/**``).

Unknown keys are ignored: SDKs add fields in newer protocol minors.
"""

from __future__ import annotations

from typing import Any

import attrs

from dwtrio.protocol.validators import between, matches, max_length, not_blank, one_of
from dwtrio.protocol.workflows import no_nul


def _id_field() -> Any:
    return attrs.field(validator=[not_blank, max_length(191)])


@attrs.frozen(kw_only=True)
class RegisterWorker:
    worker_id: str = _id_field()
    task_queue: str = attrs.field(validator=[not_blank, max_length(255)])
    runtime: str = attrs.field(default="external", validator=max_length(64))
    sdk_version: str | None = attrs.field(default=None, validator=max_length(255))
    build_id: str | None = attrs.field(default=None, validator=max_length(255))
    supported_workflow_types: list[str] = attrs.field(factory=list)
    supported_activity_types: list[str] = attrs.field(factory=list)
    workflow_definition_fingerprints: dict[str, Any] = attrs.field(factory=dict)
    workflow_command_contracts: dict[str, Any] | None = None
    capabilities: list[str] = attrs.field(factory=list)
    capability_manifest: dict[str, Any] | None = None
    task_slots: dict[str, Any] | None = None
    process_metrics: dict[str, Any] | None = None
    max_concurrent_workflow_tasks: int = attrs.field(default=100, validator=between(1))
    max_concurrent_activity_tasks: int = attrs.field(default=100, validator=between(1))
    max_concurrent_worker_sessions: int | None = None


@attrs.frozen(kw_only=True)
class FencedDeregistration:
    """``POST /api/worker/registrations/{worker_id}/deregister``: the token the
    registration to remove was answered with."""

    registration_token: str = attrs.field(
        validator=matches("[a-f0-9]{32}", "must be 32 lowercase hexadecimal characters")
    )


@attrs.frozen(kw_only=True)
class WorkerHeartbeat:
    worker_id: str = _id_field()
    task_slots: dict[str, Any] | None = None
    process_metrics: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class PollTasks:
    worker_id: str = _id_field()
    task_queue: str = attrs.field(validator=[not_blank, max_length(255)])
    poll_request_id: str | None = attrs.field(default=None, validator=max_length(191))
    timeout_seconds: int | None = attrs.field(default=None, validator=between(0, 60))
    history_page_size: int | None = attrs.field(default=None, validator=between(1))
    build_id: str | None = None


@attrs.frozen(kw_only=True)
class WorkflowTaskLease:
    lease_owner: str = _id_field()
    workflow_task_attempt: int = attrs.field(validator=between(1))


@attrs.frozen(kw_only=True)
class CompleteWorkflowTask(WorkflowTaskLease):
    #: Checked by ``parse_commands`` (409 invalid_commands for a non-list or a non-object).
    commands: Any = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class FailWorkflowTask(WorkflowTaskLease):
    failure: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class HistoryPage(WorkflowTaskLease):
    next_history_page_token: str = attrs.field(validator=not_blank)


@attrs.frozen(kw_only=True)
class ActivityAttemptLease:
    activity_attempt_id: str = _id_field()
    lease_owner: str = _id_field()


@attrs.frozen(kw_only=True)
class CompleteActivityTask(ActivityAttemptLease):
    result: Any = None


@attrs.frozen(kw_only=True)
class FailActivityTask(ActivityAttemptLease):
    failure: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class HeartbeatActivityTask(ActivityAttemptLease):
    details: Any = None


# --- the worker roster (control plane, control-plane.md §10) ---------------------------
#: What ``GET /api/workers?status=`` accepts: a stored status, or ``stale`` (computed).
WORKER_STATUS_FILTERS = ("active", "draining", "stale", "deregistered")


@attrs.frozen(kw_only=True)
class ListWorkersQuery:
    """``GET /api/workers`` query parameters."""

    task_queue: str | None = attrs.field(default=None, validator=[max_length(255), no_nul])
    status: str | None = attrs.field(default=None, validator=one_of(WORKER_STATUS_FILTERS))
