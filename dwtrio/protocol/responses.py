"""Response bodies as attrs models: the shape of each answer, field by field, in wire order.

The engine builds these; the http layer renders them (``wire.unstructure``, then
the ``control_plane`` envelope and the worker-plane fields where they apply).
Every field is on the wire in the order declared here. A field whose value is
:data:`OMIT` is left out of the body altogether (as ``message`` on an accepted
command), which is different from a field rendered as ``null``.

New answers get a model here; older ones still built as dicts move over as
they are touched.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from dwtrio import wire


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"

    def __bool__(self) -> bool:
        return False


#: The default of a field that is left out of the body unless set.
OMIT: Final[Any] = _Omit()


@attrs.frozen(kw_only=True)
class ResponseBody:
    """Base of every response model: rendering leaves out fields set to :data:`OMIT`."""


def _renders(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, ResponseBody)


def _omitting(cls: type) -> Any:
    # Not cattrs' omit_if_default: its generated function moves omittable fields to the
    # end of the object, and the order of the keys is part of the wire.
    names = tuple(a.name for a in attrs.fields(cls))
    unstructure = wire.converter.unstructure

    def hook(obj: Any) -> dict[str, Any]:
        return {n: unstructure(v) for n in names if (v := getattr(obj, n)) is not OMIT}

    return hook


wire.converter.register_unstructure_hook_factory(_renders, _omitting)


def render(body: dict[str, Any] | ResponseBody) -> dict[str, Any]:
    """The JSON object of a body: a model unstructured, a dict as it is."""
    if isinstance(body, dict):
        return body
    rendered: dict[str, Any] = wire.unstructure(body)
    return rendered


@attrs.frozen(kw_only=True)
class StartResponse(ResponseBody):
    """``POST /api/workflows``: started (201), an existing run returned (200) or refused (409)."""

    workflow_id: str
    run_id: str
    workflow_type: str
    namespace: str
    status: str
    business_key: str | None
    payload_codec: str
    outcome: str
    reason: str | None
    rejection_reason: str | None
    command_status: str
    command_source: str
    message: str = OMIT


@attrs.frozen(kw_only=True)
class CommandReceipt(ResponseBody):
    """A signal, cancel or terminate, recorded (and kept: a retry with the same
    ``request_id`` is answered from the stored receipt)."""

    outcome: str
    workflow_id: str
    run_id: str
    requested_run_id: str | None
    resolved_run_id: str
    command_id: str
    command_sequence: int
    target_scope: str
    workflow_type: str
    command_status: str
    command_source: str
    reason: str | None
    rejection_reason: str | None
    validation_errors: list[Any]
    request_id: str | None
    retained: bool
    signal_name: str = OMIT
    message: str = OMIT
    #: Repair: what was done to the run (docs/workflow-maintenance.md).
    repair: RepairDetails = OMIT
    #: Archive: when the run was archived (the first archive's time on a repeat).
    archived_at: str | None = OMIT
    #: Redrive: the new run and what it reuses of the failed one.
    redrive: RedriveDetails = OMIT


@attrs.frozen(kw_only=True)
class RepairDetails(ResponseBody):
    """What a repair command did to its run."""

    workflow_leases_released: int
    activity_leases_released: int
    missing_workflow_task: str | None
    created_task_id: str | None


@attrs.frozen(kw_only=True)
class RedriveDetails(ResponseBody):
    """What a redrive started: the new run, and what it carries over from the failed one."""

    source_run_id: str
    run_id: str
    run_number: int
    #: Steps of the failed run the new run replays from their recorded results.
    reused_steps: int
    #: The failed activity step scheduled anew (null: the workflow code itself failed).
    retried_step_sequence: int | None
    task_id: str


@attrs.frozen(kw_only=True)
class WorkflowTaskCompleted(ResponseBody):
    """The answer to a workflow task's complete."""

    task_id: str
    workflow_task_attempt: int
    outcome: str
    recorded: bool
    run_id: str
    run_status: str
    created_task_ids: list[str]
    reason: str | None


@attrs.frozen(kw_only=True)
class WorkflowTaskFailed(ResponseBody):
    """The answer to a workflow task's fail (``waiting_for_history`` or a real failure)."""

    task_id: str
    workflow_task_attempt: int
    recorded: bool
    outcome: str
    reason: str | None
    next_task_id: str | None
    #: Only for a real failure: when the task is offered again.
    retry_after_seconds: int = OMIT


@attrs.frozen(kw_only=True)
class ActivityReport(ResponseBody):
    """The answer to an activity attempt's complete or fail."""

    task_id: str
    activity_attempt_id: str
    outcome: str
    recorded: bool
    reason: str | None
    retry_available_at: str | None = OMIT
    next_task_id: str | None


@attrs.frozen(kw_only=True)
class ScheduleAnswer(ResponseBody):
    """The answer to a schedule change or trigger: ``{schedule_id, outcome}`` and what
    the operation has to say (control-plane.md §7.1, §7.4, §7.5)."""

    schedule_id: str
    outcome: str
    namespace: str = OMIT
    status: str = OMIT
    paused: bool = OMIT
    note: str | None = OMIT
    workflow_id: str = OMIT
    run_id: str = OMIT
    reason: str = OMIT
    buffer_depth: int = OMIT
    next_fire_at: str | None = OMIT
    paused_at: str | None = OMIT
    resumed_at: str = OMIT
    created_at: str = OMIT
    updated_at: str = OMIT
    deleted_at: str | None = OMIT


@attrs.frozen(kw_only=True)
class BackfillAnswer(ResponseBody):
    """``POST /api/schedules/{id}/backfill``: one result per occurrence in the window."""

    schedule_id: str
    outcome: str
    fires_attempted: int
    results: list[dict[str, Any]]


@attrs.frozen(kw_only=True)
class QueryTaskReport(ResponseBody):
    """The answer to a query task's complete or fail."""

    query_task_id: str
    query_task_attempt: int
    outcome: str
    reason: str | None


@attrs.frozen(kw_only=True)
class UpdateRejected(ResponseBody):
    """``POST .../update/{name}`` on a run that no longer accepts updates (409)."""

    message: str
    outcome: str
    workflow_id: str
    run_id: str
    requested_run_id: str | None
    resolved_run_id: str
    target_scope: str
    workflow_type: str
    command_status: str
    command_source: str
    reason: str
    rejection_reason: str
    validation_errors: list[Any]
    update_name: str
    update_status: str
    run_status: str


@attrs.frozen(kw_only=True)
class WorkerDescription(ResponseBody):
    """One worker of the roster (control-plane.md §10): an entry of ``GET /api/workers``
    and, with ``updated_at``, ``GET /api/workers/{id}``. ``status`` is the stored one,
    or ``stale`` once the last heartbeat is older than the stale window."""

    worker_id: str
    namespace: str
    task_queue: str
    runtime: str
    sdk_version: str | None
    build_id: str | None
    supported_workflow_types: list[str]
    workflow_definition_fingerprints: dict[str, Any]
    supported_activity_types: list[str]
    max_concurrent_workflow_tasks: int
    max_concurrent_activity_tasks: int
    status: str
    is_stale: bool
    last_heartbeat_at: str | None
    heartbeat_expires_at: str | None
    heartbeat_interval_seconds: int | None
    task_slots: dict[str, Any] | None
    process_metrics: dict[str, Any] | None
    registered_at: str
    updated_at: str = OMIT


@attrs.frozen(kw_only=True)
class WorkerList(ResponseBody):
    """``GET /api/workers``: newest heartbeat first."""

    namespace: str
    stale_after_seconds: int
    workers: list[WorkerDescription]


@attrs.frozen(kw_only=True)
class WorkerDeregistered(ResponseBody):
    """A deregistration: ``DELETE /api/workers/{id}``, the worker plane's
    ``DELETE /api/worker/registrations/{id}`` and its fenced
    ``POST .../{id}/deregister`` (the leases given back)."""

    worker_id: str
    #: The incarnation removed: fenced deregistration only (its receipt).
    registration_token: str = OMIT
    outcome: str
    recovered_workflow_task_count: int
    recovered_activity_task_count: int


@attrs.frozen(kw_only=True)
class NamespaceDeleted(ResponseBody):
    """``DELETE /api/namespaces/{ns}`` (control-plane.md §14): the namespace object, now
    ``status: "deleted"``, and how many of each thing it owned went with it."""

    name: str
    description: str | None
    retention_days: int | None
    status: str
    external_payload_storage: dict[str, Any] | None
    created_at: str | None
    updated_at: str | None
    deleted: dict[str, int]


@attrs.frozen(kw_only=True)
class BuildIdCohort(ResponseBody):
    """One build-id cohort of a task queue (schedules-and-admission.md §3): its workers
    (staleness beats the stored status) and its rollout state. ``build_id`` is null for
    the unversioned cohort."""

    build_id: str | None
    rollout_status: str
    drain_intent: str
    drained_at: str | None
    active_worker_count: int
    draining_worker_count: int
    stale_worker_count: int
    total_worker_count: int
    runtimes: list[str]
    sdk_versions: list[str]
    last_heartbeat_at: str | None
    first_seen_at: str | None
    promoted_at: str | None
    new_start_selected: bool


@attrs.frozen(kw_only=True)
class BuildIdRollout(ResponseBody):
    """``GET /api/task-queues/{tq}/build-ids``: the queue's cohorts, in rollout order."""

    namespace: str
    task_queue: str
    stale_after_seconds: int
    build_ids: list[BuildIdCohort]


@attrs.frozen(kw_only=True)
class Deployment(ResponseBody):
    """What new starts on a queue are pinned to, since when (a promote's answer)."""

    task_queue: str
    build_id: str | None
    promoted_at: str | None


@attrs.frozen(kw_only=True)
class BuildIdRolloutState(ResponseBody):
    """``POST /api/task-queues/{tq}/build-ids/drain|resume|promote``: the cohort's rollout
    state after the change; a promote adds its ``deployment``."""

    namespace: str
    task_queue: str
    build_id: str | None
    drain_intent: str
    drained_at: str | None
    promoted_at: str | None
    new_start_selected: bool
    deployment: Deployment = OMIT


@attrs.frozen(kw_only=True)
class TaskQueuePoller(ResponseBody):
    """A worker polling a task queue, as its description lists it."""

    worker_id: str
    runtime: str
    sdk_version: str | None
    build_id: str | None
    last_heartbeat_at: str | None
    heartbeat_expires_at: str | None
    status: str
    is_stale: bool
    supported_workflow_types: list[str]
    supported_activity_types: list[str]
    max_concurrent_workflow_tasks: int
    max_concurrent_activity_tasks: int


@attrs.frozen(kw_only=True)
class TaskQueueLease(ResponseBody):
    """A task leased from a task queue: a workflow lease carries ``workflow_task_attempt``,
    an activity lease ``activity_attempt_id`` and ``attempt_number``."""

    task_id: str
    task_type: str
    workflow_id: str
    run_id: str
    lease_owner: str
    lease_expires_at: str | None
    is_expired: bool
    workflow_task_attempt: int = OMIT
    activity_attempt_id: str | None = OMIT
    attempt_number: int = OMIT


@attrs.frozen(kw_only=True)
class OldestReadyTask(ResponseBody):
    task_id: str
    task_type: str
    workflow_id: str
    run_id: str
    available_at: str | None
    age_seconds: int


@attrs.frozen(kw_only=True)
class TaskKindCounts(ResponseBody):
    ready_count: int
    leased_count: int
    expired_lease_count: int


@attrs.frozen(kw_only=True)
class PollerCounts(ResponseBody):
    active_count: int
    stale_count: int
    stale_after_seconds: int


@attrs.frozen(kw_only=True)
class TaskQueueStats(ResponseBody):
    """A task queue's backlog, leases and pollers (control-plane.md §9)."""

    approximate_backlog_count: int
    approximate_backlog_age: str | None
    approximate_backlog_age_seconds: int | None
    oldest_ready_task: OldestReadyTask | None
    workflow_tasks: TaskKindCounts
    activity_tasks: TaskKindCounts
    pollers: PollerCounts


@attrs.frozen(kw_only=True)
class TaskRepairPolicy(ResponseBody):
    """The intervals of dwtrio's task repair (docs/task-queues.md)."""

    redispatch_after_seconds: int | float
    lost_worker_after_seconds: int
    scan_limit: int


@attrs.frozen(kw_only=True)
class TaskQueueRepair(ResponseBody):
    """What task repair has to do, or watches, on a task queue."""

    candidates: int
    dispatch_failed: int
    expired_leases: int
    lost_worker_leases: int
    dispatch_overdue: int
    oldest_lease_expired_at: str | None
    oldest_dispatch_overdue_since: str | None
    needs_attention: bool
    policy: TaskRepairPolicy


@attrs.frozen(kw_only=True)
class TaskQueueSummary(ResponseBody):
    """One entry of ``GET /api/task-queues``. ``admission`` holds ``workflow_tasks``,
    ``activity_tasks`` (the server part from ``engine.admission.server_budgets``) and
    ``query_tasks``."""

    name: str
    stats: TaskQueueStats
    repair: TaskQueueRepair
    admission: dict[str, Any]


@attrs.frozen(kw_only=True)
class TaskQueueList(ResponseBody):
    """``GET /api/task-queues``: every task queue of the namespace, by name."""

    namespace: str
    task_queues: list[TaskQueueSummary]


@attrs.frozen(kw_only=True)
class TaskQueueDescription(ResponseBody):
    """``GET /api/task-queues/{task_queue}``: a summary plus who polls the queue and what
    is leased from it (an unknown queue has zeros and empty lists)."""

    name: str
    namespace: str
    pollers: list[TaskQueuePoller]
    stats: TaskQueueStats
    current_leases: list[TaskQueueLease]
    repair: TaskQueueRepair
    admission: dict[str, Any]


# --- workflow debug (control-plane.md §5.5; docs/workflow-maintenance.md) ------------
@attrs.frozen(kw_only=True)
class DebugWait(ResponseBody):
    """Why an open run is not progressing by itself: what it waits on."""

    wait_kind: str | None
    wait_reason: str | None
    wait_started_at: str | None
    wait_deadline_at: str | None
    open_condition_wait: bool
    wake_pending: bool
    workflow_task: str | None
    pending_timers: int
    next_timer_at: str | None
    pending_activities: int
    open_children: int
    open_updates: int


@attrs.frozen(kw_only=True)
class DebugExecution(ResponseBody):
    status: str
    status_bucket: str
    closed_reason: str | None
    is_terminal: bool
    is_current_run: bool
    workflow_type: str
    task_queue: str
    run_number: int
    business_key: str | None
    started_at: str | None
    closed_at: str | None
    last_progress_at: str | None
    archived_at: str | None
    archive_reason: str | None
    wait: DebugWait


@attrs.frozen(kw_only=True)
class DebugWorkflowTask(ResponseBody):
    task_id: str
    task_type: str
    status: str
    workflow_update_id: str | None
    workflow_task_attempt: int
    available_at: str | None
    lease_owner: str | None
    leased_at: str | None
    lease_expires_at: str | None
    lease_expired: bool
    failure_count: int
    repair_count: int
    last_failure: dict[str, Any] | None
    created_at: str | None


@attrs.frozen(kw_only=True)
class DebugActivity(ResponseBody):
    activity_execution_id: str
    sequence: int
    activity_type: str
    task_queue: str
    status: str
    attempt_count: int
    activity_attempt_id: str | None
    scheduled_at: str | None
    started_at: str | None
    last_heartbeat_at: str | None
    next_deadline_at: str | None
    task_id: str | None
    task_status: str | None
    available_at: str | None
    lease_owner: str | None
    lease_expires_at: str | None
    lease_expired: bool


@attrs.frozen(kw_only=True)
class DebugFailure(ResponseBody):
    source: str
    source_id: str
    message: str | None
    failed_at: str | None
    failure: dict[str, Any] | None


@attrs.frozen(kw_only=True)
class DebugFinding(ResponseBody):
    severity: str
    code: str
    message: str


@attrs.frozen(kw_only=True)
class DebugEvent(ResponseBody):
    sequence: int
    event_type: str
    timestamp: str | None
    payload: dict[str, Any] = OMIT


@attrs.frozen(kw_only=True)
class WorkflowDebug(ResponseBody):
    """``GET /api/workflows/{wf}[/runs/{run}]/debug``: a bounded snapshot of one run."""

    generated_at: str | None
    workflow_id: str
    run_id: str
    namespace: str
    diagnostic_status: str
    execution: DebugExecution
    pending_workflow_tasks: list[DebugWorkflowTask]
    pending_activities: list[DebugActivity]
    task_queue: TaskQueueDescription
    recent_failures: list[DebugFailure]
    compatibility: str | None
    findings: list[DebugFinding]
    last_event: DebugEvent | None
    limits: dict[str, int]


# --- system passes (control-plane.md §11; docs/retention.md) --------------------------
@attrs.frozen(kw_only=True)
class RetentionStatus(ResponseBody):
    """``GET /api/system/retention``: the namespace's window and the runs past it."""

    namespace: str
    retention_days: int
    cutoff: str | None
    #: Expired runs, counted up to ``RETENTION_COUNT_LIMIT``.
    expired_run_count: int
    #: The oldest ``scan_limit`` of them (closed first).
    expired_run_ids: list[str]
    scan_limit: int
    #: More runs are expired than one pass of ``scan_limit`` prunes.
    scan_pressure: bool


@attrs.frozen(kw_only=True)
class RetentionRunResult(ResponseBody):
    """What a retention pass did with one run."""

    run_id: str
    outcome: str  # pruned, skipped, error
    #: pruned: the history events that went with it.
    history_events: int | Any = OMIT
    #: skipped or error: why (``run_open``, ``archived``, ``within_retention``, ...).
    reason: str | Any = OMIT
    message: str | Any = OMIT


@attrs.frozen(kw_only=True)
class RetentionPassReport(ResponseBody):
    """``POST /api/system/retention/pass`` and one tick of the retention loop."""

    namespace: str | None
    processed: int
    pruned: int
    skipped: int
    failed: int
    pruned_history_events: int
    pruned_instances: int
    results: list[RetentionRunResult]


@attrs.frozen(kw_only=True)
class ActivityTimeoutStatus(ResponseBody):
    """``GET /api/system/activity-timeouts``: activity executions past a deadline."""

    namespace: str
    expired_count: int
    expired_execution_ids: list[str]
    scan_limit: int
    scan_pressure: bool


@attrs.frozen(kw_only=True)
class ActivityTimeoutResult(ResponseBody):
    execution_id: str
    outcome: str  # enforced, skipped, error
    #: enforced: whether another attempt was scheduled (retry policy) instead of the end.
    has_retry: bool | Any = OMIT
    #: enforced: the deadline that passed; skipped or error: why.
    timeout_kind: str | Any = OMIT
    reason: str | Any = OMIT
    message: str | Any = OMIT


@attrs.frozen(kw_only=True)
class ActivityTimeoutPassReport(ResponseBody):
    """``POST /api/system/activity-timeouts/pass`` and the activity part of a timeout-loop tick."""

    namespace: str | None
    processed: int
    enforced: int
    skipped: int
    failed: int
    results: list[ActivityTimeoutResult]


@attrs.frozen(kw_only=True)
class OperatorMetricsResponse(ResponseBody):
    """``GET /api/system/operator-metrics``: a namespace's durable figures (runs, tasks,
    backlog, repair, workers, schedules) with the backend and the structural limits."""

    namespace: str
    operator_metrics: dict[str, Any]


@attrs.frozen(kw_only=True)
class SystemMetricsResponse(ResponseBody):
    """``GET /api/system/metrics``: this process's own counters, as a JSON snapshot."""

    generated_at: str
    namespace: str
    metrics: dict[str, Any]
    #: ``{"metric_label_sets": {metric: label sets}}``.
    cardinality: dict[str, Any]


@attrs.frozen(kw_only=True)
class RepairPolicySnapshot(ResponseBody):
    """The intervals and limits dwtrio's task repair really uses (docs/retention.md)."""

    #: How often the repair loop runs (DW_TASK_REPAIR_INTERVAL_SECONDS): an expired lease
    #: is redispatched at most this long after it expired.
    redispatch_after_seconds: int | float
    #: The pause between passes (the same interval: the loop has no other throttle).
    loop_throttle_seconds: int | float
    #: Leases of each kind one pass repairs at most.
    scan_limit: int
    scan_strategy: str
    #: After a failed pass the loop waits one interval, never longer.
    failure_backoff_max_seconds: int | float
    failure_backoff_strategy: str
    #: A registered worker silent this long loses its leases.
    lost_worker_after_seconds: int


@attrs.frozen(kw_only=True)
class RepairCandidateSnapshot(ResponseBody):
    existing_task_candidates: int
    expired_lease_candidates: int
    lost_worker_lease_candidates: int
    #: dwtrio finds runs missing a workflow task only when a run is named (see docs).
    missing_task_candidates: int
    total_candidates: int
    scan_limit: int
    scan_strategy: str
    selected_existing_task_candidates: int
    selected_missing_task_candidates: int
    existing_task_scan_limit_reached: bool
    missing_task_scan_limit_reached: bool
    scan_pressure: bool
    oldest_task_candidate_created_at: str | None
    oldest_missing_run_started_at: str | None
    max_task_candidate_age_ms: int | None
    max_missing_run_age_ms: int | None


@attrs.frozen(kw_only=True)
class RepairStatus(ResponseBody):
    """``GET /api/system/repair``."""

    policy: RepairPolicySnapshot
    candidates: RepairCandidateSnapshot


@attrs.frozen(kw_only=True)
class RepairFailure(ResponseBody):
    """One repair step that failed: which kind of lease, or which run, and why."""

    kind: str
    run_id: str | None
    message: str


@attrs.frozen(kw_only=True)
class RepairPassReport(ResponseBody):
    """``POST /api/system/repair/pass`` and one tick of the task-repair loop."""

    #: The runs the pass was narrowed to (``run_ids`` and ``instance_id``); null: all.
    run_ids: list[str] | None
    selected_existing_task_candidates: int
    repaired_existing_tasks: int
    expired_leases_repaired: int
    lost_worker_leases_repaired: int
    selected_missing_task_candidates: int
    repaired_missing_tasks: int
    dispatched_tasks: int
    selected_command_contract_candidates: int
    backfilled_command_contracts: int
    command_contract_backfill_unavailable: int
    command_contract_failures: list[RepairFailure]
    existing_task_failures: list[RepairFailure]
    missing_run_failures: list[RepairFailure]


@attrs.frozen(kw_only=True)
class ActivityStarted(ResponseBody):
    """``POST /api/activities`` (201): the standalone activity and its host run."""

    activity_id: str
    activity_execution_id: str
    workflow_id: str
    workflow_run_id: str
    workflow_type: str
    activity_type: str
    activity_class: str
    task_queue: str
    namespace: str
    status: str
    payload_codec: str
    started_at: str | None
    schedule_to_start_deadline_at: str | None
    schedule_to_close_deadline_at: str | None
    command_status: str
    command_source: str


@attrs.frozen(kw_only=True)
class ActivityView(ResponseBody):
    """``GET /api/activities/{id}``: the host run and its activity execution in one view;
    ``result`` is the payload envelope once the activity completed, else null."""

    activity_id: str
    workflow_id: str
    workflow_run_id: str
    workflow_type: str
    namespace: str
    activity_type: str | None
    activity_class: str | None
    activity_execution_id: str | None
    activity_status: str | None
    attempt_count: int | None
    task_queue: str
    business_key: str | None
    status: str
    status_bucket: str
    closed_reason: str | None
    started_at: str | None
    closed_at: str | None
    last_progress_at: str | None
    compatibility: str | None
    payload_codec: str | None
    schedule_to_start_deadline_at: str | None
    schedule_to_close_deadline_at: str | None
    last_heartbeat_at: str | None
    result: dict[str, Any] | None


@attrs.frozen(kw_only=True)
class ListedActivity(ResponseBody):
    """One standalone activity in ``GET /api/activities``."""

    activity_id: str
    workflow_run_id: str
    activity_type: str | None
    activity_class: str | None
    task_queue: str
    status: str
    status_bucket: str
    business_key: str | None
    started_at: str | None
    closed_at: str | None


@attrs.frozen(kw_only=True)
class ActivityList(ResponseBody):
    """``GET /api/activities``: a page, newest first."""

    activities: list[ListedActivity]
    activity_count: int
    next_page_token: str | None
