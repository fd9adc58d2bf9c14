"""Schedules: the rules behind the schedule routes and the scheduler loop.

Semantics: schedules-and-admission.md §1 (docs/schedules.md says where dwtrio
differs). Every function here runs inside one transaction that holds the
schedule's row lock, and reads the clock from the row (``db_now``, the
transaction's ``now()``), so due times are decided on the database clock.

Occurrences. ``next_occurrence_at`` is the occurrence the schedule is waiting
for and ``next_fire_at`` the same instant plus its jitter. A fire advances the
occurrence from the one it fired, never from the clock: a scheduler that runs
late fires every occurrence it missed, one per claim, as long as it is no
older than the catch-up window; older ones are counted and recorded as one
``ScheduleFiresMissed`` event instead of being lost without a trace.

The trigger algorithm (:func:`_trigger`) serves the scheduler, ``/trigger`` and
``/backfill``; a start goes through the same start path as
``POST /api/workflows`` (``engine.workflows.start_fresh``), in the same
transaction as the schedule's own update.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any, Final

import attrs

from dwtrio import payloads, wire
from dwtrio.engine.outcome import Outcome, Verdict
from dwtrio.engine.workflow_commands import CloseCommand, CloseKind, Target, close_workflow
from dwtrio.engine.workflows import StartCommand, start_fresh, start_workflow
from dwtrio.errors import DwtrioError, ScheduleNotFoundError
from dwtrio.protocol.ids import new_id
from dwtrio.protocol.responses import ScheduleAnswer, render
from dwtrio.protocol.schedule_spec import ScheduleSpec, spec_from_json
from dwtrio.protocol.schedules import BUFFER_POLICIES, merged_action
from dwtrio.protocol.workflows import DEFAULT_TASK_QUEUE
from dwtrio.store import schedules as store
from dwtrio.store.pool import Conn
from dwtrio.store.schedules import ScheduleRow

#: How many fires ``recent_actions`` keeps.
RECENT_ACTIONS: Final = 10
#: Most missed occurrences counted one by one after a long outage; beyond it the
#: count is a lower bound (``missed_count_capped``).
MISSED_COUNT_CAP: Final = 10_000
#: Fields of the ``schedule`` snapshot every history event carries (nulls left out).
SNAPSHOT_FIELDS: Final = (
    "id",
    "schedule_id",
    "namespace",
    "status",
    "overlap_policy",
    "next_fire_at",
    "last_fired_at",
    "paused_at",
    "deleted_at",
    "last_skip_reason",
    "last_skipped_at",
    "fires_count",
    "skipped_trigger_count",
    "latest_workflow_instance_id",
    "note",
)


# --- inputs -------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class ScheduleDefinition:
    """A validated create."""

    namespace: str
    schedule_id: str
    spec: ScheduleSpec
    action: dict[str, Any]
    overlap_policy: str
    jitter_seconds: int
    max_runs: int | None
    memo: dict[str, Any] | None
    search_attributes: dict[str, Any] | None
    paused: bool
    note: str | None
    context: dict[str, Any]


@attrs.frozen(kw_only=True)
class ScheduleChanges:
    """A validated update: None leaves a field as it is."""

    namespace: str
    schedule_id: str
    spec: ScheduleSpec | None = None
    #: The action fields sent: merged over the stored action under the row lock.
    action: dict[str, Any] | None = None
    overlap_policy: str | None = None
    jitter_seconds: int | None = None
    max_runs: int | None = None
    memo: dict[str, Any] | None = None
    search_attributes: dict[str, Any] | None = None
    note: str | None = None
    context: dict[str, Any] = attrs.field(factory=dict)

    def changed_fields(self) -> list[str]:
        names = (
            "spec",
            "action",
            "overlap_policy",
            "jitter_seconds",
            "max_runs",
            "memo",
            "search_attributes",
            "note",
        )
        return [n for n in names if getattr(self, n) is not None]


@attrs.frozen(kw_only=True)
class Fire:
    """What one pass of the trigger algorithm did."""

    #: triggered, buffered, buffer_full, skipped or failed.
    outcome: str
    workflow_id: str | None = None
    run_id: str | None = None
    reason: str | None = None
    buffer_depth: int | None = None


# --- small rules ----------------------------------------------------------------------------
def jittered(occurrence: datetime | None, jitter_seconds: int) -> datetime | None:
    """The fire time of an occurrence: plus a whole number of seconds in [0, jitter]."""
    if occurrence is None or jitter_seconds <= 0:
        return occurrence
    return occurrence + timedelta(seconds=random.randint(0, jitter_seconds))


def spec_of(row: ScheduleRow) -> ScheduleSpec:
    return spec_from_json(row.spec)


def _snapshot(row: ScheduleRow) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": row.id,
        "schedule_id": row.schedule_id,
        "namespace": row.namespace,
        "status": row.status,
        "overlap_policy": row.overlap_policy,
        "next_fire_at": wire.iso_offset(row.next_fire_at),
        "last_fired_at": wire.iso_offset(row.last_fired_at),
        "paused_at": wire.iso_offset(row.paused_at),
        "deleted_at": wire.iso_offset(row.deleted_at),
        "last_skip_reason": row.last_skip_reason,
        "last_skipped_at": wire.iso_offset(row.last_skipped_at),
        "fires_count": row.fires_count,
        "skipped_trigger_count": row.skipped_trigger_count,
        "latest_workflow_instance_id": row.latest_workflow_id,
        "note": row.note,
    }
    return {k: values[k] for k in SNAPSHOT_FIELDS if values[k] is not None}


async def _record(
    conn: Conn,
    row: ScheduleRow,
    event_type: str,
    payload: dict[str, Any],
    *,
    context: dict[str, Any] | None = None,
    workflow_id: str | None = None,
    run_id: str | None = None,
) -> None:
    """Append a history event carrying the schedule's state as it is now."""
    body = {**payload, "schedule": _snapshot(row)}
    if context is not None:
        body["command_context"] = context
    await store.append_schedule_event(
        conn,
        id=new_id(),
        schedule_pk=row.id,
        event_type=event_type,
        payload=body,
        workflow_id=workflow_id,
        run_id=run_id,
    )


async def _skip(conn: Conn, row: ScheduleRow, reason: str) -> ScheduleRow:
    row = attrs.evolve(
        row,
        last_skip_reason=reason,
        last_skipped_at=row.db_now,
        skipped_trigger_count=row.skipped_trigger_count + 1,
    )
    await _record(
        conn,
        row,
        "ScheduleTriggerSkipped",
        {
            "reason": reason,
            "skipped_trigger_count": row.skipped_trigger_count,
            "last_skipped_at": wire.iso_offset(row.db_now),
        },
    )
    return row


async def _delete(
    conn: Conn, row: ScheduleRow, reason: str, context: dict[str, Any] | None
) -> ScheduleRow:
    row = attrs.evolve(
        row, status="deleted", deleted_at=row.db_now, next_fire_at=None, next_occurrence_at=None
    )
    await _record(
        conn,
        row,
        "ScheduleDeleted",
        {"reason": reason, "deleted_at": wire.iso_offset(row.db_now)},
        context=context,
    )
    return row


def _start_command(row: ScheduleRow) -> StartCommand:
    action = row.action
    return StartCommand(
        namespace=row.namespace,
        workflow_id=new_id(),
        workflow_type=action["workflow_type"],
        task_queue=action.get("task_queue") or DEFAULT_TASK_QUEUE,
        input_blob=payloads.start_input(action.get("input"), field="action.input"),
        memo=row.memo or {},
        search_attributes=row.search_attributes or {},
        execution_timeout_seconds=action.get("execution_timeout_seconds"),
        run_timeout_seconds=action.get("run_timeout_seconds"),
    )


async def _start(
    conn: Conn,
    row: ScheduleRow,
    outcome: Outcome,
    *,
    label: str,
    policy: str,
    occurrence: datetime | None,
) -> tuple[ScheduleRow, Fire]:
    """Start the action's workflow and record the fire (§1.6), or record the failure."""
    try:
        cmd = _start_command(row)
        started = await start_fresh(conn, cmd)
        if started is None:  # a fresh ULID is never taken; the full path answers anyway
            started = await start_workflow(conn, cmd)
    except DwtrioError as exc:
        failed = {
            "outcome": "failed",
            "reason": exc.message,
            "fired_at": wire.iso_offset(row.db_now),
        }
        row = attrs.evolve(
            row,
            recent_actions=[*row.recent_actions, failed][-RECENT_ACTIONS:],
            failures_count=row.failures_count + 1,
            last_fired_at=row.db_now,
        )
        return row, Fire(outcome="failed", reason=exc.message)
    outcome.wakes |= started.wakes
    run_id: str = render(started.body)["run_id"]
    trigger_number = row.fires_count + 1
    remaining = None if row.remaining_actions is None else max(row.remaining_actions - 1, 0)
    row = attrs.evolve(
        row,
        recent_actions=[
            *row.recent_actions,
            {
                "workflow_id": cmd.workflow_id,
                "run_id": run_id,
                "outcome": label,
                "fired_at": wire.iso_offset(row.db_now),
            },
        ][-RECENT_ACTIONS:],
        fires_count=trigger_number,
        last_fired_at=row.db_now,
        remaining_actions=remaining,
        latest_workflow_id=cmd.workflow_id,
        latest_run_id=run_id,
    )
    payload: dict[str, Any] = {
        "workflow_instance_id": cmd.workflow_id,
        "workflow_run_id": run_id,
        "outcome": label,
        "effective_overlap_policy": policy,
        "trigger_number": trigger_number,
    }
    if occurrence is not None:
        payload["occurrence_time"] = wire.iso_offset(occurrence)
    if label == "scheduled" and row.next_fire_at is not None and occurrence is not None:
        # How late the scheduler started it: due (jitter included) -> this transaction.
        lag_ms = (row.db_now - row.next_fire_at).total_seconds() * 1000
        payload["due_at"] = wire.iso_offset(row.next_fire_at)
        payload["fire_lag_ms"] = round(max(lag_ms, 0.0), 3)
    await _record(
        conn, row, "ScheduleTriggered", payload, workflow_id=cmd.workflow_id, run_id=run_id
    )
    if remaining == 0:
        row = await _delete(conn, row, "max_runs_exhausted", None)
    return row, Fire(outcome="triggered", workflow_id=cmd.workflow_id, run_id=run_id)


async def _close_latest(conn: Conn, row: ScheduleRow, policy: str, outcome: Outcome) -> None:
    """cancel_other / terminate_other: close the running instance, best effort."""
    assert row.latest_workflow_id is not None
    kind: CloseKind = "cancel" if policy == "cancel_other" else "terminate"
    try:
        closed = await close_workflow(
            conn,
            CloseCommand(
                target=Target(namespace=row.namespace, workflow_id=row.latest_workflow_id),
                kind=kind,
                reason=f"Closed by schedule {row.schedule_id!r} (overlap policy {policy}).",
            ),
        )
    except DwtrioError:
        return  # gone or closed meanwhile: nothing to close
    outcome.wakes |= closed.wakes


async def _trigger(
    conn: Conn,
    row: ScheduleRow,
    outcome: Outcome,
    *,
    override: str | None,
    label: str,
    occurrence: datetime | None,
) -> tuple[ScheduleRow, Fire]:
    """The trigger algorithm (§1.5); ``label``: scheduled or backfilled."""
    if row.status != "active":
        return await _skip(conn, row, "status_not_triggerable"), Fire(
            outcome="skipped", reason="status_not_triggerable"
        )
    if row.remaining_actions is not None and row.remaining_actions <= 0:
        return await _skip(conn, row, "remaining_actions_exhausted"), Fire(
            outcome="skipped", reason="remaining_actions_exhausted"
        )
    policy = override or row.overlap_policy or "skip"
    if label == "backfilled" and policy in BUFFER_POLICIES:
        policy = "allow_all"
    # allow_all starts whatever runs; every other policy needs to know (one read).
    going = (
        policy != "allow_all"
        and row.latest_workflow_id is not None
        and await store.instance_is_running(conn, row.latest_workflow_id)
    )
    if going and policy in BUFFER_POLICIES:
        if policy == "buffer_one" and row.buffered_actions:
            reason = "buffer_full"
            return await _skip(conn, row, reason), Fire(
                outcome="buffer_full", reason="The buffer of buffer_one already holds a fire."
            )
        entry: dict[str, Any] = {"buffered_at": wire.iso_offset(row.db_now)}
        if occurrence is not None:
            entry["occurrence_time"] = wire.iso_offset(occurrence)
        row = attrs.evolve(row, buffered_actions=[*row.buffered_actions, entry])
        return row, Fire(outcome="buffered", buffer_depth=len(row.buffered_actions))
    if going and policy not in ("allow_all", "cancel_other", "terminate_other"):
        reason = f"overlap_policy_{policy}"
        return await _skip(conn, row, reason), Fire(outcome="skipped", reason=reason)
    if going and policy in ("cancel_other", "terminate_other"):
        await _close_latest(conn, row, policy, outcome)
    return await _start(conn, row, outcome, label=label, policy=policy, occurrence=occurrence)


def _answer(row: ScheduleRow, outcome: str, **extra: Any) -> ScheduleAnswer:
    return ScheduleAnswer(schedule_id=row.schedule_id, outcome=outcome, **extra)


async def _locked(conn: Conn, namespace: str, schedule_id: str) -> ScheduleRow:
    row = await store.lock_schedule(conn, namespace, schedule_id)
    if row is None:
        raise ScheduleNotFoundError(
            f"Schedule {schedule_id!r} was not found.", schedule_id=schedule_id
        )
    return row


# --- the routes -----------------------------------------------------------------------------
async def create(conn: Conn, d: ScheduleDefinition) -> Outcome | None:
    """Create a schedule (paused right away when asked); None when the id is taken."""
    db_now = await store.db_now(conn)
    occurrence = d.spec.next_after(db_now)
    row = await store.insert_schedule(
        conn,
        store.NewSchedule(
            id=new_id(),
            namespace=d.namespace,
            schedule_id=d.schedule_id,
            spec=d.spec.as_json(),
            action=d.action,
            status="paused" if d.paused else "active",
            overlap_policy=d.overlap_policy,
            note=d.note,
            memo=d.memo or None,
            search_attributes=d.search_attributes or None,
            jitter_seconds=d.jitter_seconds,
            max_runs=d.max_runs,
            remaining_actions=d.max_runs,
            next_fire_at=jittered(occurrence, d.jitter_seconds),
            next_occurrence_at=occurrence,
        ),
    )
    if row is None:
        return None
    await _record(
        conn,
        row,
        "ScheduleCreated",
        {
            "spec": row.spec,
            "action": row.action,
            "overlap_policy": row.overlap_policy,
            "next_fire_at": wire.iso_offset(row.next_fire_at),
        },
        context=d.context,
    )
    if d.paused:
        await _record(
            conn,
            row,
            "SchedulePaused",
            {"paused_at": wire.iso_offset(row.paused_at)},
            context=d.context,
        )
    return Outcome(
        body=_answer(
            row,
            "created",
            namespace=row.namespace,
            status=row.status,
            next_fire_at=wire.iso_offset(row.next_fire_at),
            created_at=wire.iso_offset(row.created_at),
        ),
        verdict=Verdict.CREATED,
    )


async def update(conn: Conn, c: ScheduleChanges) -> Outcome:
    row = await _locked(conn, c.namespace, c.schedule_id)
    changes: dict[str, Any] = {}
    if c.spec is not None:
        changes["spec"] = c.spec.as_json()
    if c.action is not None:
        changes["action"] = merged_action(row.action, c.action)
    for name in ("overlap_policy", "jitter_seconds", "note"):
        if getattr(c, name) is not None:
            changes[name] = getattr(c, name)
    if c.memo is not None:
        changes["memo"] = c.memo or None
    if c.search_attributes is not None:
        changes["search_attributes"] = c.search_attributes or None
    if c.max_runs is not None:
        changes["max_runs"] = c.max_runs
        if row.remaining_actions is None or c.max_runs > row.fires_count:
            changes["remaining_actions"] = max(c.max_runs - row.fires_count, 0)
    row = attrs.evolve(row, **changes)
    if c.spec is not None or c.jitter_seconds is not None:
        occurrence = spec_of(row).next_after(row.db_now)
        row = attrs.evolve(
            row,
            next_occurrence_at=occurrence,
            next_fire_at=jittered(occurrence, row.jitter_seconds),
        )
    if row.remaining_actions == 0:
        row = attrs.evolve(row, next_fire_at=None, next_occurrence_at=None)
    await store.save_schedule(conn, row)
    await _record(
        conn,
        row,
        "ScheduleUpdated",
        {
            "changed_fields": c.changed_fields(),
            "spec": row.spec,
            "action": row.action,
            "overlap_policy": row.overlap_policy,
            "next_fire_at": wire.iso_offset(row.next_fire_at),
        },
        context=c.context,
    )
    return Outcome(body=_answer(row, "updated", updated_at=wire.iso_offset(row.db_now)))


async def pause(
    conn: Conn, namespace: str, schedule_id: str, note: str | None, context: dict[str, Any]
) -> Outcome:
    """Stop firing; already paused is a no-op apart from the note."""
    row = await _locked(conn, namespace, schedule_id)
    was_active = row.status == "active"
    row = attrs.evolve(
        row,
        status="paused",
        paused_at=row.db_now if was_active else row.paused_at,
        note=row.note if note is None else note,
    )
    await store.save_schedule(conn, row)
    if was_active:
        payload: dict[str, Any] = {"paused_at": wire.iso_offset(row.paused_at)}
        if note is not None:
            payload["reason"] = note
        await _record(conn, row, "SchedulePaused", payload, context=context)
    return Outcome(
        body=_answer(
            row, "paused", paused=True, note=row.note, paused_at=wire.iso_offset(row.paused_at)
        )
    )


async def resume(
    conn: Conn, namespace: str, schedule_id: str, note: str | None, context: dict[str, Any]
) -> Outcome:
    """Fire again from the next occurrence after now; already active is a no-op apart
    from the note."""
    row = await _locked(conn, namespace, schedule_id)
    was_paused = row.status == "paused"
    if was_paused:
        occurrence = spec_of(row).next_after(row.db_now)
        if row.remaining_actions == 0:
            occurrence = None
        row = attrs.evolve(
            row,
            status="active",
            paused_at=None,
            next_occurrence_at=occurrence,
            next_fire_at=jittered(occurrence, row.jitter_seconds),
        )
    if note is not None:
        row = attrs.evolve(row, note=note)
    await store.save_schedule(conn, row)
    if was_paused:
        await _record(
            conn,
            row,
            "ScheduleResumed",
            {"next_fire_at": wire.iso_offset(row.next_fire_at)},
            context=context,
        )
    return Outcome(
        body=_answer(
            row,
            "resumed",
            paused=False,
            note=row.note,
            resumed_at=wire.iso_offset(row.db_now),
            next_fire_at=wire.iso_offset(row.next_fire_at),
        )
    )


async def delete(conn: Conn, namespace: str, schedule_id: str, context: dict[str, Any]) -> Outcome:
    row = await _locked(conn, namespace, schedule_id)
    row = await _delete(conn, row, "deleted", context)
    await store.save_schedule(conn, row)
    return Outcome(body=_answer(row, "deleted", deleted_at=wire.iso_offset(row.deleted_at)))


async def trigger(
    conn: Conn, namespace: str, schedule_id: str, override: str | None
) -> tuple[Outcome, Fire]:
    """Fire now, outside the schedule's own times; the next occurrence stays as it was."""
    row = await _locked(conn, namespace, schedule_id)
    outcome = Outcome()
    row, fire = await _trigger(
        conn, row, outcome, override=override, label="scheduled", occurrence=None
    )
    await store.save_schedule(conn, row)
    return outcome, fire


async def backfill_one(
    conn: Conn, namespace: str, schedule_id: str, occurrence: datetime, override: str | None
) -> tuple[Outcome, Fire, bool]:
    """One backfill occurrence, in its own transaction. Returns the wakes, what
    happened, and whether backfill should go on (actions remain)."""
    row = await _locked(conn, namespace, schedule_id)
    outcome = Outcome()
    if row.remaining_actions is not None and row.remaining_actions <= 0:
        return outcome, Fire(outcome="skipped", reason="remaining_actions_exhausted"), False
    row, fire = await _trigger(
        conn, row, outcome, override=override, label="backfilled", occurrence=occurrence
    )
    await store.save_schedule(conn, row)
    more = row.status != "deleted" and (row.remaining_actions is None or row.remaining_actions > 0)
    return outcome, fire, more


# --- the scheduler ------------------------------------------------------------------------------
async def fire_due(
    conn: Conn, *, catchup_window_s: float, limit: int = 1, claimed: dict[str, Any] | None = None
) -> tuple[Outcome, int]:
    """Claim up to ``limit`` due schedules (skipping those other schedulers hold) and,
    for each, fire its occurrence or record the occurrences too old to fire. Returns
    the wakes and how many schedules were handled (0: nothing was due).

    Several fires share the transaction (one commit for the batch, which is what
    bounds a herd of schedules due together). ``claimed["id"]`` names the schedule
    being fired, so a caller whose transaction failed knows which one broke it."""
    outcome = Outcome()
    rows = await store.claim_due_schedules(conn, limit=limit)
    for row in rows:
        if claimed is not None:
            claimed["id"] = row.id
        await _fire_one(conn, row, outcome, catchup_window_s)
    return outcome, len(rows)


async def _fire_one(
    conn: Conn, row: ScheduleRow, outcome: Outcome, catchup_window_s: float
) -> None:
    spec = spec_of(row)
    occurrence = row.next_occurrence_at or row.next_fire_at
    assert occurrence is not None  # claimed rows are due
    # An occurrence is missed when even its latest possible due time (the occurrence
    # plus the whole jitter) is older than the window. So jitter never makes a fire
    # look late, not even one queued behind its predecessor's longer jitter.
    cutoff = row.db_now - timedelta(seconds=catchup_window_s + row.jitter_seconds)
    if occurrence < cutoff:
        row, occurrence = await _record_missed(
            conn, row, spec, occurrence, cutoff, catchup_window_s
        )
    if occurrence is not None and occurrence <= row.db_now:
        row, _ = await _trigger(
            conn, row, outcome, override=None, label="scheduled", occurrence=occurrence
        )
        if row.status != "deleted":
            occurrence = spec.next_after(occurrence)
    if row.status != "deleted":
        row = attrs.evolve(
            row,
            next_occurrence_at=occurrence,
            next_fire_at=jittered(occurrence, row.jitter_seconds),
        )
    await store.save_schedule(conn, row)


async def _record_missed(
    conn: Conn,
    row: ScheduleRow,
    spec: ScheduleSpec,
    first: datetime,
    cutoff: datetime,
    window_s: float,
) -> tuple[ScheduleRow, datetime | None]:
    """Count the occurrences from ``first`` to before ``cutoff`` as missed; returns the
    first occurrence not missed."""
    missed = [
        first,
        *spec.occurrences(first + timedelta(microseconds=1), cutoff, limit=MISSED_COUNT_CAP),
    ]
    capped = len(missed) > MISSED_COUNT_CAP
    last = missed[-1]
    following = spec.next_after(last if not capped else cutoff - timedelta(microseconds=1))
    row = attrs.evolve(row, missed_fires_count=row.missed_fires_count + len(missed))
    payload: dict[str, Any] = {
        "missed_count": len(missed),
        "first_missed_at": wire.iso_offset(first),
        "last_missed_at": wire.iso_offset(last),
        "catchup_window_seconds": window_s,
    }
    if capped:
        payload["missed_count_capped"] = True
    await _record(conn, row, "ScheduleFiresMissed", payload)
    return row, following


async def drain_buffered(conn: Conn, *, limit: int) -> tuple[Outcome, int]:
    """Start one buffered fire of each claimed schedule whose run has finished.

    Returns the wakes and how many schedules were looked at.
    """
    outcome = Outcome()
    claimed = await store.claim_buffered_schedules(conn, limit=limit)
    for row in claimed:
        if row.latest_workflow_id is not None and await store.instance_is_running(
            conn, row.latest_workflow_id
        ):
            continue
        entry, rest = row.buffered_actions[0], row.buffered_actions[1:]
        row = attrs.evolve(row, buffered_actions=rest)
        occurrence = _instant(entry.get("occurrence_time"))
        row, _ = await _start(
            conn, row, outcome, label="drained", policy=row.overlap_policy, occurrence=occurrence
        )
        await store.save_schedule(conn, row)
    return outcome, len(claimed)


def _instant(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


async def record_fire_failure(conn: Conn, schedule_pk: str, reason: str) -> None:
    """A fire whose transaction failed: count the failure and move past the occurrence,
    so one broken schedule cannot stall the scheduler."""
    row = await store.lock_schedule_by_key(conn, schedule_pk)
    if row is None or row.status != "active":
        return
    failed = {"outcome": "failed", "reason": reason, "fired_at": wire.iso_offset(row.db_now)}
    occurrence = row.next_occurrence_at or row.next_fire_at
    following = None if occurrence is None else spec_of(row).next_after(max(occurrence, row.db_now))
    row = attrs.evolve(
        row,
        recent_actions=[*row.recent_actions, failed][-RECENT_ACTIONS:],
        failures_count=row.failures_count + 1,
        last_fired_at=row.db_now,
        next_occurrence_at=following,
        next_fire_at=jittered(following, row.jitter_seconds),
    )
    await store.save_schedule(conn, row)
