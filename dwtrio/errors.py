"""The dwtrio error tree.

Every error the server can answer with is a `DwtrioError` subclass carrying a
stable ``reason`` (the wire's snake_case code) and an ``http_status``. Extra
wire fields travel in ``fields``. The mapping to the HTTP envelope happens in
exactly one place, ``dwtrio/http/envelope.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class DwtrioError(Exception):
    """Something went wrong in dwtrio."""

    reason: ClassVar[str] = "server_error"
    http_status: ClassVar[int] = 500
    #: Whether the answer ends the connection (a body the gates refused unread, or
    #: framing the server will not trust for the next request).
    closes_connection: ClassVar[bool] = False

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        self.message = message or (self.__doc__ or self.reason).strip().splitlines()[0]
        self.fields: dict[str, Any] = fields
        super().__init__(self.message)


class SettingsError(DwtrioError):
    """The configuration is invalid."""


# --- infrastructure ------------------------------------------------------------------
#: What a 503 backend_unavailable asks clients to wait before trying again.
RETRY_AFTER_S = 1


class StoreUnavailableError(DwtrioError):
    """The database is unreachable."""

    reason = "backend_unavailable"
    http_status = 503
    #: The failure hit a write whose outcome is unknown (it may have committed).
    maybe_applied: bool = False

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        fields.setdefault("retryable", True)
        fields.setdefault("retry_after_seconds", RETRY_AFTER_S)
        super().__init__(message, **fields)


class RetryableStoreError(StoreUnavailableError):
    """A transaction hit a serialization failure or deadlock; retry it."""


class StoreTimeoutError(StoreUnavailableError):
    """The database did not answer in time: a statement ran past
    DW_DB_STATEMENT_TIMEOUT_SECONDS (a slow database, or a lock held elsewhere), or
    every pooled connection stayed busy for DW_DB_POOL_WAIT_SECONDS. Nothing was
    applied, unless ``maybe_applied`` says an earlier statement had committed. The
    ``cause`` field says which."""


class AdmissionLockBusyError(DwtrioError):
    """A claim waited a second for its admission scope's lock (other nodes' claims of
    the same capped queue held it): it claims nothing this time. Matching turns it
    into a throttled claim; it reaches no client."""

    reason = "task_queue_admission_busy"
    http_status = 503


class WakeBusUnavailableError(DwtrioError):
    """The wake bus (Redis) is unreachable; wakes fall back to periodic rechecks."""


# --- request pipeline ----------------------------------------------------------------
class PayloadTooLargeError(DwtrioError):
    """The request body is larger than the server accepts."""

    reason = "payload_too_large"
    http_status = 413
    closes_connection = True


class HeadersTooLargeError(DwtrioError):
    """The request line and headers are larger than the server accepts."""

    reason = "headers_too_large"
    http_status = 431
    closes_connection = True


class AmbiguousFramingError(DwtrioError):
    """A request may not carry both Content-Length and Transfer-Encoding."""

    reason = "ambiguous_framing"
    http_status = 400
    closes_connection = True


class UnsupportedMediaTypeError(DwtrioError):
    """Request bodies must be JSON (Content-Type: application/json)."""

    reason = "unsupported_media_type"
    http_status = 415


class MalformedJsonError(DwtrioError):
    """The request body is not valid JSON."""

    reason = "malformed_json"
    http_status = 400


class AuthMisconfiguredError(DwtrioError):
    """Authentication is not configured on this server."""

    reason = "server_error"
    http_status = 500


class UnauthorizedError(DwtrioError):
    """Missing or invalid credentials."""

    reason = "unauthorized"
    http_status = 401


class ForbiddenError(DwtrioError):
    """The credential's role may not use this route."""

    reason = "forbidden"
    http_status = 403


class MissingControlPlaneVersionError(DwtrioError):
    """The X-Durable-Workflow-Control-Plane-Version header is required."""

    reason = "missing_control_plane_version"
    http_status = 400


class UnsupportedControlPlaneVersionError(DwtrioError):
    """This server speaks control-plane version 2 only."""

    reason = "unsupported_control_plane_version"
    http_status = 400


class MissingProtocolVersionError(DwtrioError):
    """The X-Durable-Workflow-Protocol-Version header is required on worker routes."""

    reason = "missing_protocol_version"
    http_status = 400


class UnsupportedProtocolVersionError(DwtrioError):
    """The requested worker protocol version is not supported."""

    reason = "unsupported_protocol_version"
    http_status = 400


class NamespaceNotFoundError(DwtrioError):
    """The namespace does not exist."""

    reason = "namespace_not_found"
    http_status = 404


class RouteNotFoundError(DwtrioError):
    """No such route."""

    reason = "not_found"
    http_status = 404


class RequestTimeoutError(DwtrioError):
    """The request body did not arrive in time."""

    reason = "request_timeout"
    http_status = 408
    closes_connection = True


class MethodNotAllowedError(DwtrioError):
    """The route does not accept this method."""

    reason = "method_not_allowed"
    http_status = 405


class ValidationFailedError(DwtrioError):
    """The request is invalid."""

    reason = "validation_failed"
    http_status = 422

    def __init__(self, errors: Mapping[str, list[str]], message: str | None = None) -> None:
        self.errors = {k: list(v) for k, v in errors.items()}
        if message is None:
            first = next(iter(self.errors.values()), ["The request is invalid."])[0]
            more = sum(len(v) for v in self.errors.values()) - 1
            message = (
                first if more <= 0 else f"{first} (and {more} more error{'s' if more > 1 else ''})"
            )
        super().__init__(message)


def merge_field_errors(into: dict[str, list[str]], more: Mapping[str, list[str]]) -> None:
    """Add ``more``'s messages to ``into`` (both 422 maps: field path to messages)."""
    for key, messages in more.items():
        into.setdefault(key, []).extend(messages)


# --- resources -----------------------------------------------------------------------
class NamespaceAlreadyExistsError(DwtrioError):
    """A namespace with this name already exists."""

    reason = "namespace_already_exists"
    http_status = 409


class NamespaceHasOpenRunsError(DwtrioError):
    """The namespace still has open workflow runs; it cannot be deleted."""

    reason = "namespace_has_open_runs"
    http_status = 409


class DefaultNamespaceProtectedError(DwtrioError):
    """The default namespace (DW_DEFAULT_NAMESPACE) cannot be deleted."""

    reason = "default_namespace_protected"
    http_status = 409


class AlreadyExistsError(DwtrioError):
    """A row with this key already exists."""

    reason = "already_exists"
    http_status = 409

    def __init__(self, constraint: str | None = None) -> None:
        self.constraint = constraint
        super().__init__(f"unique constraint {constraint!r} violated")


# --- workflows (control plane) -------------------------------------------------------
class InvalidPayloadError(ValidationFailedError):
    """A payload is not a valid Avro Value blob or envelope (payloads.md).

    A ``422 validation_failed`` whose ``errors`` map names the field path
    (``input``, ``input.codec``, ``input.blob``, ...). ``problem`` is the SDK's
    code for the failure (``invalid_payload_framing``, ``unsupported_payload_codec``,
    ``unsupported_payload_schema``, ``integer_overflow``, ...).
    """

    def __init__(
        self, field: str, message: str, *, problem: str = "invalid_payload_framing"
    ) -> None:
        self.field = field
        self.problem = problem
        super().__init__({field: [message]}, message)


class ExternalPayloadUnsupportedError(InvalidPayloadError):
    """External payload references are not supported; send payloads inline."""

    reason = "external_payload_unsupported"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message, problem="external_payload_unsupported")


class WorkflowIdReservedError(DwtrioError):
    """This workflow id is already used in another namespace."""

    reason = "workflow_id_reserved_in_namespace"
    http_status = 409


class ActivityIdReservedError(DwtrioError):
    """This standalone activity id is already used in another namespace."""

    reason = "activity_id_reserved_in_namespace"
    http_status = 409


class ActivityNotFoundError(DwtrioError):
    """No standalone activity has this id in this namespace."""

    reason = "activity_not_found"
    http_status = 404


class InstanceNotFoundError(DwtrioError):
    """The workflow instance does not exist in this namespace."""

    reason = "instance_not_found"
    http_status = 404


class RunNotFoundError(DwtrioError):
    """The workflow run does not exist in this instance and namespace."""

    reason = "run_not_found"
    http_status = 404


class ExportInterruptedError(DwtrioError):
    """A run's history changed under its export (the run was deleted while it streamed).

    Raised mid-stream, after the status line: the client sees the body cut short."""

    reason = "history_export_interrupted"
    http_status = 409


class HistoricalRunCommandRejectedError(DwtrioError):
    """A run-targeted command named a run that is not the instance's current run."""

    reason = "historical_run_command_rejected"
    http_status = 409


class RequestIdConflictError(DwtrioError):
    """The request_id is already retained for a command with a different intent."""

    reason = "request_id_conflict"
    http_status = 409


# --- workflow streams ------------------------------------------------------------------
class InvalidStreamNameError(DwtrioError):
    """The stream name is invalid: 1 to 191 characters, letters, digits, '.', '_', ':'
    and '-', starting with a letter or digit."""

    reason = "invalid_stream_name"
    http_status = 400


class StreamNotFoundError(DwtrioError):
    """The run has no stream of this name."""

    reason = "stream_not_found"
    http_status = 404


class StreamClosedError(DwtrioError):
    """The stream is closed: it takes no more items."""

    reason = "stream_closed"
    http_status = 409


class StreamErroredError(DwtrioError):
    """The stream was closed with an error: it takes no more items."""

    reason = "stream_errored"
    http_status = 409


class StreamFullError(DwtrioError):
    """The stream's pending-items cap is reached: its readers have not caught up. Nothing
    of this append was written; the body says ``pending_items`` and ``max_pending_items``."""

    reason = "stream_full"
    http_status = 429


# --- schedules -------------------------------------------------------------------------
class ScheduleNotFoundError(DwtrioError):
    """No live schedule has this id in this namespace."""

    reason = "schedule_not_found"
    http_status = 404


class ScheduleAlreadyExistsError(DwtrioError):
    """A live schedule already has this id in this namespace."""

    reason = "schedule_already_exists"
    http_status = 409


class InvalidTimeRangeError(DwtrioError):
    """A backfill's end_time is not after its start_time."""

    reason = "invalid_time_range"
    http_status = 422


class InvalidVisibilityQueryError(ValidationFailedError):
    """A list's visibility ``query`` (or filter) cannot be used: malformed, an unknown
    attribute, a value of the wrong type, or an operator the attribute does not take.

    A ``422`` whose ``errors`` map names the query parameter; ``position`` (0-based
    offset), ``line`` and ``column`` (1-based) point at the problem when it has a place.
    """

    reason = "invalid_visibility_query"

    def __init__(
        self,
        message: str,
        *,
        field: str = "query",
        position: int | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__({field: [message]}, message)
        self.fields.update(field=field, position=position, line=line, column=column)


class InvalidAfterSequenceError(DwtrioError):
    """A schedule history page's after_sequence is not a non-negative integer."""

    reason = "invalid_after_sequence"
    http_status = 422


class ScheduleListRefusalError(DwtrioError):
    """A schedule list request refused for one field: the body names it in ``field`` and
    carries the one-entry field map as ``errors`` and ``validation_errors``, as every
    schedule list refusal does."""

    def __init__(self, message: str, *, field: str, **fields: Any) -> None:
        errors = {field: [message]}
        super().__init__(message, field=field, errors=errors, validation_errors=errors, **fields)


class UnsupportedScheduleListFilterError(ScheduleListRefusalError):
    """A schedule list filter this server does not implement."""

    reason = "unsupported_schedule_list_filter"
    http_status = 422


class MalformedSchedulePageTokenError(ScheduleListRefusalError):
    """The schedule list page token cannot be read."""

    reason = "malformed_schedule_page_token"
    http_status = 400


class SchedulePageTokenMismatchError(ScheduleListRefusalError):
    """The schedule list page token was issued for another namespace or other filters."""

    reason = "schedule_page_token_filter_mismatch"
    http_status = 400


class ScheduleTriggerFailedError(DwtrioError):
    """A manual trigger's workflow start failed."""

    reason = "trigger_failed"
    http_status = 500


# --- search attributes -------------------------------------------------------------------
class SearchAttributeNameReservedError(DwtrioError):
    """The name belongs to a system search attribute."""

    reason = "name_reserved"
    http_status = 409


class SearchAttributeAlreadyExistsError(DwtrioError):
    """A custom search attribute with this name is already registered in this namespace."""

    reason = "attribute_already_exists"
    http_status = 409


class SearchAttributeLimitReachedError(DwtrioError):
    """The namespace already has as many custom search attributes as allowed."""

    reason = "search_attribute_limit_reached"
    http_status = 422


class SystemSearchAttributeError(DwtrioError):
    """A system search attribute cannot be deleted."""

    reason = "system_attribute"
    http_status = 409


class SearchAttributeNotFoundError(DwtrioError):
    """No custom search attribute has this name in this namespace."""

    reason = "attribute_not_found"
    http_status = 404


class BuildIdDrainingError(DwtrioError):
    """The build-id cohort is draining; resume it before promoting it."""

    reason = "build_id_draining"
    http_status = 409


# --- queries (control plane) ------------------------------------------------------------
class QueryRunNotActiveError(DwtrioError):
    """The run is closed without completing, so it can no longer answer queries."""

    reason = "run_not_active"
    http_status = 409


class QueryWorkerUnavailableError(DwtrioError):
    """No live worker polls the run's task queue for this workflow type."""

    reason = "query_worker_unavailable"
    http_status = 409


class QueryTaskQueueFullError(DwtrioError):
    """Too many queries are already waiting for a worker on this task queue."""

    reason = "query_task_queue_full"
    http_status = 429


class QueryWorkerTimeoutError(DwtrioError):
    """No worker answered the query in time."""

    reason = "query_worker_timeout"
    http_status = 504


# --- worker plane -------------------------------------------------------------------
class WorkerPlaneError(DwtrioError):
    """A worker-plane request was refused."""

    http_status = 409


class TaskNotFoundError(WorkerPlaneError):
    """No such task in this namespace."""

    reason = "task_not_found"
    http_status = 404


class TaskNotLeasedError(WorkerPlaneError):
    """The task is not leased (already completed, failed or ready)."""

    reason = "task_not_leased"


class LeaseExpiredError(WorkerPlaneError):
    """The task's lease has expired."""

    reason = "lease_expired"


class LeaseOwnerMismatchError(WorkerPlaneError):
    """The task is leased to another worker."""

    reason = "lease_owner_mismatch"


class WorkflowTaskAttemptMismatchError(WorkerPlaneError):
    """The workflow task attempt is not the current one."""

    reason = "workflow_task_attempt_mismatch"


class RunClosedError(WorkerPlaneError):
    """The workflow run is already closed."""

    reason = "run_closed"


class InvalidCommandsError(WorkerPlaneError):
    """The workflow task commands are invalid."""

    reason = "invalid_commands"


class InvalidPageTokenError(WorkerPlaneError):
    """The history page token is invalid."""

    reason = "invalid_page_token"
    http_status = 400


class AttemptNotFoundError(WorkerPlaneError):
    """No such activity attempt."""

    reason = "attempt_not_found"
    http_status = 404


class TaskMismatchError(WorkerPlaneError):
    """The activity attempt does not belong to this task."""

    reason = "task_mismatch"


class StaleAttemptError(WorkerPlaneError):
    """The activity attempt is no longer current."""

    reason = "stale_attempt"


class WorkerNotFoundError(WorkerPlaneError):
    """No such worker registration."""

    reason = "worker_not_found"
    http_status = 404


class WorkerNotRegisteredError(WorkerPlaneError):
    """The worker is not registered."""

    reason = "worker_not_registered"
    http_status = 404


class WorkerRegistrationFenceError(WorkerPlaneError):
    """A fenced deregistration was refused; it changed nothing. Its body names the
    worker id and the registration token, and says ``retryable: false``."""

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        fields.setdefault("retryable", False)
        super().__init__(message, **fields)


class WorkerRegistrationTokenNotFoundError(WorkerRegistrationFenceError):
    """No incarnation of this worker id has this registration token (or its receipt
    was pruned)."""

    reason = "worker_registration_token_not_found"
    http_status = 404


class WorkerRegistrationLostAuthorityError(WorkerRegistrationFenceError):
    """The registration token is no longer the worker's current registration: a newer
    registration (or an unfenced deregistration) replaced it."""

    reason = "worker_registration_lost_authority"
    http_status = 409


class WorkerRegistrationReceiptExpiredError(WorkerRegistrationFenceError):
    """The deregistration receipt of this token is older than the receipt window."""

    reason = "worker_registration_receipt_expired"
    http_status = 410


class QueryTaskNotFoundError(WorkerPlaneError):
    """No such query task in this namespace (or its caller stopped waiting)."""

    reason = "query_task_not_found"
    http_status = 404


class QueryTaskNotLeasedError(WorkerPlaneError):
    """The query task is not leased (already answered, or not yet claimed)."""

    reason = "query_task_not_leased"


class QueryTaskAttemptMismatchError(WorkerPlaneError):
    """The query task attempt is not the current one."""

    reason = "query_task_attempt_mismatch"
