"""Control-plane commands on a live run: signal, cancel, terminate (control-plane.md §5.6-§5.10).

Each is a store operation (one transaction) returning an ``Outcome`` whose
body is the command receipt; the HTTP layer publishes its wakes after commit.

* The target is the instance's current run, locked for the whole use case; a
  run-targeted route naming any other run is refused.
* Every decision, accepted or rejected, is a ``workflow_commands`` row that
  keeps its receipt. A repeated ``request_id`` (the SDK resends the same key
  on transport retries) gets that receipt back with ``retained: true``
  instead of a second signal; the same key with another intent is a
  ``request_id_conflict``.
* A signal appends ``SignalReceived`` at once (even while a workflow task is
  leased) and wakes the run; cancel and terminate close the run immediately
  through ``close_run`` (workflow code is not resumed).
"""

from __future__ import annotations

from typing import Any, Final, Literal

import attrs

from dwtrio import payloads
from dwtrio.engine.closing import close_run
from dwtrio.engine.outcome import Outcome, Verdict
from dwtrio.engine.wakes import request_wake
from dwtrio.errors import (
    HistoricalRunCommandRejectedError,
    InstanceNotFoundError,
    RequestIdConflictError,
    RetryableStoreError,
)
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.responses import OMIT, CommandReceipt, render
from dwtrio.store import runs, workflow_commands
from dwtrio.store import workflows as store
from dwtrio.store.history import NewEvent, append_events
from dwtrio.store.pool import Conn
from dwtrio.store.runs import LockedRun

CloseKind = Literal["cancel", "terminate"]

COMMAND_SOURCE: Final = "control_plane"
RUN_NOT_ACTIVE: Final = "run_not_active"
REJECTED_NOT_ACTIVE: Final = "rejected_not_active"
SIGNAL_RECEIVED: Final = "signal_received"
#: Re-reads of the current run when it keeps rolling over (continue-as-new) mid-command.
CURRENT_RUN_ATTEMPTS: Final = 3
#: Per close kind: (run status = closed_reason = outcome, request event, closing event).
CLOSES: Final[dict[str, tuple[str, str, str]]] = {
    "cancel": ("cancelled", "CancelRequested", "WorkflowCancelled"),
    "terminate": ("terminated", "TerminateRequested", "WorkflowTerminated"),
}
#: The verdict on an accepted command: a signal waits for the workflow, a close is done.
ACCEPTED: Final = {
    "signal": Verdict.ACCEPTED,
    "cancel": Verdict.DONE,
    "terminate": Verdict.DONE,
    "repair": Verdict.DONE,
    "archive": Verdict.DONE,
    "redrive": Verdict.ACCEPTED,
}


@attrs.frozen(kw_only=True)
class Target:
    """Who a command addresses: an instance, or one run of it (``run_id`` from the path)."""

    namespace: str
    workflow_id: str
    run_id: str | None = None
    request_id: str | None = None

    @property
    def scope(self) -> str:
        return "instance" if self.run_id is None else "run"


@attrs.frozen(kw_only=True)
class SignalCommand:
    target: Target
    signal_name: str
    #: The argument list blob (``payloads.start_input`` of the request ``input``).
    arguments: str


@attrs.frozen(kw_only=True)
class CloseCommand:
    target: Target
    kind: CloseKind
    reason: str | None = None


# --- shared steps ------------------------------------------------------------------------
async def lock_target(conn: Conn, target: Target) -> LockedRun:
    """Lock the instance's current run.

    Raises:
        InstanceNotFoundError: no such instance in this namespace.
        RetryableStoreError: the current run kept changing while we locked it.
    """
    for _ in range(CURRENT_RUN_ATTEMPTS):
        instance = await store.get_instance_for_start(conn, target.workflow_id)
        if (
            instance is None
            or instance.namespace != target.namespace
            or instance.current_run_id is None
        ):
            raise InstanceNotFoundError(
                f"Workflow {target.workflow_id!r} was not found.", workflow_id=target.workflow_id
            )
        run = await runs.lock_run(conn, instance.current_run_id)
        if run is not None and await store.get_current_run_id(conn, target.workflow_id) == run.id:
            return run
    raise RetryableStoreError("The workflow's current run changed during the command; retry.")


def check_scope(target: Target, run: LockedRun) -> None:
    """A run-targeted command must name the current run (checked after retained receipts).

    Raises:
        HistoricalRunCommandRejectedError: the path names another run.
    """
    if target.run_id is not None and target.run_id != run.id:
        raise HistoricalRunCommandRejectedError(
            f"Run {target.run_id!r} is not the current run of workflow "
            f"{target.workflow_id!r}; commands may only target the current run.",
            workflow_id=target.workflow_id,
            run_id=target.run_id,
            target_scope="run",
        )


async def find_retained(
    conn: Conn, target: Target, command_type: str, intent: dict[str, Any]
) -> Outcome | None:
    """The receipt already given for ``target.request_id``, or None when the key is new.

    Raises:
        RequestIdConflictError: the key was used for a command with another intent.
    """
    if target.request_id is None:
        return None
    row = await workflow_commands.find_retained_command(
        conn,
        workflow_id=target.workflow_id,
        command_type=command_type,
        request_id=target.request_id,
    )
    if row is None:
        return None
    kept = (row.context or {}).get("intent") or {}
    conflict = sorted(k for k in intent.keys() | kept.keys() if intent.get(k) != kept.get(k))
    if conflict:
        raise RequestIdConflictError(
            f"Request id {target.request_id!r} is already retained for a {command_type} "
            "with a different intent.",
            request_id=target.request_id,
            retained_command_id=row.id,
            retained_command_type=command_type,
            retained_outcome=row.outcome,
            conflict=conflict,
        )
    body = {**(row.response or {}), "retained": True, "intent_verified": True}
    verdict = ACCEPTED[command_type] if row.status == "accepted" else Verdict.REJECTED
    return Outcome(body=body, verdict=verdict)


@attrs.frozen(kw_only=True)
class Recorded:
    """What a command row needs beyond the target and run."""

    command_type: str
    intent: dict[str, Any]
    accepted: bool
    outcome: str
    reason: str | None = None
    payload: str | None = None
    signal_name: str = OMIT
    #: Why a refused command was refused, and the text that says so (default: run closed).
    rejection_reason: str = RUN_NOT_ACTIVE
    rejection_message: str | None = None
    #: Operation-specific receipt fields (repair's ``repair``, archive's ``archived_at``).
    receipt_extra: dict[str, Any] = attrs.field(factory=dict)
    #: The command's id when the caller needed it before the record (archive's stamp).
    command_id: str | None = None
    #: The receipt's ``run_id`` when it is not the targeted run (redrive's new run).
    run_id: str | None = None


async def record_command(
    conn: Conn, target: Target, run: LockedRun, rec: Recorded
) -> tuple[CommandReceipt, int | None]:
    """Insert the command row with its receipt.

    Returns the receipt (the response body) and the run's open condition wait
    sequence, if any.
    """
    slot = await workflow_commands.allocate_command_slot(conn, run.id)
    command_id = rec.command_id or new_id()
    status = "accepted" if rec.accepted else "rejected"
    rejection = None if rec.accepted else rec.rejection_reason
    body = CommandReceipt(
        outcome=rec.outcome,
        workflow_id=run.workflow_id,
        run_id=rec.run_id or run.id,
        requested_run_id=target.run_id,
        resolved_run_id=run.id,
        command_id=command_id,
        command_sequence=slot.last_command_sequence,
        target_scope=target.scope,
        workflow_type=run.workflow_type,
        command_status=status,
        command_source=COMMAND_SOURCE,
        reason=rec.reason if rec.accepted else rejection,
        rejection_reason=rejection,
        validation_errors=[],
        request_id=target.request_id,
        retained=False,
        signal_name=rec.signal_name,
        message=OMIT
        if rec.accepted
        else rec.rejection_message
        or f"Workflow {run.workflow_id!r} is not running (status {run.status}).",
        **rec.receipt_extra,
    )
    await workflow_commands.insert_control_command(
        conn,
        id=command_id,
        run=run,
        requested_run_id=target.run_id,
        command_type=rec.command_type,
        target_scope=target.scope,
        context={"request_id": target.request_id, "intent": rec.intent},
        status=status,
        outcome=rec.outcome,
        rejection_reason=rejection,
        payload=rec.payload,
        command_sequence=slot.last_command_sequence,
        request_id=target.request_id,
        response=render(body),
    )
    return body, slot.open_wait_sequence


# --- signal --------------------------------------------------------------------------------
async def signal_workflow(conn: Conn, cmd: SignalCommand) -> Outcome:
    """Record a signal, append ``SignalReceived`` and wake the run (202), or refuse it (409)."""
    target = cmd.target
    run = await lock_target(conn, target)
    intent = {"signal_name": cmd.signal_name, "arguments": cmd.arguments, "run_id": target.run_id}
    if (retained := await find_retained(conn, target, "signal", intent)) is not None:
        return retained
    check_scope(target, run)
    rec = Recorded(
        command_type="signal",
        intent=intent,
        accepted=run.is_open,
        outcome=SIGNAL_RECEIVED if run.is_open else REJECTED_NOT_ACTIVE,
        payload=cmd.arguments,
        signal_name=cmd.signal_name,
    )
    body, wait_sequence = await record_command(conn, target, run, rec)
    if not run.is_open:
        return Outcome(body=body, verdict=Verdict.REJECTED)
    signal_id = new_id()
    await workflow_commands.insert_workflow_signal(
        conn,
        id=signal_id,
        command_id=body.command_id,
        workflow_id=run.workflow_id,
        run_id=run.id,
        signal_name=cmd.signal_name,
        arguments=cmd.arguments,
        workflow_sequence=wait_sequence,
    )
    event: dict[str, Any] = {
        "signal_name": cmd.signal_name,
        "arguments": payloads.envelope(cmd.arguments),
        "payload_codec": payloads.CODEC,
        "signal_id": signal_id,
        "workflow_command_id": body.command_id,
        "workflow_instance_id": run.workflow_id,
        "workflow_run_id": run.id,
    }
    if wait_sequence is not None:
        event["workflow_sequence"] = wait_sequence
    await append_events(
        conn,
        run.id,
        [NewEvent(event_type="SignalReceived", payload=event, workflow_command_id=body.command_id)],
    )
    outcome = Outcome(body=body, verdict=ACCEPTED["signal"])
    await request_wake(conn, run, outcome)
    return outcome


# --- cancel and terminate ----------------------------------------------------------------------
async def close_workflow(conn: Conn, cmd: CloseCommand) -> Outcome:
    """Cancel or terminate the current run at once (200), or refuse a closed one (409).

    The closing event carries ``reason`` only when the caller gave one: the
    SDK's ``get_result`` falls back to its own text for a missing key but
    would surface a stored null.
    """
    target = cmd.target
    run = await lock_target(conn, target)
    intent = {"reason": cmd.reason, "run_id": target.run_id}
    if (retained := await find_retained(conn, target, cmd.kind, intent)) is not None:
        return retained
    check_scope(target, run)
    status, requested_event, closing_event = CLOSES[cmd.kind]
    rec = Recorded(
        command_type=cmd.kind,
        intent=intent,
        accepted=run.is_open,
        outcome=status if run.is_open else REJECTED_NOT_ACTIVE,
        reason=cmd.reason,
    )
    body, _ = await record_command(conn, target, run, rec)
    if not run.is_open:
        return Outcome(body=body, verdict=Verdict.REJECTED)
    command_id = body.command_id
    ids = {
        "workflow_command_id": command_id,
        "workflow_instance_id": run.workflow_id,
        "workflow_run_id": run.id,
    }
    with_reason = {} if cmd.reason is None else {"reason": cmd.reason}
    closed = {
        **ids,
        **with_reason,
        "closed_reason": status,
        "message": cmd.reason or f"Workflow was {status}.",
    }
    await append_events(
        conn,
        run.id,
        [
            NewEvent(
                event_type=requested_event,
                payload={**ids, **with_reason},
                workflow_command_id=command_id,
            ),
            NewEvent(event_type=closing_event, payload=closed, workflow_command_id=command_id),
        ],
    )
    outcome = Outcome(body=body, verdict=ACCEPTED[cmd.kind])
    await close_run(conn, run, outcome, status=status, reason=status)
    return outcome
