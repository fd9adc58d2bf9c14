"""The OpenAPI 3.1 description of the whole HTTP surface, built from this table.

Each route the server answers is one :class:`Operation` in :data:`OPERATIONS`
(a test compares the table with the live route table, both ways). Request
bodies and query parameters are JSON Schemas derived from the attrs models the
handlers structure them into (:func:`model_schema`): field types from the
annotations, ``required`` from the fields without a default, and the limits
from the validators that record them (``protocol/validators.py``). The error
envelope, the worker-plane fields, the security scheme and the version headers
are written once, in :func:`build_document`, and referenced from every
operation.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Iterable
from typing import Any, Final, Literal

import attrs

from dwtrio.protocol import responses as answers
from dwtrio.protocol import schedules as schedule_models
from dwtrio.protocol.activities import ListActivities, StartActivity
from dwtrio.protocol.build_ids import BuildIdRolloutChange
from dwtrio.protocol.namespaces import CreateNamespace, SetExternalStorage, UpdateNamespace
from dwtrio.protocol.queries import CompleteQueryTask, FailQueryTask, QueryWorkflow
from dwtrio.protocol.search_attributes import CreateSearchAttribute
from dwtrio.protocol.system import (
    ActivityTimeoutPassRequest,
    RepairPassRequest,
    RetentionPassRequest,
)
from dwtrio.protocol.updates import UpdateWorkflow
from dwtrio.protocol.worker import (
    CompleteActivityTask,
    CompleteWorkflowTask,
    FailActivityTask,
    FailWorkflowTask,
    FencedDeregistration,
    HeartbeatActivityTask,
    HistoryPage,
    ListWorkersQuery,
    PollTasks,
    RegisterWorker,
    WorkerHeartbeat,
    WorkflowTaskLease,
)
from dwtrio.protocol.workflow_commands import (
    CloseWorkflow,
    RedriveWorkflow,
    RepairWorkflow,
    SignalWorkflow,
)
from dwtrio.protocol.workflow_streams import (
    MAX_ITEMS_PER_READ,
    MAX_WAIT_SECONDS,
    AppendStreamItems,
    CloseStream,
    StreamAppended,
    StreamDescription,
    StreamList,
    StreamPage,
)
from dwtrio.protocol.workflows import HistoryPageQuery, ListWorkflows, StartWorkflow

Plane = Literal["public", "discovery", "control", "worker", "metrics", "other"]

CONTROL_PLANE_HEADER: Final = "X-Durable-Workflow-Control-Plane-Version"
WORKER_PROTOCOL_HEADER: Final = "X-Durable-Workflow-Protocol-Version"
ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}
VALIDATION_ERROR_REF: Final = {"$ref": "#/components/schemas/ValidationError"}


@attrs.frozen(kw_only=True)
class Operation:
    """One route: ``path`` in OpenAPI form (``{param}``), relative to the server root."""

    method: str
    path: str
    plane: Plane
    tag: str
    summary: str
    operation_id: str
    body: type | None = None
    #: The model of the success bodies (``protocol/responses.py``), when there is one.
    response: type | None = None
    query: type | None = None
    #: Extra query parameters not held by a model: name -> schema.
    query_extra: tuple[tuple[str, dict[str, Any]], ...] = ()
    #: Success statuses, each with a description.
    success: tuple[tuple[int, str], ...] = ((200, "Success."),)
    namespaced: bool = True
    #: Error answers of this route beyond the plane's common ones: (status, description).
    refusals: tuple[tuple[int, str], ...] = ()
    #: The media type of the success bodies.
    content_type: str = "application/json"
    #: Roles allowed, for the description; () = any authenticated role.
    roles: tuple[str, ...] = ()


# --- schemas from attrs models --------------------------------------------------------


def _type_schema(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return {}
    if tp is type(None):
        return {"type": "null"}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(tp)
        plain = [m for m in members if m is not type(None)]
        if len(plain) == 1 and len(members) == 2:
            inner = _type_schema(plain[0])
            if "type" in inner and isinstance(inner["type"], str):
                return {**inner, "type": [inner["type"], "null"]}
            return {"anyOf": [inner, {"type": "null"}]}
        return {"anyOf": [_type_schema(m) for m in members]}
    if origin in (list, tuple, frozenset, set) or tp in (list, tuple):
        args = typing.get_args(tp)
        return {"type": "array", "items": _type_schema(args[0]) if args else {}}
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        return {"type": "object", "additionalProperties": _type_schema(args[1]) if args else {}}
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if attrs.has(tp):
        return {"$ref": f"#/components/schemas/{tp.__name__}"}
    return {}


def _validators(field: attrs.Attribute[Any]) -> Iterable[Any]:
    validator = field.validator
    if validator is None:
        return ()
    # attrs keeps a list of validators as one "and" validator.
    return tuple(getattr(validator, "_validators", (validator,)))


def _field_schema(field: attrs.Attribute[Any]) -> dict[str, Any]:
    schema = _type_schema(field.type)
    extra: list[dict[str, Any]] = []
    for validator in _validators(field):
        for key, value in getattr(validator, "json_schema", {}).items():
            if key in schema:
                extra.append({key: value})
            else:
                schema[key] = value
    if "minimum" in schema and schema.get("type") in ("string", ["string", "null"]):
        schema.pop("minimum")
        schema.pop("maximum", None)
    if "enum" in schema and field.default is None:
        schema["enum"] = [*schema["enum"], None]
    if extra:
        schema = {**schema, "allOf": extra}
    return schema


def model_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of an attrs request model (unknown keys are allowed, as on the wire)."""
    attrs.resolve_types(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        properties[field.name] = _field_schema(field)
        if field.default is attrs.NOTHING:
            required.append(field.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if cls.__doc__:
        schema["description"] = " ".join(cls.__doc__.split())
    return schema


def _nested_models(cls: type, seen: dict[str, type]) -> None:
    if cls.__name__ in seen:
        return
    seen[cls.__name__] = cls
    attrs.resolve_types(cls)
    for field in attrs.fields(cls):
        for tp in (field.type, *typing.get_args(field.type)):
            if isinstance(tp, type) and attrs.has(tp):
                _nested_models(tp, seen)


# --- the operations --------------------------------------------------------------------

WF = "/api/workflows/{workflow_id}"
RUN = "/api/workflows/{workflow_id}/runs/{run_id}"
SCHEDULE = "/api/schedules/{schedule_id}"
TQ = "/api/task-queues/{task_queue}"
WORKER = "/api/worker"
_HISTORY_LIMIT = (
    (
        "limit",
        {"type": "string", "description": "Events per page, 1 to 500 (default 100)."},
    ),
    (
        "after_sequence",
        {
            "type": "string",
            "pattern": "^[0-9]{1,9}$",
            "description": "Only events after this sequence number.",
        },
    ),
)
_OPERATOR = ("operator", "admin")
_ADMIN = ("admin",)
_WORKER = ("worker",)


_STREAM_REFUSALS: Final = (
    (400, "invalid_stream_name: not a stream name."),
    (404, "instance_not_found (no such run), stream_not_found (no such stream)."),
)


def _control(
    method: str, path: str, tag: str, summary: str, operation_id: str, **kw: Any
) -> Operation:
    roles = kw.pop("roles", _OPERATOR)
    return Operation(
        method=method,
        path=path,
        plane="control",
        tag=tag,
        summary=summary,
        operation_id=operation_id,
        roles=roles,
        **kw,
    )


def _worker(path: str, summary: str, operation_id: str, body: type, **kw: Any) -> Operation:
    return Operation(
        method=kw.pop("method", "POST"),
        path=f"{WORKER}/{path}",
        plane="worker",
        tag="worker plane",
        summary=summary,
        operation_id=operation_id,
        body=body,
        roles=_WORKER,
        **kw,
    )


def _workflow_command(
    verb: str,
    summary: str,
    body: type,
    named: bool,
    success: tuple[tuple[int, str], ...],
    refusals: tuple[tuple[int, str], ...] = (),
    response: type | None = None,
) -> list[Operation]:
    ops = []
    for base, scope in ((WF, ""), (RUN, "Run")):
        path = f"{base}/{verb}/{{name}}" if named else f"{base}/{verb}"
        ops.append(
            _control(
                "POST",
                path,
                "workflows",
                summary + (" (a named run)" if scope else " (the current run)"),
                f"{verb}Workflow{scope}",
                body=body,
                success=success,
                refusals=refusals,
                response=response,
            )
        )
    return ops


_COMMAND_ACCEPTED = ((200, "Recorded."), (202, "Accepted."))
_PASS_SUCCESS = ((200, "The pass report."), (207, "The pass report; some items failed."))
_PASS_LIMIT = (
    (
        "limit",
        {"type": "string", "pattern": "^[0-9]{1,9}$", "description": "Most items to list."},
    ),
)
_OUTCOME = ((200, "Done."), (201, "Created."), (202, "Accepted."))

OPERATIONS: Final[tuple[Operation, ...]] = (
    # probes and discovery
    Operation(
        method="GET",
        path="/api/live",
        plane="public",
        tag="probes",
        summary="Process liveness: the server answers; no database check.",
        operation_id="live",
        namespaced=False,
        success=((200, "Alive."),),
    ),
    Operation(
        method="GET",
        path="/api/health",
        plane="public",
        tag="probes",
        summary="Liveness as the protocol defines it: the process and its database answer.",
        operation_id="health",
        namespaced=False,
        success=((200, "Serving."), (503, "The database is unreachable.")),
    ),
    Operation(
        method="GET",
        path="/api/ready",
        plane="public",
        tag="probes",
        summary="Readiness: the database answers and the schema is current.",
        operation_id="ready",
        namespaced=False,
        success=((200, "Ready."), (503, "Not ready (the body says why).")),
    ),
    Operation(
        method="GET",
        path="/api/openapi.json",
        plane="public",
        tag="discovery",
        summary="This document.",
        operation_id="openapi",
        namespaced=False,
    ),
    Operation(
        method="GET",
        path="/api/cluster/info",
        plane="discovery",
        tag="discovery",
        summary="The discovery manifest: versions, capabilities and limits.",
        operation_id="clusterInfo",
    ),
    # namespaces
    _control(
        "GET",
        "/api/namespaces",
        "namespaces",
        "List namespaces.",
        "listNamespaces",
        namespaced=False,
    ),
    _control(
        "POST",
        "/api/namespaces",
        "namespaces",
        "Create a namespace.",
        "createNamespace",
        body=CreateNamespace,
        success=((201, "Created."),),
        namespaced=False,
        roles=_ADMIN,
    ),
    _control(
        "GET",
        "/api/namespaces/{namespace}",
        "namespaces",
        "Describe a namespace.",
        "describeNamespace",
        namespaced=False,
    ),
    _control(
        "PUT",
        "/api/namespaces/{namespace}",
        "namespaces",
        "Change a namespace's description or retention.",
        "updateNamespace",
        body=UpdateNamespace,
        namespaced=False,
        roles=_ADMIN,
    ),
    _control(
        "DELETE",
        "/api/namespaces/{namespace}",
        "namespaces",
        "Delete a namespace with no open runs (never the default one).",
        "deleteNamespace",
        response=answers.NamespaceDeleted,
        namespaced=False,
        roles=_ADMIN,
    ),
    _control(
        "PUT",
        "/api/namespaces/{namespace}/external-storage",
        "namespaces",
        "Set a namespace's external payload storage.",
        "setExternalStorage",
        body=SetExternalStorage,
        namespaced=False,
        roles=_ADMIN,
    ),
    # workflows
    _control(
        "POST",
        "/api/workflows",
        "workflows",
        "Start a workflow.",
        "startWorkflow",
        response=answers.StartResponse,
        body=StartWorkflow,
        success=((201, "Started."), (200, "An existing run returned (use-existing).")),
    ),
    _control(
        "GET",
        "/api/workflows",
        "workflows",
        "List workflows (filters, a visibility query, keyset pages).",
        "listWorkflows",
        query=ListWorkflows,
    ),
    _control("GET", WF, "workflows", "Describe a workflow's current run.", "describeWorkflow"),
    _control("GET", f"{WF}/runs", "workflows", "List a workflow's runs.", "listWorkflowRuns"),
    _control("GET", RUN, "workflows", "Describe one run.", "describeRun"),
    _control(
        "GET",
        f"{RUN}/history",
        "workflows",
        "A page of a run's history.",
        "runHistory",
        query=HistoryPageQuery,
    ),
    _control(
        "GET",
        f"{RUN}/history/export",
        "workflows",
        "A run's replay bundle: every event and record, canonical JSON with a checksum "
        "(and a signature when a signing key is set), streamed.",
        "exportRunHistory",
    ),
    *(
        _control(
            "GET",
            f"{base}/debug",
            "workflows",
            f"A bounded diagnostic snapshot of {what}: what it waits on, open tasks, "
            "pending activities, its task queue, recent failures and findings.",
            f"debugWorkflow{scope}",
            response=answers.WorkflowDebug,
            query_extra=(
                (
                    "include_last_event_payload",
                    {"type": "string", "enum": ["true", "false", "1", "0"]},
                ),
            ),
        )
        for base, scope, what in ((WF, "", "the current run"), (RUN, "Run", "a named run"))
    ),
    *_workflow_command(
        "repair",
        "Re-dispatch a run's lost or stuck task",
        RepairWorkflow,
        False,
        _COMMAND_ACCEPTED,
    ),
    *_workflow_command("archive", "Archive a closed run", CloseWorkflow, False, _COMMAND_ACCEPTED),
    # workflow streams (docs/workflow-streams.md)
    _control(
        "GET",
        f"{RUN}/streams",
        "workflow streams",
        "List a run's durable streams, by name.",
        "listWorkflowStreams",
        response=StreamList,
    ),
    _control(
        "GET",
        f"{RUN}/streams/{{stream_name}}",
        "workflow streams",
        "Describe one stream: status, offsets, pending items.",
        "describeWorkflowStream",
        response=StreamDescription,
        refusals=_STREAM_REFUSALS,
    ),
    _control(
        "GET",
        f"{RUN}/streams/{{stream_name}}/items",
        "workflow streams",
        "Read items from an offset on, waiting up to `wait_seconds` for the first "
        "(`terminal`: the stream is closed and this page reached its end).",
        "readWorkflowStreamItems",
        response=StreamPage,
        query_extra=(
            ("from", {"type": "integer", "minimum": 0, "description": "First offset wanted."}),
            ("max_items", {"type": "integer", "minimum": 1, "maximum": MAX_ITEMS_PER_READ}),
            ("wait_seconds", {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS}),
        ),
        refusals=_STREAM_REFUSALS,
    ),
    _control(
        "POST",
        f"{RUN}/streams/{{stream_name}}/items",
        "workflow streams",
        "Append items, in order, each at the next offset (the first append opens the "
        "stream); an `idempotency_key` already there is not appended again.",
        "appendWorkflowStreamItems",
        body=AppendStreamItems,
        response=StreamAppended,
        refusals=(
            (400, "invalid_stream_name: not a stream name."),
            (404, "instance_not_found: no such run."),
            (409, "stream_closed, stream_errored: the stream takes no more items."),
            (429, "stream_full: the pending-items cap is reached; nothing was appended."),
        ),
    ),
    _control(
        "POST",
        f"{RUN}/streams/{{stream_name}}/close",
        "workflow streams",
        "Close a stream, or mark it errored with an `error_reason` (closing again "
        "changes nothing).",
        "closeWorkflowStream",
        body=CloseStream,
        response=StreamDescription,
        refusals=_STREAM_REFUSALS,
    ),
    _control(
        "POST",
        f"{RUN}/redrive",
        "workflows",
        "Redrive a failed run: a new run of the instance replays the failed run's completed "
        "steps from their recorded results and schedules the failed activity anew.",
        "redriveWorkflowRun",
        body=RedriveWorkflow,
        response=answers.CommandReceipt,
        success=((202, "Redriven: the receipt names the new run (`run_id`, `redrive`)."),),
        refusals=(
            (404, "run_not_found: the instance has no such run."),
            (
                409,
                "run_not_failed, run_archived, run_has_parent, execution_deadline_passed, "
                "unsupported_history, unresolved_step (a receipt), "
                "historical_run_command_rejected or request_id_conflict.",
            ),
        ),
    ),
    *_workflow_command(
        "signal",
        "Signal a workflow",
        SignalWorkflow,
        True,
        _COMMAND_ACCEPTED,
        response=answers.CommandReceipt,
    ),
    *_workflow_command(
        "query",
        "Query a workflow (answered by a worker)",
        QueryWorkflow,
        True,
        ((200, "Answer."),),
        (
            (429, "Too many queries wait on the task queue (query_task_queue_full)."),
            (504, "No worker answered within the query timeout (query_worker_timeout)."),
        ),
    ),
    *_workflow_command(
        "update",
        "Send an update to a workflow",
        UpdateWorkflow,
        True,
        ((200, "Completed."), (202, "Accepted.")),
    ),
    *_workflow_command(
        "cancel",
        "Cancel a workflow",
        CloseWorkflow,
        False,
        _COMMAND_ACCEPTED,
        response=answers.CommandReceipt,
    ),
    *_workflow_command(
        "terminate",
        "Terminate a workflow",
        CloseWorkflow,
        False,
        _COMMAND_ACCEPTED,
        response=answers.CommandReceipt,
    ),
    # standalone activities
    _control(
        "POST",
        "/api/activities",
        "activities",
        "Start a standalone activity: an activity run by workers without a workflow, "
        "recorded in a host run of type `dw.standalone_activity`.",
        "startActivity",
        body=StartActivity,
        response=answers.ActivityStarted,
        success=((201, "Started."),),
        refusals=(
            (409, "activity_id_reserved_in_namespace: the id belongs to another namespace."),
        ),
    ),
    _control(
        "GET",
        "/api/activities",
        "activities",
        "List standalone activities, newest first (offset page tokens).",
        "listActivities",
        query=ListActivities,
        response=answers.ActivityList,
    ),
    _control(
        "GET",
        "/api/activities/{activity_id}",
        "activities",
        "Describe a standalone activity: its host run, its execution and, once it "
        "completed, its result envelope.",
        "describeActivity",
        response=answers.ActivityView,
        refusals=((404, "activity_not_found: no standalone activity has this id here."),),
    ),
    # schedules
    _control(
        "POST",
        "/api/schedules",
        "schedules",
        "Create a schedule.",
        "createSchedule",
        body=schedule_models.CreateSchedule,
        success=((201, "Created."),),
    ),
    _control(
        "GET",
        "/api/schedules",
        "schedules",
        "List schedules.",
        "listSchedules",
        query=schedule_models.ListSchedules,
    ),
    _control("GET", SCHEDULE, "schedules", "Describe a schedule.", "describeSchedule"),
    _control(
        "PUT",
        SCHEDULE,
        "schedules",
        "Change a schedule (the fields sent replace the stored ones).",
        "updateSchedule",
        body=schedule_models.UpdateSchedule,
    ),
    _control("DELETE", SCHEDULE, "schedules", "Delete a schedule.", "deleteSchedule"),
    _control(
        "POST",
        f"{SCHEDULE}/pause",
        "schedules",
        "Pause a schedule.",
        "pauseSchedule",
        body=schedule_models.ScheduleNote,
    ),
    _control(
        "POST",
        f"{SCHEDULE}/resume",
        "schedules",
        "Resume a schedule.",
        "resumeSchedule",
        body=schedule_models.ScheduleNote,
    ),
    _control(
        "POST",
        f"{SCHEDULE}/trigger",
        "schedules",
        "Fire a schedule now.",
        "triggerSchedule",
        body=schedule_models.TriggerSchedule,
    ),
    _control(
        "POST",
        f"{SCHEDULE}/backfill",
        "schedules",
        "Fire a schedule's occurrences in a past time range.",
        "backfillSchedule",
        body=schedule_models.BackfillSchedule,
    ),
    _control(
        "GET",
        f"{SCHEDULE}/history",
        "schedules",
        "A page of a schedule's audit history.",
        "scheduleHistory",
        query_extra=_HISTORY_LIMIT,
    ),
    # search attributes
    _control(
        "GET",
        "/api/search-attributes",
        "search attributes",
        "List the search attributes (system and custom).",
        "listSearchAttributes",
    ),
    _control(
        "POST",
        "/api/search-attributes",
        "search attributes",
        "Register a custom search attribute.",
        "createSearchAttribute",
        body=CreateSearchAttribute,
        success=((201, "Registered."),),
    ),
    _control(
        "DELETE",
        "/api/search-attributes/{name}",
        "search attributes",
        "Remove a custom search attribute.",
        "deleteSearchAttribute",
    ),
    # the worker roster
    _control(
        "GET",
        "/api/workers",
        "workers",
        "List registered workers.",
        "listWorkers",
        response=answers.WorkerList,
        query=ListWorkersQuery,
    ),
    _control(
        "GET",
        "/api/workers/{worker_id}",
        "workers",
        "Describe a worker.",
        "describeWorker",
        response=answers.WorkerDescription,
    ),
    _control(
        "DELETE",
        "/api/workers/{worker_id}",
        "workers",
        "Remove a worker's registration.",
        "deleteWorker",
        response=answers.WorkerDeregistered,
        roles=_ADMIN,
    ),
    # task queues and build ids
    _control(
        "GET",
        "/api/task-queues",
        "task queues",
        "List task queues.",
        "listTaskQueues",
        response=answers.TaskQueueList,
    ),
    _control(
        "GET",
        TQ,
        "task queues",
        "Describe a task queue: backlog, pollers, leases, repair, admission.",
        "describeTaskQueue",
        response=answers.TaskQueueDescription,
    ),
    _control(
        "GET",
        f"{TQ}/build-ids",
        "task queues",
        "A task queue's worker cohorts by build id.",
        "listBuildIds",
    ),
    *(
        _control(
            "POST",
            f"{TQ}/build-ids/{verb}",
            "task queues",
            summary,
            f"{verb}BuildId",
            body=BuildIdRolloutChange,
        )
        for verb, summary in (
            ("drain", "Stop handing new work to a build id."),
            ("resume", "Hand work to a drained build id again."),
            ("promote", "Make a build id the one new runs are pinned to."),
        )
    ),
    # operator views (admin)
    _control(
        "GET",
        "/api/system/health",
        "system",
        "Coordination health: blocking and advisory checks (503 when a blocking one fails).",
        "systemHealth",
        roles=_ADMIN,
        success=((200, "Healthy or degraded."), (503, "A blocking check failed.")),
    ),
    _control(
        "GET",
        "/api/system/metrics",
        "system",
        "The server's metrics as JSON, with matching, wake-bus, pool and loop figures.",
        "systemMetrics",
        roles=_ADMIN,
    ),
    _control(
        "GET",
        "/api/system/operator-metrics",
        "system",
        "Operator metrics: runs by status, tasks and backlog, workers, schedules, store facts.",
        "operatorMetrics",
        roles=_ADMIN,
    ),
    Operation(
        method="GET",
        path="/metrics",
        plane="metrics",
        tag="system",
        summary="Prometheus metrics (text exposition; OpenMetrics when asked for in Accept).",
        operation_id="prometheusMetrics",
        namespaced=False,
        roles=_OPERATOR,
        content_type="text/plain",
        success=((200, "The metrics."),),
    ),
    # system passes (admin)
    _control(
        "GET",
        "/api/system/repair",
        "system",
        "Task repair's policy and the leases it would act on now.",
        "repairStatus",
        roles=_ADMIN,
    ),
    _control(
        "POST",
        "/api/system/repair/pass",
        "system",
        "Run task repair now (the repair loop's pass), or on named runs.",
        "repairPass",
        roles=_ADMIN,
        body=RepairPassRequest,
        success=_PASS_SUCCESS,
    ),
    _control(
        "GET",
        "/api/system/activity-timeouts",
        "system",
        "Activity executions of the namespace past a deadline.",
        "activityTimeoutStatus",
        roles=_ADMIN,
        query_extra=_PASS_LIMIT,
    ),
    _control(
        "POST",
        "/api/system/activity-timeouts/pass",
        "system",
        "Enforce passed activity deadlines now (the timeout loop's pass).",
        "activityTimeoutPass",
        roles=_ADMIN,
        body=ActivityTimeoutPassRequest,
        success=_PASS_SUCCESS,
    ),
    _control(
        "GET",
        "/api/system/retention",
        "system",
        "The namespace's retention window and the runs past it.",
        "retentionStatus",
        roles=_ADMIN,
        query_extra=_PASS_LIMIT,
    ),
    _control(
        "POST",
        "/api/system/retention/pass",
        "system",
        "Prune expired runs of the namespace now (the retention loop's pass).",
        "retentionPass",
        roles=_ADMIN,
        body=RetentionPassRequest,
        success=_PASS_SUCCESS,
    ),
    # the worker plane
    _worker("register", "Register (or re-register) a worker.", "registerWorker", RegisterWorker),
    _worker("heartbeat", "A worker's liveness heartbeat.", "workerHeartbeat", WorkerHeartbeat),
    Operation(
        method="DELETE",
        path=f"{WORKER}/registrations/{{worker_id}}",
        plane="worker",
        tag="worker plane",
        summary="Deregister a worker.",
        operation_id="deregisterWorker",
        roles=_WORKER,
    ),
    _worker(
        "registrations/{worker_id}/deregister",
        "Deregister the registration a `registration_token` names (fenced), or answer its "
        "receipt again within `receipt_retention_seconds`.",
        "deregisterWorkerRegistration",
        FencedDeregistration,
        response=answers.WorkerDeregistered,
        refusals=(
            (404, "worker_registration_token_not_found: no registration of this worker has it."),
            (409, "worker_registration_lost_authority: a newer registration replaced it."),
            (410, "worker_registration_receipt_expired: its receipt window has passed."),
        ),
    ),
    _worker(
        "workflow-tasks/poll",
        "Long-poll for a workflow task (`task` is null when none came in time).",
        "pollWorkflowTask",
        PollTasks,
    ),
    _worker(
        "workflow-tasks/{task_id}/history",
        "The next page of a leased workflow task's history.",
        "workflowTaskHistory",
        HistoryPage,
    ),
    _worker(
        "workflow-tasks/{task_id}/complete",
        "Complete a workflow task with commands.",
        "completeWorkflowTask",
        CompleteWorkflowTask,
        response=answers.WorkflowTaskCompleted,
    ),
    _worker(
        "workflow-tasks/{task_id}/fail",
        "Fail a workflow task.",
        "failWorkflowTask",
        FailWorkflowTask,
        response=answers.WorkflowTaskFailed,
    ),
    _worker(
        "workflow-tasks/{task_id}/heartbeat",
        "Extend a workflow task's lease.",
        "heartbeatWorkflowTask",
        WorkflowTaskLease,
    ),
    _worker(
        "activity-tasks/poll",
        "Long-poll for an activity task.",
        "pollActivityTask",
        PollTasks,
    ),
    _worker(
        "activity-tasks/{task_id}/complete",
        "Complete an activity attempt.",
        "completeActivityTask",
        CompleteActivityTask,
        response=answers.ActivityReport,
    ),
    _worker(
        "activity-tasks/{task_id}/fail",
        "Fail an activity attempt.",
        "failActivityTask",
        FailActivityTask,
        response=answers.ActivityReport,
    ),
    _worker(
        "activity-tasks/{task_id}/heartbeat",
        "Heartbeat an activity attempt (the answer says whether cancellation was asked).",
        "heartbeatActivityTask",
        HeartbeatActivityTask,
    ),
    _worker("query-tasks/poll", "Long-poll for a query task.", "pollQueryTask", PollTasks),
    _worker(
        "query-tasks/{task_id}/complete",
        "Answer a query task.",
        "completeQueryTask",
        CompleteQueryTask,
        response=answers.QueryTaskReport,
    ),
    _worker(
        "query-tasks/{task_id}/fail",
        "Fail a query task.",
        "failQueryTask",
        FailQueryTask,
        response=answers.QueryTaskReport,
    ),
)


# --- the document ----------------------------------------------------------------------

_COMMON_ERRORS: Final[dict[Plane, tuple[tuple[int, str], ...]]] = {
    "public": (),
    "discovery": ((401, "No or a wrong credential."), (403, "The role may not use this route.")),
    "control": (
        (400, "Malformed JSON, or a missing or unsupported control-plane version header."),
        (401, "No or a wrong credential."),
        (403, "The role may not use this route."),
        (404, "The namespace, or the resource, does not exist."),
        (409, "Refused in the resource's current state."),
        (413, "The body is larger than DW_MAX_PAYLOAD_BYTES."),
        (415, "The body is not JSON."),
        (503, "The database is unreachable (backend_unavailable); retry."),
    ),
    "worker": (
        (400, "Malformed JSON, or a missing or unsupported worker protocol version header."),
        (401, "No or a wrong credential."),
        (403, "The role may not use this route."),
        (404, "The namespace, or the task, does not exist."),
        (409, "The task's lease or attempt does not match (the worker should drop it)."),
        (413, "The body is larger than DW_MAX_PAYLOAD_BYTES."),
        (415, "The body is not JSON."),
        (503, "The database is unreachable (backend_unavailable); retry."),
    ),
    "metrics": ((401, "No or a wrong credential."), (403, "The role may not use this route.")),
    "other": (),
}

_SCHEMAS: Final[dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": (
            "Every error answer. `reason` is a stable snake_case code, `message` a sentence "
            "for people; other fields depend on the reason (e.g. `namespace`, `remediation`, "
            "`supported_version`, `request_id` on a 500)."
        ),
        "properties": {
            "reason": {"type": "string"},
            "message": {"type": "string"},
        },
        "required": ["reason", "message"],
    },
    "ValidationError": {
        "description": (
            "422 `validation_failed` (and its kin): the field map twice, as `errors` and "
            "`validation_errors`, each a dotted field path mapped to its messages."
        ),
        "allOf": [
            ERROR_REF,
            {
                "type": "object",
                "properties": {
                    "errors": {"$ref": "#/components/schemas/FieldErrors"},
                    "validation_errors": {"$ref": "#/components/schemas/FieldErrors"},
                },
                "required": ["errors"],
            },
        ],
    },
    "FieldErrors": {
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    },
    "WorkerPlaneFields": {
        "type": "object",
        "description": "What every worker-plane answer carries, success or error.",
        "properties": {
            "protocol_version": {"type": "string"},
            "server_capabilities": {"type": "object"},
        },
        "required": ["protocol_version", "server_capabilities"],
    },
    "WorkerPlaneError": {
        "allOf": [
            ERROR_REF,
            {"$ref": "#/components/schemas/WorkerPlaneFields"},
            {
                "type": "object",
                "properties": {"error": {"type": "string", "description": "Same as message."}},
            },
        ]
    },
    "ControlPlaneEnvelope": {
        "type": "object",
        "description": (
            "Workflow operations add `control_plane` to their answers (success and error): "
            "the operation, its contract version and the request and response contracts."
        ),
        "properties": {"control_plane": {"type": "object"}},
    },
}


def _parameter(name: str, where: str, schema: dict[str, Any], required: bool) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [segment[1:-1] for segment in path.split("/") if segment.startswith("{")]
    return [_parameter(name, "path", {"type": "string"}, True) for name in names]


def _query_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """A model field as a query parameter: always text (an integer is its ASCII digits)."""
    schema: dict[str, Any] = {"type": "string"}
    if prop.get("type") in ("integer", ["integer", "null"]):
        low, high = prop.get("minimum"), prop.get("maximum")
        schema["pattern"] = "^[0-9]+$"
        schema["description"] = f"An integer from {low} to {high}." if high else "An integer."
    elif "enum" in prop:
        schema["enum"] = [e for e in prop["enum"] if e is not None]
    return schema


def _query_parameters(op: Operation) -> list[dict[str, Any]]:
    params = []
    if op.query is not None:
        for name, prop in model_schema(op.query)["properties"].items():
            params.append(_parameter(name, "query", _query_schema(prop), False))
    params.extend(_parameter(name, "query", schema, False) for name, schema in op.query_extra)
    return params


def _error_responses(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    error_schema: dict[str, Any] = (
        {"$ref": "#/components/schemas/WorkerPlaneError"} if op.plane == "worker" else ERROR_REF
    )
    for status, description in _COMMON_ERRORS[op.plane]:
        if status == 404 and not op.namespaced and "{" not in op.path:
            continue
        if status in (409, 413, 415) and op.body is None and op.method != "DELETE":
            continue
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": error_schema}},
        }
    for status, description in op.refusals:
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": error_schema}},
        }
    if op.plane in ("control", "worker"):
        validation: dict[str, Any] = (
            {"allOf": [VALIDATION_ERROR_REF, {"$ref": "#/components/schemas/WorkerPlaneFields"}]}
            if op.plane == "worker"
            else VALIDATION_ERROR_REF
        )
        responses["422"] = {
            "description": "A field (body, query or path) is invalid.",
            "content": {"application/json": {"schema": validation}},
        }
    return responses


def _operation(op: Operation) -> dict[str, Any]:
    params = _path_parameters(op.path) + _query_parameters(op)
    if op.plane == "control":
        params.append({"$ref": "#/components/parameters/ControlPlaneVersion"})
    elif op.plane == "discovery":
        params.append({"$ref": "#/components/parameters/ControlPlaneVersionOptional"})
    elif op.plane == "worker":
        params.append({"$ref": "#/components/parameters/WorkerProtocolVersion"})
    if op.namespaced and op.plane != "public":
        params.append({"$ref": "#/components/parameters/Namespace"})
    success_schema: dict[str, Any] = (
        {"allOf": [{"type": "object"}, {"$ref": "#/components/schemas/WorkerPlaneFields"}]}
        if op.plane == "worker"
        else {"type": "object"}
    )
    if op.response is not None:
        model_ref = {"$ref": f"#/components/schemas/{op.response.__name__}"}
        success_schema = (
            {"allOf": [model_ref, {"$ref": "#/components/schemas/WorkerPlaneFields"}]}
            if op.plane == "worker"
            else model_ref
        )
    if op.content_type != "application/json":
        success_schema = {"type": "string"}
    responses: dict[str, Any] = {
        str(status): {
            "description": description,
            "content": {op.content_type: {"schema": success_schema}},
        }
        for status, description in op.success
    }
    for status, answer in _error_responses(op).items():
        # A status the route documents as an answer (a health report's 503) stays one.
        responses.setdefault(status, answer)
    description = op.summary
    if op.roles:
        description += f" Roles: {', '.join(op.roles)}."
    document: dict[str, Any] = {
        "operationId": op.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
        "description": description,
        "parameters": params,
        "responses": responses,
    }
    if op.plane == "public":
        document["security"] = []
    if op.body is not None:
        document["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}
            },
        }
    return document


@functools.cache
def build_document(version: str = "0") -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once per version string)."""
    paths: dict[str, dict[str, Any]] = {}
    models: dict[str, type] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
        for model in (op.body, op.response):
            if model is not None:
                _nested_models(model, models)
    schemas = dict(_SCHEMAS)
    for name, cls in sorted(models.items()):
        schemas[name] = model_schema(cls)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dwtrio: Durable Workflow server",
            "version": version,
            "description": (
                "The Durable Workflow HTTP/JSON protocol as dwtrio serves it: the control "
                "plane (namespaces, workflows, schedules, search attributes, workers, task "
                "queues), the worker plane (`/api/worker/...`), discovery and probes. "
                "Control-plane routes need the control-plane version header, worker routes "
                "the worker protocol header; the namespace comes from X-Namespace (or the "
                "`namespace` query parameter), else the default. Request bodies may carry "
                "fields not listed (newer SDKs add some); no string in a body may hold NUL."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": name} for name in dict.fromkeys(op.tag for op in OPERATIONS)],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "A role token (DW_WORKER_TOKEN, DW_OPERATOR_TOKEN, DW_ADMIN_TOKEN) or "
                        "the legacy DW_AUTH_TOKEN. With DW_AUTH_DRIVER=signature the bearer "
                        "value is the hex HMAC-SHA256 of the body (or send X-Signature); "
                        "with DW_AUTH_DRIVER=none no credential is needed."
                    ),
                }
            },
            "parameters": {
                "ControlPlaneVersion": {
                    "name": CONTROL_PLANE_HEADER,
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "enum": ["2"]},
                },
                "ControlPlaneVersionOptional": {
                    "name": CONTROL_PLANE_HEADER,
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "enum": ["2"]},
                },
                "WorkerProtocolVersion": {
                    "name": WORKER_PROTOCOL_HEADER,
                    "in": "header",
                    "required": True,
                    "description": "1.0 up to the advertised minor (cluster/info).",
                    "schema": {"type": "string", "pattern": r"^1\.[0-9]+$"},
                },
                "Namespace": {
                    "name": "X-Namespace",
                    "in": "header",
                    "required": False,
                    "description": "The namespace (default: the server's default namespace).",
                    "schema": {"type": "string"},
                },
            },
            "schemas": schemas,
        },
    }
