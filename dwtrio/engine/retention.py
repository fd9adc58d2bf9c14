"""History retention: runs closed longer ago than their namespace's window are deleted.

A run is **expired** when it is closed, not archived, its ``closed_at`` is older than
its namespace's ``retention_days``, and no open run holds it as a child (a parent
still running may look at its child's outcome). Pruning deletes the run row, and with
it (foreign-key cascades) its history, tasks, activity executions and attempts,
timers, commands, signals, updates, child calls, failures and search-attribute rows;
an instance left without runs goes too. Open runs are never touched: the candidate
queries only ever select closed runs, and a closed run never reopens.

:func:`prune_pass` is the one pass both the background loop
(``background/retention.py``) and ``POST /api/system/retention/pass`` run. It works in
batches of at most ``batch_size`` runs, one transaction each: the batch's runs are
locked ``FOR UPDATE SKIP LOCKED`` and deleted, so pruners on several nodes never take
the same run, never wait on each other, and hold their locks only for one batch. A
batch that fails is rolled back and its runs are tried one transaction each, so one
run that cannot be deleted is reported (``outcome: "error"``) without holding back the
others, and is passed over for the rest of the pass.
"""

from __future__ import annotations

import logging

import attrs

from dwtrio import wire
from dwtrio.protocol.responses import (
    RetentionPassReport,
    RetentionRunResult,
    RetentionStatus,
)
from dwtrio.store import retention
from dwtrio.store.pool import Conn, Store
from dwtrio.store.retention import ExpiredRun

log = logging.getLogger(__name__)

#: Most runs one transaction deletes when no batch size is given.
DEFAULT_BATCH = 100
#: ``GET /api/system/retention`` counts expired runs up to this many.
RETENTION_COUNT_LIMIT = 10_000


@attrs.frozen
class _Deleted:
    runs: list[ExpiredRun]
    instances: int


async def _prune_claimed(
    conn: Conn,
    *,
    namespace: str | None,
    limit: int,
    exclude_ids: list[str],
    run_ids: list[str] | None,
    claimed: list[str],
) -> _Deleted:
    """One transaction: lock expired runs, delete them and the instances they emptied.
    The locked ids are also put in ``claimed`` so a caller knows them if this fails."""
    claimed.clear()  # the store may run this again on a fresh connection
    if run_ids is None:
        runs = await retention.claim_expired_runs(
            conn, namespace=namespace, limit=limit, exclude_ids=exclude_ids
        )
    else:
        runs = await retention.claim_listed_expired_runs(conn, namespace=namespace, run_ids=run_ids)
    claimed.extend(r.run_id for r in runs)
    if not runs:
        return _Deleted([], 0)
    await retention.delete_runs(conn, run_ids=[r.run_id for r in runs])
    workflow_ids = sorted({r.workflow_id for r in runs})
    instances = await retention.delete_empty_instances(conn, workflow_ids=workflow_ids)
    return _Deleted(runs, instances)


async def _sweep_orphans(conn: Conn, *, limit: int) -> int:
    return await retention.delete_orphaned_instances(conn, limit=limit)


class _Tally:
    def __init__(self, namespace: str | None) -> None:
        self.namespace = namespace
        self.results: list[RetentionRunResult] = []
        self.events = 0
        self.instances = 0

    def pruned(self, deleted: _Deleted) -> None:
        self.instances += deleted.instances
        for r in deleted.runs:
            self.events += r.event_count
            self.results.append(
                RetentionRunResult(run_id=r.run_id, outcome="pruned", history_events=r.event_count)
            )

    def report(self) -> RetentionPassReport:
        count = {"pruned": 0, "skipped": 0, "error": 0}
        for r in self.results:
            count[r.outcome] += 1
        return RetentionPassReport(
            namespace=self.namespace,
            processed=len(self.results),
            pruned=count["pruned"],
            skipped=count["skipped"],
            failed=count["error"],
            pruned_history_events=self.events,
            pruned_instances=self.instances,
            results=self.results,
        )


async def prune_pass(
    store: Store,
    *,
    namespace: str | None,
    limit: int,
    batch_size: int = DEFAULT_BATCH,
    run_ids: list[str] | None = None,
) -> RetentionPassReport:
    """Prune up to ``limit`` expired runs, oldest closed first, ``batch_size`` per transaction.

    Args:
        namespace: the namespace to prune; None for every namespace (the loop).
        limit: most runs this pass processes.
        batch_size: most runs one transaction deletes.
        run_ids: prune only these (each reported: pruned, skipped with a reason, or error).

    A run that failed to delete is reported ``error`` and passed over for the rest of
    the pass. Cancellation propagates; what was committed stays pruned.
    """
    tally = _Tally(namespace)
    if run_ids is not None:
        await _prune_listed(store, tally, namespace, list(dict.fromkeys(run_ids)), batch_size)
        return tally.report()
    failed: list[str] = []
    done = 0
    while done < limit:
        want = min(batch_size, limit - done)
        claimed: list[str] = []
        try:
            deleted = await store.transaction(
                _prune_claimed,
                namespace=namespace,
                limit=want,
                exclude_ids=failed,
                run_ids=None,
                claimed=claimed,
            )
        except Exception:
            if not claimed:
                raise  # the claim itself failed: nothing to report per run
            log.warning(
                "retention: a batch of %d runs failed; pruning them one by one",
                len(claimed),
                exc_info=True,
                extra={"action": "retention_batch_failed"},
            )
            for run_id in claimed:
                if not await _prune_one(store, tally, namespace, run_id):
                    failed.append(run_id)
            done += len(claimed)
            continue
        tally.pruned(deleted)
        done += len(deleted.runs)
        if len(deleted.runs) < want:
            break
    if done < limit:
        tally.instances += await store.transaction(_sweep_orphans, limit=limit - done)
    return tally.report()


async def _prune_one(store: Store, tally: _Tally, namespace: str | None, run_id: str) -> bool:
    """Prune one run in its own transaction; False (and an ``error`` result) if it failed."""
    try:
        deleted = await store.transaction(
            _prune_claimed,
            namespace=namespace,
            limit=1,
            exclude_ids=[],
            run_ids=[run_id],
            claimed=[],
        )
    except Exception as exc:
        log.warning(
            "retention: run %s could not be pruned: %s",
            run_id,
            exc,
            extra={"action": "retention_run_failed", "run_id": run_id},
        )
        tally.results.append(
            RetentionRunResult(
                run_id=run_id, outcome="error", reason="prune_failed", message=str(exc)[:500]
            )
        )
        return False
    if deleted.runs:
        tally.pruned(deleted)
    else:
        tally.results.append(RetentionRunResult(run_id=run_id, outcome="skipped", reason="locked"))
    return True


async def _prune_listed(
    store: Store, tally: _Tally, namespace: str | None, run_ids: list[str], batch_size: int
) -> None:
    for start in range(0, len(run_ids), batch_size):
        chunk = run_ids[start : start + batch_size]
        try:
            deleted = await store.transaction(
                _prune_claimed,
                namespace=namespace,
                limit=len(chunk),
                exclude_ids=[],
                run_ids=chunk,
                claimed=[],
            )
        except Exception:
            log.warning(
                "retention: a batch of named runs failed; pruning them one by one",
                exc_info=True,
                extra={"action": "retention_batch_failed"},
            )
            for run_id in chunk:
                await _prune_one(store, tally, namespace, run_id)
            continue
        tally.pruned(deleted)
        done = {r.run_id for r in deleted.runs}
        rest = [r for r in chunk if r not in done]
        if rest:
            states = await store.read(_states, namespace=namespace, run_ids=rest)
            for run_id in rest:
                tally.results.append(
                    RetentionRunResult(
                        run_id=run_id, outcome="skipped", reason=_skip_reason(states.get(run_id))
                    )
                )


async def _states(
    conn: Conn, *, namespace: str | None, run_ids: list[str]
) -> dict[str, retention.RunRetentionState]:
    rows = await retention.retention_run_states(conn, namespace=namespace, run_ids=run_ids)
    return {r.run_id: r for r in rows}


def _skip_reason(state: retention.RunRetentionState | None) -> str:
    if state is None:
        return "run_not_found"
    if state.is_open:
        return "run_open"
    if state.archived:
        return "archived"
    if state.within_window:
        return "within_retention"
    if state.parent_open:
        return "parent_open"
    return "locked"  # expired, but another pruner holds it (or pruned it meanwhile)


async def retention_status(conn: Conn, namespace: str, limit: int) -> RetentionStatus | None:
    """The namespace's window, cutoff and expired runs; None for an unknown namespace."""
    row = await retention.retention_status(
        conn, namespace=namespace, limit=limit, count_limit=RETENTION_COUNT_LIMIT
    )
    if row is None:
        return None
    return RetentionStatus(
        namespace=namespace,
        retention_days=row.retention_days,
        cutoff=wire.iso_z(row.cutoff),
        expired_run_count=row.expired_run_count,
        expired_run_ids=list(row.expired_run_ids),
        scan_limit=limit,
        scan_pressure=row.expired_run_count > limit,
    )
