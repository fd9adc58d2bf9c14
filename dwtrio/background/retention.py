"""The retention loop: every ``DW_RETENTION_INTERVAL_SECONDS``, prune expired runs
(and fenced-deregistration receipts past their 600 s window).

One tick is one batch (``DW_RETENTION_BATCH_SIZE`` runs, one transaction) of
``engine.retention.prune_pass`` over every namespace, the same pass
``POST /api/system/retention/pass`` runs for one namespace. A tick that filled its
batch runs again at once, so a backlog drains batch after batch, each a short
transaction. Safe on every node at once: batches lock their runs
``FOR UPDATE SKIP LOCKED``. ``DW_RETENTION_ENABLED=0`` leaves the loop idle
(it still starts, so the supervisor's shape does not depend on settings).
"""

from __future__ import annotations

import logging

import trio

from dwtrio.background.periodic import RUN_AGAIN_NOW, run_periodically
from dwtrio.engine.retention import prune_pass
from dwtrio.manifest import WORKER_DEREGISTRATION_RECEIPT_RETENTION_S
from dwtrio.protocol.responses import RetentionPassReport
from dwtrio.runtime import Runtime
from dwtrio.store import workers

log = logging.getLogger(__name__)


async def prune_once(rt: Runtime) -> RetentionPassReport:
    """One batch of expired runs, in every namespace."""
    batch = rt.settings.retention_batch_size
    return await prune_pass(rt.store, namespace=None, limit=batch, batch_size=batch)


async def prune_deregistration_receipts(rt: Runtime) -> int:
    """One batch of fenced-deregistration receipts past their window, in every namespace."""
    return await rt.store.transaction(
        workers.prune_incarnations,
        WORKER_DEREGISTRATION_RECEIPT_RETENTION_S,
        rt.settings.retention_batch_size,
    )


async def run_retention_loop(
    rt: Runtime, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    if not rt.settings.retention_enabled:
        task_status.started()
        await trio.sleep_forever()

    beat = rt.loop_beats.beat("retention", rt.settings.retention_interval_s)

    async def tick() -> float | None:
        report = await prune_once(rt)
        receipts = await prune_deregistration_receipts(rt)
        beat.handled(report.pruned)
        if report.processed:
            log.info(
                "retention: %d runs pruned (%d history events, %d instances), %d failed",
                report.pruned,
                report.pruned_history_events,
                report.pruned_instances,
                report.failed,
                extra={"action": "retention"},
            )
        batch = rt.settings.retention_batch_size
        return RUN_AGAIN_NOW if max(report.processed, receipts) >= batch else None

    await run_periodically(
        "retention",
        tick,
        interval_s=rt.settings.retention_interval_s,
        action="retention",
        log=log,
        beat=beat,
        task_status=task_status,
    )
