"""Operator maintenance commands on a run: repair and archive (control-plane.md §5.11).

Both are control-plane commands with the rules of ``engine/workflow_commands.py``:
the instance's current run is locked for the whole use case, a run-targeted
route must name that run, every decision is a ``workflow_commands`` row keeping
its receipt, and a repeated ``request_id`` gets that receipt back
(``retained: true``) or, with another intent, ``request_id_conflict``.

* **repair** (``engine/repair.py``'s :func:`~dwtrio.engine.repair.repair_run`):
  the run's expired leases are released and a workflow task it needs but lacks
  is created. ``repair_dispatched`` when either happened (a ``RepairRequested``
  event records it in the run's history), ``repair_not_needed`` otherwise,
  closed runs included. Always accepted (200).
* **archive**: a closed run gets ``archived_at``, ``archive_command_id`` and
  ``archive_reason``; outcome ``archived``, or ``archive_not_needed`` when it
  already was (the first archive's time in ``archived_at``). An open run is
  refused: 409 ``rejected_run_not_closed`` / ``run_not_closed``. Nothing is
  appended to the history of a closed run.
"""

from __future__ import annotations

from typing import Final

import attrs

from dwtrio import wire
from dwtrio.engine.outcome import Outcome, Verdict
from dwtrio.engine.repair import repair_run
from dwtrio.engine.workflow_commands import (
    Recorded,
    Target,
    check_scope,
    find_retained,
    lock_target,
    record_command,
)
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.responses import RepairDetails
from dwtrio.store import archive
from dwtrio.store.history import NewEvent, append_events
from dwtrio.store.pool import Conn

REPAIR_DISPATCHED: Final = "repair_dispatched"
REPAIR_NOT_NEEDED: Final = "repair_not_needed"
ARCHIVED: Final = "archived"
ARCHIVE_NOT_NEEDED: Final = "archive_not_needed"
REJECTED_RUN_NOT_CLOSED: Final = "rejected_run_not_closed"
RUN_NOT_CLOSED: Final = "run_not_closed"


@attrs.frozen(kw_only=True)
class RepairCommand:
    target: Target


@attrs.frozen(kw_only=True)
class ArchiveCommand:
    target: Target
    reason: str | None = None


async def repair_workflow(conn: Conn, cmd: RepairCommand) -> Outcome:
    """Repair the current run: release its expired leases, give it a missing workflow task."""
    target = cmd.target
    run = await lock_target(conn, target)
    intent = {"run_id": target.run_id}
    if (retained := await find_retained(conn, target, "repair", intent)) is not None:
        return retained
    check_scope(target, run)
    outcome = Outcome(verdict=Verdict.DONE)
    done = await repair_run(conn, run, outcome)
    details = RepairDetails(
        workflow_leases_released=done.workflow_leases_released,
        activity_leases_released=done.activity_leases_released,
        missing_workflow_task=done.missing_task_reason,
        created_task_id=done.created_task_id,
    )
    rec = Recorded(
        command_type="repair",
        intent=intent,
        accepted=True,
        outcome=REPAIR_DISPATCHED if done.dispatched else REPAIR_NOT_NEEDED,
        receipt_extra={"repair": details},
    )
    body, _ = await record_command(conn, target, run, rec)
    outcome.body = body
    if done.dispatched:
        event = {
            "workflow_command_id": body.command_id,
            "workflow_instance_id": run.workflow_id,
            "workflow_run_id": run.id,
            **wire.unstructure(details),
        }
        await append_events(
            conn,
            run.id,
            [
                NewEvent(
                    event_type="RepairRequested",
                    payload=event,
                    workflow_command_id=body.command_id,
                )
            ],
        )
    return outcome


async def archive_workflow(conn: Conn, cmd: ArchiveCommand) -> Outcome:
    """Archive the current run when it is closed (200), or refuse an open one (409)."""
    target = cmd.target
    run = await lock_target(conn, target)
    intent = {"reason": cmd.reason, "run_id": target.run_id}
    if (retained := await find_retained(conn, target, "archive", intent)) is not None:
        return retained
    check_scope(target, run)
    if run.is_open:
        rec = Recorded(
            command_type="archive",
            intent=intent,
            accepted=False,
            outcome=REJECTED_RUN_NOT_CLOSED,
            rejection_reason=RUN_NOT_CLOSED,
            rejection_message=(
                f"Workflow {run.workflow_id!r} is still open (status {run.status}); "
                "only a closed run can be archived."
            ),
        )
        body, _ = await record_command(conn, target, run, rec)
        return Outcome(body=body, verdict=Verdict.REJECTED)
    stamp = await archive.get_run_archive(conn, run_id=run.id)
    archived_at = stamp.archived_at
    command_id = new_id()
    if archived_at is None:
        archived_at = await archive.archive_run(
            conn, run_id=run.id, command_id=command_id, reason=cmd.reason
        )
    rec = Recorded(
        command_type="archive",
        intent=intent,
        accepted=True,
        outcome=ARCHIVE_NOT_NEEDED if stamp.archived_at is not None else ARCHIVED,
        reason=cmd.reason,
        receipt_extra={"archived_at": wire.iso_z(archived_at)},
        command_id=command_id,
    )
    body, _ = await record_command(conn, target, run, rec)
    return Outcome(body=body, verdict=Verdict.DONE)
