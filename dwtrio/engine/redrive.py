"""Redrive: continue a failed run in a new run that reuses its completed steps
(``POST /api/workflows/{wf}/runs/{run}/redrive``, docs/workflow-maintenance.md).

A control-plane command with the rules of ``engine/workflow_commands.py``: the
instance's current run is locked, the path must name that run, the decision is
a ``workflow_commands`` row (on the failed run) keeping its receipt, and a
repeated ``request_id`` gets that receipt back.

* Only a run that failed (``status`` and ``closed_reason`` ``failed``) can be
  redriven; it must be the instance's current run, not archived, not a child
  run, and its instance's execution deadline must not have passed. Refusals are
  409 receipts (``command_status: rejected``) with a ``rejection_reason``.
* The failed run is left as it was (closed, its history final). A new run of
  the same instance (run number + 1, ``continued_from_run_id`` = the failed run,
  same type, queue, input, memo and search attributes, a fresh run deadline)
  becomes the current run and gets a workflow task.
* The new run's history is a fresh ``WorkflowStarted`` (with
  ``redriven_from_run_id``) followed by the failed run's events, in order, each
  marked ``reused_from_run_id``, minus the closing ``WorkflowFailed`` and minus
  the step that failed it when that was the last step and an activity that ended
  failed or timed out. Replaying that history, the worker finds the completed
  activities' results and does not run them again; the failed activity is
  scheduled anew. When the workflow code itself raised, every step is kept and
  the code runs on past them.
* A history this cannot carry over faithfully is refused (``unsupported_history``):
  child workflows, updates, parallel groups, or any event kind not listed in
  :data:`STEP_EVENTS` / :data:`COPIED_EVENTS` / :data:`DROPPED_EVENTS`; so is a
  kept step that never resolved (``unresolved_step``), since nothing in the new
  run would ever resolve it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import attrs

from dwtrio import payloads, wire
from dwtrio.engine.outcome import Outcome, Verdict
from dwtrio.engine.wakes import create_workflow_task
from dwtrio.engine.workflow_commands import (
    Recorded,
    Target,
    check_scope,
    find_retained,
    lock_target,
    record_command,
)
from dwtrio.errors import RunNotFoundError
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.responses import RedriveDetails
from dwtrio.store import history, redrive
from dwtrio.store import workflows as store
from dwtrio.store.history import EventRow, NewEvent, append_events
from dwtrio.store.pool import Conn
from dwtrio.store.redrive import RedriveInstance, RedriveSource
from dwtrio.store.runs import LockedRun

REDRIVEN: Final = "redriven"
#: Refusals: the receipt's ``outcome`` is ``rejected_<reason>``.
RUN_NOT_FAILED: Final = "run_not_failed"
RUN_ARCHIVED: Final = "run_archived"
RUN_HAS_PARENT: Final = "run_has_parent"
EXECUTION_DEADLINE_PASSED: Final = "execution_deadline_passed"
UNSUPPORTED_HISTORY: Final = "unsupported_history"
UNRESOLVED_STEP: Final = "unresolved_step"

#: Events of a workflow step (their payload ``sequence`` is the step's number).
STEP_EVENTS: Final = frozenset(
    {
        "ActivityScheduled",
        "ActivityStarted",
        "ActivityRetryScheduled",
        "ActivityCompleted",
        "ActivityFailed",
        "ActivityTimedOut",
        "TimerScheduled",
        "TimerFired",
        "TimerCancelled",
        "ConditionWaitOpened",
        "ConditionWaitSatisfied",
        "ConditionWaitTimedOut",
        "SideEffectRecorded",
        "VersionMarkerRecorded",
        "MemoUpserted",
        "SearchAttributesUpserted",
    }
)
#: A step with one of these events has its result recorded (replay resolves it).
RESOLVING_EVENTS: Final = frozenset(
    {
        "ActivityCompleted",
        "ActivityFailed",
        "ActivityTimedOut",
        "TimerFired",
        "TimerCancelled",
        "ConditionWaitSatisfied",
        "ConditionWaitTimedOut",
        "SideEffectRecorded",
        "VersionMarkerRecorded",
        "MemoUpserted",
        "SearchAttributesUpserted",
    }
)
#: Copied as they are, outside any step.
COPIED_EVENTS: Final = frozenset({"SignalReceived"})
#: Left behind: the start (written anew), the failure, and the old run's own bookkeeping.
DROPPED_EVENTS: Final = frozenset(
    {"StartAccepted", "WorkflowStarted", "WorkflowFailed", "RepairRequested"}
)
#: Events read from the failed run per page.
PAGE_SIZE: Final = 1000


@attrs.frozen(kw_only=True)
class RedriveCommand:
    target: Target


@attrs.frozen(kw_only=True)
class RedrivePlan:
    """What the new run starts from."""

    #: The failed run's ``WorkflowStarted`` payload (the new one is built from it).
    started: dict[str, Any]
    #: The failed run's events the new run replays, in order.
    kept: list[EventRow]
    #: The new run's step counter: the last step it replays.
    last_step_sequence: int
    #: The failed activity step scheduled anew, when the failure was one.
    retried_step_sequence: int | None
    reused_steps: int


@attrs.frozen(kw_only=True)
class Refusal:
    reason: str
    message: str


def plan_redrive(events: Sequence[EventRow], last_step_sequence: int) -> RedrivePlan | Refusal:
    """Decide from the failed run's whole history what the new run replays (pure)."""
    started: dict[str, Any] | None = None
    steps: dict[int, list[EventRow]] = {}
    body: list[EventRow] = []
    for event in events:
        kind, payload = event.event_type, event.payload or {}
        if kind == "WorkflowStarted" and started is None:
            started = payload
        if kind in DROPPED_EVENTS:
            continue
        if kind not in STEP_EVENTS and kind not in COPIED_EVENTS:
            return Refusal(
                reason=UNSUPPORTED_HISTORY,
                message=f"The run's history holds a {kind} event, which a redrive cannot "
                "carry over.",
            )
        if any(key.startswith("parallel_group") for key in payload):
            return Refusal(
                reason=UNSUPPORTED_HISTORY,
                message="The run's history holds parallel steps, which a redrive cannot "
                "carry over.",
            )
        if kind in STEP_EVENTS:
            sequence = payload.get("sequence")
            if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
                return Refusal(
                    reason=UNSUPPORTED_HISTORY,
                    message=f"A {kind} event of the run has no step sequence.",
                )
            steps.setdefault(sequence, []).append(event)
        body.append(event)
    if started is None:
        return Refusal(reason=UNSUPPORTED_HISTORY, message="The run's history has no start.")
    if started.get("parent_workflow_run_id") is not None:
        return Refusal(
            reason=RUN_HAS_PARENT,
            message="The run is a child workflow; its failure was already reported to its "
            "parent, so it is not redriven.",
        )
    retried: int | None = None
    if steps:
        last = max(steps)
        kinds = [e.event_type for e in steps[last]]
        if (
            last == last_step_sequence
            and "ActivityScheduled" in kinds
            and "ActivityCompleted" not in kinds
            and kinds[-1] in ("ActivityFailed", "ActivityTimedOut")
        ):
            retried = last
    kept = [e for e in body if retried is None or (e.payload or {}).get("sequence") != retried]
    kept_steps = {seq: group for seq, group in steps.items() if seq != retried}
    for seq in sorted(kept_steps):
        if not any(e.event_type in RESOLVING_EVENTS for e in kept_steps[seq]):
            return Refusal(
                reason=UNRESOLVED_STEP,
                message=f"Step {seq} of the run never resolved; a new run could not "
                "resolve it either.",
            )
    return RedrivePlan(
        started=started,
        kept=kept,
        last_step_sequence=last_step_sequence - 1 if retried is not None else last_step_sequence,
        retried_step_sequence=retried,
        reused_steps=len(kept_steps),
    )


async def _read_history(conn: Conn, run_id: str) -> list[EventRow]:
    events: list[EventRow] = []
    while page := await history.list_events(
        conn, run_id, events[-1].sequence if events else 0, PAGE_SIZE
    ):
        events.extend(page)
    return events


def _refusal(run: LockedRun, source: RedriveSource, instance: RedriveInstance) -> Refusal | None:
    """Why the locked current run cannot be redriven, before its history is read."""
    if run.status != "failed" or source.closed_reason != "failed":
        state = run.status if run.is_open else f"{run.status} ({source.closed_reason})"
        return Refusal(
            reason=RUN_NOT_FAILED,
            message=f"Run {run.id!r} is {state}; only a failed run can be redriven.",
        )
    if run.hosts_standalone_activity:
        # No workflow code would replay it: its only step is the activity.
        return Refusal(
            reason=UNSUPPORTED_HISTORY,
            message=f"Run {run.id!r} hosts a standalone activity; start a new one instead.",
        )
    if source.archived:
        return Refusal(
            reason=RUN_ARCHIVED, message=f"Run {run.id!r} is archived; it is not redriven."
        )
    if instance.execution_deadline_passed:
        return Refusal(
            reason=EXECUTION_DEADLINE_PASSED,
            message=f"The execution deadline of workflow {run.workflow_id!r} has passed.",
        )
    return None


async def redrive_workflow(conn: Conn, cmd: RedriveCommand) -> Outcome:
    """Start a new run that continues a failed one (202), or refuse (409)."""
    target = cmd.target
    assert target.run_id is not None  # the route names the run
    run = await lock_target(conn, target)
    intent = {"run_id": target.run_id}
    if (retained := await find_retained(conn, target, "redrive", intent)) is not None:
        return retained
    if target.run_id != run.id and not await redrive.run_in_instance(
        conn, run_id=target.run_id, workflow_id=target.workflow_id, namespace=target.namespace
    ):
        raise RunNotFoundError(
            f"Run {target.run_id!r} of workflow {target.workflow_id!r} was not found.",
            workflow_id=target.workflow_id,
            run_id=target.run_id,
        )
    check_scope(target, run)
    source = await redrive.get_redrive_source(conn, run.id)
    instance = await redrive.lock_instance_for_redrive(conn, run.workflow_id)
    refusal = _refusal(run, source, instance)
    plan: RedrivePlan | Refusal = (
        refusal
        if refusal is not None
        else plan_redrive(await _read_history(conn, run.id), source.last_step_sequence)
    )
    if isinstance(plan, Refusal):
        rec = Recorded(
            command_type="redrive",
            intent=intent,
            accepted=False,
            outcome=f"rejected_{plan.reason}",
            rejection_reason=plan.reason,
            rejection_message=plan.message,
        )
        body, _ = await record_command(conn, target, run, rec)
        return Outcome(body=body, verdict=Verdict.REJECTED)

    outcome = Outcome(verdict=Verdict.ACCEPTED)
    command_id, new_run_id = new_id(), new_id()
    run_number = instance.run_count + 1
    row = await store.insert_continued_run(
        conn,
        run_id=new_run_id,
        previous_run_id=run.id,
        run_number=run_number,
        workflow_type=None,
        task_queue=run.task_queue,
        arguments=run.arguments or payloads.EMPTY_LIST_BLOB,
    )
    await redrive.set_reused_steps(
        conn, run_id=new_run_id, last_step_sequence=plan.last_step_sequence
    )
    started = {
        **plan.started,
        "workflow_run_id": new_run_id,
        "run_number": run_number,
        "memo": row.memo,
        "search_attributes": row.search_attributes,
        "execution_timeout_seconds": instance.execution_timeout_seconds,
        "run_timeout_seconds": row.run_timeout_seconds,
        "execution_deadline_at": wire.iso_z(row.execution_deadline_at),
        "run_deadline_at": wire.iso_z(row.run_deadline_at),
        "continued_from_run_id": run.id,
        "redriven_from_run_id": run.id,
        "workflow_command_id": command_id,
    }
    reused = [
        NewEvent(event_type=e.event_type, payload={**e.payload, "reused_from_run_id": run.id})
        for e in plan.kept
    ]
    await append_events(
        conn,
        new_run_id,
        [
            NewEvent(event_type="WorkflowStarted", payload=started, workflow_command_id=command_id),
            *reused,
        ],
    )
    successor = LockedRun.inserted(
        id=new_run_id,
        workflow_id=run.workflow_id,
        namespace=run.namespace,
        workflow_type=row.workflow_type,
        task_queue=run.task_queue,
        arguments=run.arguments,
        compatibility=row.compatibility,
    )
    task_id = await create_workflow_task(conn, successor, outcome)
    details = RedriveDetails(
        source_run_id=run.id,
        run_id=new_run_id,
        run_number=run_number,
        reused_steps=plan.reused_steps,
        retried_step_sequence=plan.retried_step_sequence,
        task_id=task_id,
    )
    rec = Recorded(
        command_type="redrive",
        intent=intent,
        accepted=True,
        outcome=REDRIVEN,
        receipt_extra={"redrive": details},
        command_id=command_id,
        run_id=new_run_id,
    )
    body, _ = await record_command(conn, target, run, rec)
    outcome.body = body
    return outcome
