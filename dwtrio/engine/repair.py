"""Task repair: leases whose worker is gone are redispatched.

A worker is gone when its lease expired (it died or lost its response), when it
deregistered (the deregistration recovers its leases itself), or when it stopped
heartbeating: its registration is stale (no worker heartbeat for the stale
window) and the lease itself was not touched (claimed or heartbeated) for as
long. Only workers that registered are judged by their heartbeats (registering
is what tells a worker its heartbeat cadence); a worker only ever seen through
its polls keeps its leases until they expire. A deregistered worker no longer
heartbeats, so a lease its deregistration missed (a crash half-way, a racing
poll) is recovered here once the worker is stale.

A workflow task simply becomes ready again; its next lease carries the next
``workflow_task_attempt``. An activity lease ends its attempt
(``engine.timeouts.time_out_attempt``) and the next one gets a new attempt id and
number. A lease that ended at the activity's ``start_to_close`` deadline is that
timeout and follows the retry policy. Otherwise no business deadline passed (the
worker died, stopped heartbeating, or deregistered holding it): the activity is
delivered again at once whatever its ``max_attempts`` (at least once; a lost
attempt still counts when a later failure asks whether another attempt is allowed).

Each activity lease is handled in its own transaction: the task is locked first,
then its run and its execution, the order of the worker-plane paths.

:func:`repair_run` is the same repair for one run, asked for by an operator
(``POST /api/workflows/{wf}/repair``, ``engine/workflow_maintenance.py``): in the
command's transaction, with the run already locked, its expired leases go the
way above (tasks taken with ``SKIP LOCKED``, so holding the run never makes it
wait on a task), then a workflow task the run needs but lacks is created
(``missing_workflow_task_reason`` in ``repair.sql`` says when).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from dwtrio import wire
from dwtrio.engine.outcome import Outcome
from dwtrio.engine.timeouts import time_out_attempt
from dwtrio.engine.wakes import request_wake
from dwtrio.errors import RetryableStoreError, StoreUnavailableError
from dwtrio.protocol.responses import (
    RepairCandidateSnapshot,
    RepairFailure,
    RepairPassReport,
    RepairPolicySnapshot,
    RepairStatus,
)
from dwtrio.store import activities, repair, runs
from dwtrio.store.activities import LockedActivityTask
from dwtrio.store.pool import Conn, Store
from dwtrio.store.repair import QueueRow
from dwtrio.store.runs import LockedRun

REPAIR_BATCH = 500


async def expire_workflow_task_leases(conn: Conn, limit: int = REPAIR_BATCH) -> tuple[Outcome, int]:
    """Make expired workflow-task leases ready again; returns the queues to wake and the count."""
    rows = await repair.expire_workflow_task_leases(conn, limit=limit)
    return _woken(rows, "workflow"), len(rows)


async def expire_next_activity_lease(conn: Conn) -> Outcome | None:
    """The earliest expired activity lease ends its attempt; None when no lease has expired."""
    task = await repair.claim_expired_activity_lease(conn)
    if task is None:
        return None
    return await _end_leased_attempt(conn, task, None)


async def release_lost_worker_workflow_tasks(
    conn: Conn, stale_after_s: int, limit: int = REPAIR_BATCH
) -> tuple[Outcome, int]:
    """Make workflow tasks leased to lost workers ready again; the queues to wake and the count."""
    rows = await repair.release_lost_worker_workflow_tasks(
        conn, stale_after_s=stale_after_s, limit=limit
    )
    return _woken(rows, "workflow"), len(rows)


async def recover_next_lost_worker_activity_lease(conn: Conn, stale_after_s: int) -> Outcome | None:
    """One activity lease of a lost worker ends its attempt; None when there is none."""
    task = await repair.claim_lost_worker_activity_lease(conn, stale_after_s=stale_after_s)
    if task is None:
        return None
    message = f"activity worker {task.lease_owner} lost (no heartbeat for {stale_after_s} s)"
    return await _end_leased_attempt(conn, task, message)


async def worker_activity_leases(conn: Conn, namespace: str, worker_id: str) -> list[str]:
    """The ids of the activity tasks leased to a worker (deregistration recovers each)."""
    return await repair.list_worker_activity_leases(conn, namespace=namespace, worker_id=worker_id)


async def recover_deregistered_activity_lease(
    conn: Conn, namespace: str, worker_id: str, task_id: str
) -> Outcome | None:
    """A deregistered worker's activity lease ends its attempt; None if it is no longer held."""
    task = await repair.claim_worker_activity_lease(
        conn, task_id=task_id, namespace=namespace, worker_id=worker_id
    )
    if task is None:
        return None
    return await _end_leased_attempt(conn, task, f"activity worker {worker_id} deregistered")


@attrs.frozen(kw_only=True)
class RunRepair:
    """What :func:`repair_run` did to one run."""

    #: Workflow-task leases that had expired, made ready again.
    workflow_leases_released: int
    #: Activity leases that had expired, their attempts ended (retried or timed out).
    activity_leases_released: int
    #: Why the run needed a workflow task it lacked (``missing_workflow_task_reason``).
    missing_task_reason: str | None
    #: The workflow task created for it, if one was.
    created_task_id: str | None

    @property
    def dispatched(self) -> bool:
        return bool(
            self.workflow_leases_released
            or self.activity_leases_released
            or self.created_task_id is not None
        )


async def repair_run(conn: Conn, run: LockedRun, outcome: Outcome) -> RunRepair:
    """Release the expired leases of a locked run, then give it the workflow task it
    needs and lacks; the queues to wake go on ``outcome``."""
    if not run.is_open:
        return RunRepair(
            workflow_leases_released=0,
            activity_leases_released=0,
            missing_task_reason=None,
            created_task_id=None,
        )
    rows = await repair.expire_run_workflow_task_leases(conn, run_id=run.id)
    outcome.wakes |= _woken(rows, "workflow").wakes
    activities_released = 0
    for _ in range(REPAIR_BATCH):
        task = await repair.claim_expired_run_activity_lease(conn, run_id=run.id)
        if task is None:
            break
        outcome.wakes |= (await _end_leased_attempt(conn, task, None)).wakes
        activities_released += 1
    reason = await repair.missing_workflow_task_reason(conn, run_id=run.id)
    created = None
    if reason is not None:
        relocked = await runs.lock_run(conn, run.id)  # the attempts above may have moved it on
        if relocked is not None:
            created = await request_wake(conn, relocked, outcome)
    return RunRepair(
        workflow_leases_released=len(rows),
        activity_leases_released=activities_released,
        missing_task_reason=reason,
        created_task_id=created,
    )


def _woken(rows: list[QueueRow], kind: str) -> Outcome:
    outcome = Outcome()
    for r in rows:
        outcome.wake(r.namespace, r.task_queue, kind)
    return outcome


async def _end_leased_attempt(conn: Conn, task: LockedActivityTask, message: str | None) -> Outcome:
    """The attempt on a locked, leased activity task is over: a ``start_to_close``-like
    timeout of it (``message`` None: the lease expired)."""
    outcome = Outcome()
    await repair.count_task_repair(conn, task.task_id)
    run = await runs.lock_run(conn, task.run_id)
    execution = await activities.lock_activity_execution(conn, task.activity_execution_id)
    if run is None or not run.is_open:
        # Closing a run cancels its tasks, so this is only a leftover (e.g. a claim whose
        # clean-up after finding the run closed did not run): retire it.
        await activities.cancel_claimed_activity(
            conn,
            attempt_id=task.activity_attempt_id,
            execution_id=task.activity_execution_id,
            task_id=task.task_id,
        )
        return outcome
    assert execution is not None  # its task is locked
    if message is None and execution.start_to_close_deadline_at is not None:
        # With start_to_close_timeout the lease ends at that deadline: it is that timeout.
        await time_out_attempt(conn, task, run, execution, "start_to_close", outcome)
        return outcome
    # The worker is gone and no business deadline passed: deliver it again.
    await time_out_attempt(
        conn,
        task,
        run,
        execution,
        "start_to_close",
        outcome,
        message=message or "activity lease expired",
        redeliver=True,
    )
    return outcome


# --- the pass: the loop's and POST /api/system/repair/pass's ------------------------------
async def repair_pass(
    store: Store,
    publish: Callable[[set[tuple[str, str, str]]], None],
    *,
    stale_after_s: int,
    namespace: str | None = None,
    run_ids: list[str] | None = None,
) -> RepairPassReport:
    """One task-repair pass; what the repair loop runs each tick, and the admin route once.

    Without ``run_ids`` it sweeps every namespace: expired workflow-task leases (one
    batch), expired activity leases, then the leases of lost workers (``stale_after_s``),
    each kind up to :data:`REPAIR_BATCH`. With ``run_ids`` it repairs just those runs
    (of ``namespace``), each in its own transaction through :func:`repair_run`, which
    also gives an open run the workflow task it needs and lacks.

    ``publish`` gets each transaction's wakes after it commits. A step that fails is
    recorded (``existing_task_failures`` for a sweep, ``missing_run_failures`` for a
    named run) and the pass goes on with the next kind or run.
    """
    tally = _PassTally()
    if run_ids is None:
        await _sweep_workflow(store, publish, tally, "expired", expire_workflow_task_leases)
        await _sweep_activities(store, publish, tally, "expired", expire_next_activity_lease)
        await _sweep_workflow(
            store, publish, tally, "lost_worker", release_lost_worker_workflow_tasks, stale_after_s
        )
        await _sweep_activities(
            store,
            publish,
            tally,
            "lost_worker",
            recover_next_lost_worker_activity_lease,
            stale_after_s,
        )
    else:
        for run_id in dict.fromkeys(run_ids):
            try:
                outcome, done = await store.transaction(_repair_named_run, run_id, namespace)
            except (StoreUnavailableError, RetryableStoreError):
                raise
            except Exception as exc:  # recorded; the next run still gets its repair
                tally.missing_run_failures.append(
                    RepairFailure(kind="run", run_id=run_id, message=str(exc)[:500])
                )
                continue
            publish(outcome.wakes)
            if done is not None:
                tally.runs_selected += 1
                tally.expired += done.workflow_leases_released + done.activity_leases_released
                tally.missing += int(done.created_task_id is not None)
    return tally.report(None if run_ids is None else list(dict.fromkeys(run_ids)))


async def _repair_named_run(
    conn: Conn, run_id: str, namespace: str | None
) -> tuple[Outcome, RunRepair | None]:
    outcome = Outcome()
    run = await runs.lock_run(conn, run_id)
    if run is None or (namespace is not None and run.namespace != namespace):
        return outcome, None
    return outcome, await repair_run(conn, run, outcome)


@attrs.define
class _PassTally:
    expired: int = 0
    lost: int = 0
    missing: int = 0
    runs_selected: int = 0
    existing_task_failures: list[RepairFailure] = attrs.field(factory=list)
    missing_run_failures: list[RepairFailure] = attrs.field(factory=list)

    def add(self, reason: str, count: int) -> None:
        if reason == "expired":
            self.expired += count
        else:
            self.lost += count

    def report(self, run_ids: list[str] | None) -> RepairPassReport:
        repaired = self.expired + self.lost
        return RepairPassReport(
            run_ids=run_ids,
            selected_existing_task_candidates=repaired + len(self.existing_task_failures),
            repaired_existing_tasks=repaired,
            expired_leases_repaired=self.expired,
            lost_worker_leases_repaired=self.lost,
            selected_missing_task_candidates=self.runs_selected,
            repaired_missing_tasks=self.missing,
            dispatched_tasks=repaired + self.missing,
            selected_command_contract_candidates=0,
            backfilled_command_contracts=0,
            command_contract_backfill_unavailable=0,
            command_contract_failures=[],
            existing_task_failures=self.existing_task_failures,
            missing_run_failures=self.missing_run_failures,
        )


async def _sweep_workflow(
    store: Store,
    publish: Callable[[set[tuple[str, str, str]]], None],
    tally: _PassTally,
    reason: str,
    op: Callable[..., Awaitable[tuple[Outcome, int]]],
    *args: Any,
) -> None:
    try:
        outcome, count = await store.transaction(op, *args)
    except (StoreUnavailableError, RetryableStoreError):
        raise
    except Exception as exc:
        tally.existing_task_failures.append(
            RepairFailure(kind=f"{reason}_workflow_task", run_id=None, message=str(exc)[:500])
        )
        return
    publish(outcome.wakes)
    tally.add(reason, count)


async def _sweep_activities(
    store: Store,
    publish: Callable[[set[tuple[str, str, str]]], None],
    tally: _PassTally,
    reason: str,
    op: Callable[..., Awaitable[Outcome | None]],
    *args: Any,
) -> None:
    """Recover activity leases one transaction each, up to a batch."""
    for _ in range(REPAIR_BATCH):
        try:
            outcome = await store.transaction(op, *args)
        except (StoreUnavailableError, RetryableStoreError):
            raise
        except Exception as exc:  # the same lease would come first again: next kind
            tally.existing_task_failures.append(
                RepairFailure(kind=f"{reason}_activity_task", run_id=None, message=str(exc)[:500])
            )
            return
        if outcome is None:
            return
        publish(outcome.wakes)
        tally.add(reason, 1)


async def repair_status(conn: Conn, *, interval_s: float, stale_after_s: int) -> RepairStatus:
    """The policy the repair loop runs with and what it would act on now (every namespace)."""
    row = await repair.repair_candidates(conn, stale_after_s=stale_after_s)
    interval: int | float = int(interval_s) if interval_s.is_integer() else interval_s
    existing = row.expired_lease_count + row.lost_worker_lease_count
    oldest = row.oldest_created_at
    return RepairStatus(
        policy=RepairPolicySnapshot(
            redispatch_after_seconds=interval,
            loop_throttle_seconds=interval,
            scan_limit=REPAIR_BATCH,
            scan_strategy=SCAN_STRATEGY,
            failure_backoff_max_seconds=interval,
            failure_backoff_strategy="fixed_interval",
            lost_worker_after_seconds=stale_after_s,
        ),
        candidates=RepairCandidateSnapshot(
            existing_task_candidates=existing,
            expired_lease_candidates=row.expired_lease_count,
            lost_worker_lease_candidates=row.lost_worker_lease_count,
            missing_task_candidates=0,
            total_candidates=existing,
            scan_limit=REPAIR_BATCH,
            scan_strategy=SCAN_STRATEGY,
            selected_existing_task_candidates=min(existing, REPAIR_BATCH),
            selected_missing_task_candidates=0,
            existing_task_scan_limit_reached=existing > REPAIR_BATCH,
            missing_task_scan_limit_reached=False,
            scan_pressure=existing > REPAIR_BATCH,
            oldest_task_candidate_created_at=wire.iso_z(oldest),
            oldest_missing_run_started_at=None,
            max_task_candidate_age_ms=(
                None
                if oldest is None
                else max(0, int((row.observed_at - oldest).total_seconds() * 1000))
            ),
            max_missing_run_age_ms=None,
        ),
    )


#: How a sweep picks its leases: the one that expired (or will) first, first.
SCAN_STRATEGY = "oldest_lease_expiry_first"
